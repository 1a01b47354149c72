"""Exceptions raised by `dmm`.

Every error a user can cause by writing a bad program, a bad run request or a bad file is a subclass of
`DMMError` (itself a `ValueError`), raised when the program is built, compiled or loaded, with a message that names
the neuron, port, kind or file at fault.
"""

from __future__ import annotations

from typing import Any


class DMMError(ValueError):
    """Base class of every `dmm` error."""


class ProgramError(DMMError):
    """A program (or a compile or run request on it) is malformed: unknown names, bad links, bad shapes."""


class FileFormatError(DMMError):
    """A program, trace or checkpoint file is missing, truncated, malformed or inconsistent."""


class UnknownStreamError(DMMError, KeyError):
    """A stream name (``"neuron.port"``) that a program or trace does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NonFiniteError(DMMError, FloatingPointError):
    """A run or training step produced NaN or Inf; the message names the first cycle and stream.

    `state`: for a training step, the last finite `TrainState` (before the failing step); None for a plain run.
    """

    state: Any = None
