"""Reference-compatible entry point: ``python main.py --config_file=flair-2-config.yml``.

Trains, predicts the test set with the best checkpoint and scores it, like the
reference's main.py. The same as ``flair2 run --config CFG``.
"""

from __future__ import annotations

import argparse
import sys

from flair2.cli import main as cli_main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config_file", required=True, help="path to the .yml config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    argv = ["run", "--config", args.config_file]
    for item in args.overrides:
        argv += ["--set", item]
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
