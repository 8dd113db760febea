"""Frozen config dataclasses: scale presets and strict, typed overrides.

Every experiment declares one frozen dataclass and a preset per scale
(``smoke``, ``small``, ``paper``). Overrides -- from Python keywords or from
``--set key=value`` on the command line -- are checked against the field's type
annotation: an unknown key or a value of the wrong type raises
:class:`~mlmyths.errors.ConfigError` naming the key, the value and what was expected.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo:
...     lr: float = 0.1
...     depths: tuple[int, ...] = (8, 20)
>>> override(Demo(), {"lr": "0.05", "depths": "8,32,110"})
Demo(lr=0.05, depths=(8, 32, 110))
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

from mlmyths.errors import ConfigError

SCALES: tuple[str, ...] = ("smoke", "small", "paper")

C = TypeVar("C")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}


def select(presets: Mapping[str, C], scale: str, overrides: Mapping[str, Any] | None = None) -> C:
    """Return the preset for ``scale`` with ``overrides`` applied (strictly typed)."""
    if scale not in presets:
        raise ConfigError(f"unknown scale {scale!r}: choose one of {', '.join(presets)}")
    return override(presets[scale], overrides or {})


def override(cfg: C, overrides: Mapping[str, Any]) -> C:
    """A copy of the frozen dataclass ``cfg`` with ``overrides`` coerced to the field types."""
    if not overrides:
        return cfg
    names = [f.name for f in dataclasses.fields(cfg)]  # type: ignore[arg-type]
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ConfigError(
                f"unknown config key {key!r} for {type(cfg).__name__}; valid keys: {', '.join(names)}"
            )
        changes[key] = coerce(value, hints[key], key)
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["lr=0.1", "depths=8,20"]`` -> ``{"lr": "0.1", "depths": "8,20"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return {f.name: _jsonable(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
    """Rebuild a config from :func:`to_dict` output (e.g. a saved ``config.json``)."""
    return override(cls(), values)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        plural = {int: "whole numbers", float: "finite numbers", str: "strings", bool: "booleans"}
        inner = (plural.get(args[0]) or _describe(args[0])) if args else "values"
        return f"a comma-separated list of {inner}"
    if tp is type(None):
        return "none"
    if tp is float:
        return "a finite number"
    if tp is int:
        return "a whole number"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str = "value") -> Any:
    """Convert ``value`` (a string from the command line, or a Python value) to type ``tp``."""
    try:
        return _coerce(value, tp)
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(f"config key {key!r} expects {_describe(tp)}, got {value!r}") from None


def _coerce(value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is None or (isinstance(value, str) and value.lower() in _NONE):
            return None
        raise ValueError
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        # None first so that "none" is not read as the string "none".
        for arg in sorted(args, key=lambda a: a is not type(None)):
            try:
                return _coerce(value, arg)
            except (ValueError, TypeError):
                continue
        raise ValueError
    if origin is Literal:
        for option in typing.get_args(tp):
            if value == option or (isinstance(value, str) and str(option) == value):
                return option
        raise ValueError
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, str):
            items: Sequence[Any] = [v.strip() for v in value.split(",")] if value.strip() else []
        elif isinstance(value, (list, tuple)):
            items = value
        else:
            raise ValueError
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in items)
        if len(args) != len(items):
            raise ValueError
        return tuple(_coerce(v, a) for v, a in zip(items, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError
    if tp is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            return int(value.replace("_", ""))
        raise ValueError
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        number = float(value)
        if not math.isfinite(number):  # nan/inf would be saved as null and break every resume
            raise ValueError
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise TypeError(f"unsupported config type {tp!r}")


def check_types(cfg: Any) -> None:
    """Every field of the config dataclass ``cfg`` holds a value of its annotated type: Literal
    members, whole numbers for ``int``, finite numbers for ``float``, tuples of the element type.

    Call it first in every experiment config's ``__post_init__``, so that the command line,
    ``--set``, ``--resume`` and library callers (``Config(...)``, ``dataclasses.replace``) all meet
    the same checks; the ranges follow it in the same ``__post_init__``.
    """
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not _holds(value, hints[f.name]):
            raise ConfigError(f"config key {f.name!r} expects {_describe(hints[f.name])}, got {value!r}")


def _holds(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_holds(value, a) for a in typing.get_args(tp))
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_holds(v, args[0]) for v in value)
        return len(args) == len(value) and all(_holds(v, a) for v, a in zip(value, args))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    return isinstance(tp, type) and isinstance(value, tp)


def require(condition: bool, key: str, value: Any, expected: str) -> None:
    """The one shape of a range check: ``ConfigError("config key 'K' must be EXPECTED, got V")``.

    >>> require(3 >= 1, "epochs", 3, "at least 1")
    """
    if not condition:
        raise ConfigError(f"config key {key!r} must be {expected}, got {value!r}")
