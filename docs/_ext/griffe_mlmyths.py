"""A Griffe extension that reads mlmyths' docstring dialect for the documentation site.

mlmyths' docstrings are "numpydoc-ish" (docs/DEVELOPING.md, STYLE.md): reST markup that reads
well in a terminal, which mkdocstrings' numpy parser would otherwise render badly or reject under
``mkdocs build --strict``. :func:`translate` rewrites the text before Griffe parses it; the
source files stay as they are. It changes presentation only:

- ``name : what it is`` items of Parameters / Attributes / Raises sections (the dialect puts the
  description after the colon) become ``name`` plus an indented description, repeated for each
  name of ``a, b : ...``; a genuine numpydoc type (``order : int, default 1``, followed by an
  indented description) is kept;
- free text after such a section (which numpydoc has no way to end) starts a "Notes" block;
- doctest runs (``>>>`` ... output) outside an Examples section become fenced ``pycon`` code
  (as Markdown they would be block quotes and reference links);
- Sphinx roles (``:func:`name```, ``:class:`~a.b.C```) become code spans;
- a reST literal-block marker (a line ending in ``::`` before an indented block) becomes ``:``.

Loaded by mkdocstrings from mkdocs.yml (``extensions: [docs/_ext/griffe_mlmyths.py]``);
``tests/test_docs.py`` checks :func:`translate` on examples of each rule.
"""
from __future__ import annotations

import re
from typing import Any

import griffe

ITEM_SECTIONS = {"parameters", "other parameters", "attributes", "raises"}
KNOWN_SECTIONS = ITEM_SECTIONS | {"returns", "yields", "examples", "warns", "receives", "notes"}

_ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|data|attr|exc|obj|const|term|ref):`(~?)\.?([^`<>]+?)`")
_ITEM = re.compile(r"^(?P<names>\*{0,2}\w+(?:, \*{0,2}\w+)*) : (?P<rest>.*)$")
_TYPE_LIKE = re.compile(r"^[\w.\[\]|, ()=\-']+$")


def _role(match: re.Match[str]) -> str:
    target = match.group(2).strip()
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


def _is_header(lines: list[str], i: int) -> bool:
    return (i + 1 < len(lines) and bool(lines[i].strip()) and not lines[i].startswith(" ")
            and re.fullmatch(r"-{3,}", lines[i + 1].strip()) is not None)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _item_end(lines: list[str], i: int) -> int:
    """The index after the item that starts at line ``i`` (its indented continuation lines, blank
    lines between them included)."""
    j = i + 1
    while j < len(lines):
        if lines[j].startswith(" "):
            j += 1
        elif not lines[j].strip() and j + 1 < len(lines) and lines[j + 1].startswith(" "):
            j += 1
        else:
            break
    return j


def _split_item(lines: list[str], i: int, end: int) -> list[str] | None:
    """The item ``lines[i:end]`` in numpydoc: ``name : description`` -> ``name`` + the indented
    description, once per name of ``a, b : ...`` (so each name gets its own default from the
    signature). None when line ``i`` is not such an item."""
    m = _ITEM.match(lines[i])
    if m is None:
        return None
    rest = m.group("rest").strip()
    following = lines[i + 1] if i + 1 < end else ""
    is_type = (following.startswith("    ") and _TYPE_LIKE.match(rest) is not None and not rest.endswith(".")
               and len(rest.split()) <= 4)
    if is_type:
        return lines[i:end]
    body = ["    " + rest, *lines[i + 1:end]]
    return [line for name in m.group("names").split(", ") for line in (name, *body)]


def _fence_doctests(lines: list[str]) -> list[str]:
    """Wrap each doctest run (``>>>`` / ``...`` lines and their output, up to a blank line) in a
    ``pycon`` fence at its indentation."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            pad = " " * _indent(line)
            out.append(pad + "```pycon")
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) >= len(pad):
                out.append(lines[i])
                i += 1
            out.append(pad + "```")
            continue
        out.append(line)
        i += 1
    return out


def translate(text: str) -> str:
    """The docstring ``text`` (already dedented) in the Markdown/numpydoc that mkdocstrings renders."""
    lines = text.splitlines()
    fenced = False
    for i, line in enumerate(lines):  # roles first: outside code fences and doctest lines only
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and not line.lstrip().startswith((">>>", "...")):
            lines[i] = _ROLE.sub(_role, line)
    out: list[str] = []
    section: str | None = None
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if in_fence or line.lstrip().startswith("```"):
            out.append(line)
            i += 1
            continue
        if _is_header(lines, i):
            section = line.strip().lower()
            out += [line, lines[i + 1]]
            i += 2
            continue
        if section in ITEM_SECTIONS and line.strip() and not line.startswith(" "):
            end = _item_end(lines, i)
            item = _split_item(lines, i, end)
            if item is not None:
                out += item
                i = end
                continue
            # free text after the items: numpydoc cannot end a section, so open a Notes block
            section = "examples" if line.startswith(">>>") else "notes"
            if out and out[-1].strip():
                out.append("")
            out += ["Examples" if section == "examples" else "Notes", "-" * 8]
        if line.rstrip().endswith("::") and not line.rstrip().endswith(":::"):
            nxt = next((x for x in lines[i + 1:] if x.strip()), "")
            if _indent(nxt) > _indent(line):
                line = line.rstrip()[:-1]
        out.append(line)
        i += 1
    # doctests: griffe renders the Examples sections itself; fence the rest
    result: list[str] = []
    chunk: list[str] = []
    section = None
    for j, line in enumerate(out):
        if _is_header(out, j):
            result += chunk if section == "examples" else _fence_doctests(chunk)
            chunk = []
            section = line.strip().lower()
        chunk.append(line)
    result += _fence_doctests(chunk) if section != "examples" else chunk
    return "\n".join(result)


class MlmythsDocstrings(griffe.Extension):
    """Rewrite every docstring with :func:`translate` when Griffe creates the object."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = translate(obj.docstring.value)
