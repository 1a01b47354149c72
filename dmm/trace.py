"""`Trace`: the recorded streams of a run.

``trace["neuron.port"]`` is an array of shape ``(steps, *kind.shape)`` whose row c - 1 - first_cycle holds cycle c
(input ports hold X_c, output ports Y_c). Outside JAX transformations the arrays are NumPy arrays; under
`jax.grad`/`jax.vmap`/`jax.jit` they are traced arrays (a Trace is a pytree). Keyed kinds read back as
``{label: value}`` dicts (`labeled`). `dmm.files.save_trace` and `dmm.files.load_trace` write and read them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from .display import html_table
from .errors import UnknownStreamError
from .kinds import Kind
from .pytrees import pytree

class Recorded:
    """Recorded streams by name, with their kinds, first cycle and final state (the part `Trace` and
    `dmm.BatchTrace` share). Subclasses are pytrees: arrays and state are leaves, names and kinds static."""

    def __init__(self, records: Mapping[str, Any], kinds: Mapping[str, Kind], first_cycle: Any = 0, state: Any = None):
        self._records = dict(records)
        self.kinds = dict(kinds)
        self.first_cycle = first_cycle
        self.state = state

    def tree_flatten(self):
        names = tuple(self._records)
        return (tuple(self._records[n] for n in names), self.first_cycle, self.state), (names, tuple(self.kinds.items()))

    @classmethod
    def tree_unflatten(cls, aux, children):
        names, kinds = aux
        arrays, first, state = children
        return cls(dict(zip(names, arrays)), dict(kinds), first, state)

    def __getitem__(self, stream: str) -> Any:
        try:
            return self._records[stream]
        except (KeyError, TypeError):
            ports = [n for n in self._records if isinstance(stream, str) and n.split(".")[0] == stream]
            if ports:
                raise UnknownStreamError(
                    f"{stream!r} is a neuron, not a stream: name one of its recorded ports {ports[:8]}"
                ) from None
            raise UnknownStreamError(
                f"stream {stream!r} was not recorded (recorded: {self.names[:8]}{'...' if len(self.names) > 8 else ''}); "
                "pass record=[...] or record='all' to run"
            ) from None

    def __contains__(self, stream: object) -> bool:
        return stream in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def names(self) -> list[str]:
        """The recorded streams, in the order asked for."""
        return list(self._records)

@pytree
class Trace(Recorded):
    """Recorded streams of a run (see the module docstring).

    **Attributes:** `first_cycle` (cycles done before the run; row 0 is cycle first_cycle + 1), `state` (the final
    `State`, to continue from; None for a loaded trace), `kinds` ({stream: Kind}).
    """

    @property
    def steps(self) -> int:
        if not self._records:
            return 0
        return int(next(iter(self._records.values())).shape[0])

    @property
    def cycles(self) -> np.ndarray:
        """Cycle numbers of the rows: first_cycle + 1, ..., first_cycle + steps."""
        return np.arange(int(self.first_cycle) + 1, int(self.first_cycle) + 1 + self.steps)

    def at(self, stream: str, cycle: int) -> Any:
        """The value of `stream` at cycle `cycle`."""
        row = cycle - int(self.first_cycle) - 1
        if not 0 <= row < self.steps:
            raise UnknownStreamError(f"cycle {cycle} is outside this trace (cycles {self.cycles[:1]}..{self.cycles[-1:]})")
        return self[stream][row]

    def labeled(self, stream: str) -> list[dict[str, float]]:
        """A keyed stream as one ``{label: value}`` dict per cycle (labels as in `Kind.labels`)."""
        kind = self.kinds[stream] if stream in self.kinds else None
        values = np.asarray(self[stream])
        if kind is None or kind.labels is None:
            raise UnknownStreamError(f"stream {stream!r} has no key table (its kind is {kind!r})")
        return [dict(zip(kind.labels, map(float, row))) for row in values]

    def __repr__(self) -> str:
        first = self.first_cycle
        span = f"cycles {int(first) + 1}..{int(first) + self.steps}" if _is_int(first) else f"{self.steps} cycles"
        more = f" (+{len(self) - 6} more)" if len(self) > 6 else ""
        return f"Trace({span}, {len(self)} streams {self.names[:6]}{more})"

    def summary(self) -> list[tuple[str, str, tuple[int, ...], str]]:
        """One row per recorded stream: (name, kind name, shape of one value, dtype)."""
        return [(n, self.kinds[n].name if n in self.kinds else "?", tuple(np.shape(v)[1:]), str(getattr(v, "dtype", "?")))
                for n, v in self._records.items()]

    def _repr_html_(self) -> str:
        """A compact table for notebooks: the cycles covered, then each stream's kind, shape and dtype. (An inline
        plot: `dmm.plot.plot_trace(trace)` returns a matplotlib Figure, which notebooks draw.)"""
        return html_table(repr(self).split(",")[0] + ")", ("stream", "kind", "shape", "dtype"), self.summary())

def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) or (isinstance(x, np.ndarray) and x.shape == ())
