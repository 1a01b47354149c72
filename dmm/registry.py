"""The registry of program builders: named functions that return a `Program` (what ``dmm programs`` lists and
``dmm run NAME`` builds).

A package registers its builders when imported (`register_program`, a decorator). `dmm` never imports such a
package itself: `registered_programs` imports the packages declared under the ``dmm.programs`` entry-point group the
first time it is called, so the builders of `programs` (and of any installed package that declares the group) are
found without the core knowing their names.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ProgramError
from .program import Program


_PROGRAMS: dict[str, Callable[..., Program]] = {}
_ENTRY_POINTS_LOADED = False


def register_program(fn: Callable[..., Program]) -> Callable[..., Program]:
    """Register a function returning a `Program` under its own name (a decorator; returns `fn`). Its docstring's
    first paragraph is its one-line description; its parameters, with their annotations and defaults, are what
    ``dmm run NAME --arg key=value`` sets. Names are global: registering a name twice raises `ProgramError`."""
    if fn.__name__ in _PROGRAMS:
        raise ProgramError(f"program {fn.__name__!r} is registered twice")
    _PROGRAMS[fn.__name__] = fn
    return fn


def registered_programs() -> dict[str, Callable[..., Program]]:
    """Program name -> builder, sorted by name, after importing the packages of the ``dmm.programs`` entry points
    (once; a package that fails to import raises `ProgramError` naming its entry point, every time)."""
    global _ENTRY_POINTS_LOADED
    if not _ENTRY_POINTS_LOADED:
        from importlib.metadata import entry_points

        for ep in entry_points(group="dmm.programs"):
            try:
                ep.load()
            except Exception as e:  # a broken plug-in names itself
                raise ProgramError(f"entry point {ep.name!r} of group dmm.programs failed to load: {e}") from e
        _ENTRY_POINTS_LOADED = True
    return dict(sorted(_PROGRAMS.items()))
