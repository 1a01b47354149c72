"""Checks of the kinds that configure the attention neurons, and of the classes registered by name (mechanisms,
mixers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from dmm import Kind, ProgramError


def check_kind(kind: Any, what: str, where: str, ndim: int | None = None) -> Kind:
    """`kind` itself if it is a `dmm.Kind` with a shape (of `ndim` dimensions when given); otherwise raise
    `dmm.ProgramError` naming `where` and the argument `what`."""
    if not isinstance(kind, Kind) or kind.shape is None:
        raise ProgramError(f"{where}: {what} must be a Kind with a shape, not {kind!r}")
    if ndim is not None and len(kind.shape) != ndim:
        raise ProgramError(f"{where}: {what} {kind!r} must have {ndim} dimension(s), not shape {kind.shape}")
    return kind


def check_registration(registry: Mapping[str, type], name: str, cls: Any, base: type, what: str) -> None:
    """Raise `dmm.ProgramError` unless `cls` may be registered in `registry` under `name`: a dataclass subclass of
    `base`, and `name` free or held by a class of the same qualified name (a module imported again). `what` names
    the registry in messages (e.g. "attention mechanism")."""
    if not (isinstance(cls, type) and issubclass(cls, base) and dataclasses.is_dataclass(cls)):
        raise ProgramError(f"{what} {name!r}: {cls!r} is not a dataclass subclass of {base.__name__}")
    previous = registry.get(name)
    if previous is not None and previous.__qualname__ != cls.__qualname__:
        raise ProgramError(f"{what} name {name!r} is already registered by {previous.__module__}")
