"""The registry of named DMM programs (what `dmm programs` lists and `dmm run NAME` runs)."""

from __future__ import annotations

from collections.abc import Callable

import dmm


_PROGRAMS: dict[str, Callable[..., dmm.Program]] = {}


def register(fn: Callable[..., dmm.Program]) -> Callable[..., dmm.Program]:
    """Register a function returning a `dmm.Program` under its own name (a decorator). Its docstring's first line
    is its one-line description."""
    if fn.__name__ in _PROGRAMS:
        raise dmm.ProgramError(f"program {fn.__name__!r} is registered twice")
    _PROGRAMS[fn.__name__] = fn
    return fn


def registry() -> dict[str, Callable[..., dmm.Program]]:
    """Program name -> function, sorted by name."""
    return dict(sorted(_PROGRAMS.items()))
