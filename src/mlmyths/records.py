"""Run records: what an experiment returns, what ``results.json`` holds, and how a record is checked.

- :class:`Headline`: the myth, the refuting study and its headline result (every experiment's
  ``CLAIM``; ``claim`` in the record).
- :class:`Result`: what ``run(cfg, ctx)`` returns: the judged claims (the verdict is derived
  from them by :func:`mlmyths.claims.verdict`, never written by the experiment), a summary,
  metrics, tables, figures, notes and what differs from the paper.
- :data:`SCHEMA` and :func:`validate`: ``results.json`` follows ``schemas/results.schema.json``
  (JSON Schema, shipped with the package; schema 1 records -- no claims -- stay valid).
  :func:`validate` implements the part of JSON Schema that file uses, and refuses schemas that
  use more, so the file is the whole truth about what a record may contain.
- :func:`read_record`: a ``results.json`` read defensively: size- and depth-bounded, checked
  against the schema; :class:`RecordError` names what is wrong.

>>> errors(json.loads('{"schema": 2, "myth": "fixup", "run_id": "r", "status": "done"}'))
["$.status: 'done' is not one of ['running', 'completed', 'interrupted', 'failed']"]
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from mlmyths.claims import ClaimResult

SCHEMA = 2
STATUSES = ("running", "completed", "interrupted", "failed")
MAX_RECORD_BYTES = 64 * 2**20  #: a results.json larger than this is refused unread
MAX_DEPTH = 32  #: JSON nested deeper than this is refused


@dataclass(frozen=True)
class Headline:
    """The myth, the study that tested it, and the study's headline result."""

    myth: str  #: the myth sentence
    paper: str  #: citation of the refuting study
    paper_result: str  #: the paper's headline result, in words and numbers


@dataclass
class Result:
    """What ``run(cfg, ctx)`` returns. The verdict is not here: it follows from ``claims``."""

    claims: list[ClaimResult]  #: every declared claim, judged (not_tested ones with their reason)
    summary: str  #: our measurement in a few sentences, with the numbers
    metrics: dict[str, Any] = field(default_factory=dict)  #: name -> number (None if unavailable)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  #: name -> rows
    figures: list[str] = field(default_factory=list)  #: paths relative to the run directory
    notes: list[str] = field(default_factory=list)  #: caveats
    differences: list[str] = field(default_factory=list)  #: what differs from the paper: data, model, budget, proxies


# -- validation ------------------------------------------------------------------------------------


class RecordError(ValueError):
    """A results.json that cannot be read or does not follow the schema."""


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_KEYWORDS = {"$schema", "$id", "title", "description", "type", "enum", "required", "properties",
             "additionalProperties", "items", "minItems", "maxItems", "maxLength", "maxProperties",
             "minimum", "maximum"}


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON Schema of ``results.json`` (``mlmyths/schemas/results.schema.json``)."""
    text = resources.files("mlmyths").joinpath("schemas/results.schema.json").read_text(encoding="utf-8")
    loaded = json.loads(text)
    _check_keywords(loaded, "$")
    return loaded


def _check_keywords(node: Any, where: str) -> None:
    if not isinstance(node, dict):
        return
    unknown = set(node) - _KEYWORDS
    if unknown:
        raise ValueError(f"results schema uses keywords this validator does not implement at {where}: {sorted(unknown)}")
    for name, sub in node.get("properties", {}).items():
        _check_keywords(sub, f"{where}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _check_keywords(node[key], f"{where}[{key}]")


def errors(record: Any, node: dict[str, Any] | None = None, where: str = "$", limit: int = 20) -> list[str]:
    """Every way ``record`` departs from the schema (at most ``limit``), as ``$.path: problem``."""
    out: list[str] = []
    # an explicit stack instead of recursion: hostile nesting cannot exhaust the interpreter's stack
    stack: list[tuple[Any, dict[str, Any], str, int]] = [(record, node or schema(), where, 0)]
    while stack and len(out) < limit:
        value, sch, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            out.append(f"{path}: nested deeper than {MAX_DEPTH} levels")
            continue
        types = sch.get("type")
        if types is not None:
            names = [types] if isinstance(types, str) else list(types)
            if not any(_TYPES[t](value) for t in names):
                out.append(f"{path}: expected {' or '.join(names)}, got {_kind(value)}")
                continue
        if "enum" in sch and value not in sch["enum"]:
            out.append(f"{path}: {value!r} is not one of {sch['enum']}")
            continue
        if isinstance(value, str) and len(value) > sch.get("maxLength", math.inf):
            out.append(f"{path}: string of {len(value)} characters, at most {sch['maxLength']} allowed")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if value < sch.get("minimum", -math.inf) or value > sch.get("maximum", math.inf):
                out.append(f"{path}: {value!r} outside [{sch.get('minimum', '-inf')}, {sch.get('maximum', 'inf')}]")
        if isinstance(value, list):
            if not sch.get("minItems", 0) <= len(value) <= sch.get("maxItems", math.inf):
                out.append(f"{path}: {len(value)} items, expected {sch.get('minItems', 0)} to {sch.get('maxItems', 'any')}")
                continue
            items = sch.get("items", {})  # no item schema: anything, but depth-bounded
            stack.extend((v, items, f"{path}[{i}]", depth + 1) for i, v in reversed(list(enumerate(value))))
        if isinstance(value, dict):
            if len(value) > sch.get("maxProperties", math.inf):
                out.append(f"{path}: {len(value)} fields, at most {sch['maxProperties']} allowed")
                continue
            missing = [k for k in sch.get("required", []) if k not in value]
            if missing:
                out.append(f"{path}: missing field(s) {', '.join(missing)}")
            props, extra = sch.get("properties", {}), sch.get("additionalProperties", True)
            for k in reversed(list(value)):
                child = f"{path}.{k}"
                if k in props:
                    stack.append((value[k], props[k], child, depth + 1))
                elif extra is False:
                    out.append(f"{child}: unknown field")
                elif isinstance(extra, dict):
                    stack.append((value[k], extra, child, depth + 1))
                else:
                    stack.append((value[k], {}, child, depth + 1))  # anything, but depth-bounded
    return out[:limit]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float) and not math.isfinite(value):
        return f"non-finite number {value!r}"
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number"}.get(type(value), type(value).__name__)


def validate(record: Any) -> dict[str, Any]:
    """``record`` itself if it follows the schema; :class:`RecordError` with the first problems otherwise."""
    problems = errors(record, limit=3)
    if problems:
        raise RecordError("; ".join(problems))
    return record


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_record(path: Path | str) -> dict[str, Any]:
    """Read and validate one ``results.json``. :class:`RecordError` (one line) when it is not a
    regular file, too large, not UTF-8 JSON, nested too deeply, or off the schema."""
    path = Path(path)
    try:
        if not path.is_file():
            raise RecordError("not a regular file")
        size = path.stat().st_size
        if size > MAX_RECORD_BYTES:
            raise RecordError(f"{size} bytes, larger than the {MAX_RECORD_BYTES} allowed")
        text = path.read_bytes().decode("utf-8")
        record = json.loads(text, parse_constant=_reject_constant)
    except RecordError:
        raise
    except RecursionError:
        raise RecordError("JSON nested too deeply") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"unreadable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return validate(record)
