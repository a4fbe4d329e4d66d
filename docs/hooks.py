"""MkDocs hook: Sphinx roles in the docstrings become links of the API reference.

The docstrings write cross-references the Sphinx way (``:func:`load_config```,
``:class:`~flair2.data.records.PatchRecord```), which mkdocstrings renders as
``:func:<code>load_config</code>``. This hook drops the role and, where the
name is one of the documented objects, links it (through mkdocs-autorefs'
optional references: a name that is not found stays plain code, without a
warning). A short name is looked up beside the object whose docstring holds it
(its module or class).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(
    r":(?:func|class|mod|data|meth|attr|exc|obj):"
    r"<code>(~?)([\w.]+)(\(\))?(?: &lt;([\w.]+)&gt;)?</code>"
)
_OBJECT_ID = re.compile(r'id="(flair2(?:\.\w+)+)"')


def _reference(match: re.Match[str], context: str | None) -> str:
    tilde, name, call, target = match.groups()
    title = f"<code>{name.rsplit('.', 1)[-1] if tilde else name}{call or ''}</code>"
    name = target or name  # :meth:`title <target>`
    if name.startswith("flair2."):
        candidates = [name]
    elif context is not None:
        # The object's own members first (a class docstring), then its siblings.
        candidates = [f"{context}.{name}", f"{context.rsplit('.', 1)[0]}.{name}"]
    else:
        return title
    slug = f' slug="{candidates[1]}"' if len(candidates) > 1 else ""
    return f'<autoref identifier="{candidates[0]}"{slug} optional>{title}</autoref>'


def on_page_content(html: str, **kwargs: Any) -> str:
    """Replace the Sphinx roles of a page's rendered docstrings."""
    if ":<code>" not in html:
        return html
    out: list[str] = []
    position = 0
    context: str | None = None
    for match in _ROLE.finditer(html):
        for object_id in _OBJECT_ID.finditer(html, position, match.start()):
            context = object_id.group(1)
        out.append(html[position : match.start()])
        out.append(_reference(match, context))
        position = match.end()
    out.append(html[position:])
    return "".join(out)
