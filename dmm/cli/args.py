"""What the commands read from the command line: the one kind of user mistake (`CLIError`), comma-separated lists,
cycle windows, trace files, and the conversion of ``--arg key=value`` to the parameters a program builder declares.

``--arg`` values are parsed as JSON where they can be (``3``, ``[1,2]``, ``{"a": 1}``, ``null``), else taken as
text, then converted to the builder's annotation (`typing.get_type_hints`; the type of the default where there is
none): ``none``/``null`` for None, ``yes``/``no``/``on``/``off``/``1``/``0`` for booleans, comma-separated items for
tuples and lists, and the first member of a union that fits (str last, since it takes anything).
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dmm
import dmm.files


class CLIError(Exception):
    """A user mistake: printed as one line, exit status 2."""


def split(values: Sequence[str] | None) -> list[str]:
    """Comma-separated and repeated option values as one list."""
    return [v.strip() for item in (values or []) for v in item.split(",") if v.strip()]


def parse_cycles(text: str | None) -> tuple[int | None, int | None] | None:
    """A ``--cycles`` window: ``A:B`` (inclusive), ``A:``, ``:B`` or ``A``; None when not given."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) == 1:
            c = int(parts[0])
            return c, c
        if len(parts) == 2:
            return tuple(int(p) if p.strip() else None for p in parts)  # type: ignore[return-value]
    except ValueError:
        pass
    raise CLIError(f"--cycles {text!r}: expected FIRST:LAST (inclusive), FIRST:, :LAST or one cycle")


def load_trace(path: str) -> dmm.Trace:
    """The trace file a command names (`dmm.files.load_trace`), or a `CLIError` when there is none."""
    if not Path(path).exists():
        raise CLIError(f"no such trace file {path}")
    return dmm.files.load_trace(path)


def program_args(name: str, fn: Callable[..., Any], pairs: Sequence[str]) -> dict[str, Any]:
    """Convert ``key=value`` strings to keyword arguments of the program builder `fn` registered as `name`."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: fall back to the types of the defaults
        hints = {}
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"--arg {pair!r}: expected KEY=VALUE")
        if key not in sig.parameters:
            raise CLIError(f"program {name!r} has no parameter {key!r}; its parameters: {dmm.ProgramInfo.of(name, fn).parameters or 'none'}")
        p = sig.parameters[key]
        hint = hints.get(key, type(p.default) if p.default not in (inspect.Parameter.empty, None) else Any)
        try:
            kwargs[key] = _coerce(_json_or_str(text), hint, text)
        except (ValueError, TypeError) as e:
            raise CLIError(f"--arg {key}={text}: {e}") from None
    missing = [p.name for p in sig.parameters.values() if p.default is inspect.Parameter.empty and p.name not in kwargs
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise CLIError(f"program {name!r} needs --arg {missing[0]}=VALUE (its parameters: {dmm.ProgramInfo.of(name, fn).parameters})")
    return kwargs


_NONE = {"none", "null"}
_BOOL = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}


def _coerce(value: Any, hint: Any, raw: str | None = None) -> Any:
    """Convert a parsed JSON value (or the raw string) to the type `hint`; raise ValueError when it does not fit."""
    origin, targs = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    if hint is type(None):
        if value is None or (isinstance(value, str) and value.lower() in _NONE):
            return None
        raise ValueError("expected none")
    if origin in (typing.Union, types.UnionType):
        members = sorted(targs, key=lambda t: t is str)  # try str last: it accepts everything
        for t in members:
            try:
                return _coerce(value, t, raw)
            except (ValueError, TypeError):
                continue
        raise ValueError(f"expected {' or '.join(getattr(t, '__name__', str(t)) for t in targs)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        key = str(raw if raw is not None else value).lower()
        if key in _BOOL:
            return _BOOL[key]
        raise ValueError("expected true or false")
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("+-").isdigit())):
            raise ValueError("expected an integer")
        return int(value)
    if hint is float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        return float(value)
    if hint is str:
        return raw if raw is not None else str(value)
    if origin in (tuple, list, collections.abc.Sequence):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ValueError("expected a list (JSON [..] or comma-separated)")
        if origin is tuple and targs and targs[-1] is not Ellipsis:
            if len(targs) != len(value):
                raise ValueError(f"expected {len(targs)} items")
            return tuple(_coerce(v, t) for v, t in zip(value, targs))
        item = targs[0] if targs else Any
        items = [_coerce(v, item) for v in value]
        return tuple(items) if origin is not list else items
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object {..}")
        kt, vt = targs if len(targs) == 2 else (Any, Any)
        return {_coerce(_json_or_str(k), kt, k): _coerce(v, vt) for k, v in value.items()}
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise TypeError(f"a {getattr(hint, '__name__', hint)} cannot be given on the command line")


def _json_or_str(text: str) -> Any:
    """`text` parsed as JSON, or `text` itself when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text
