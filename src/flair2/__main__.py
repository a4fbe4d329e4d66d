"""``python -m flair2``: the ``flair2`` command."""

import sys

from flair2.cli import main

sys.exit(main())
