"""Checks of the kinds that configure the attention neurons."""

from __future__ import annotations

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
