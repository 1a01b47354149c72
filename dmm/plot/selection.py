"""Which part of a trace a figure or a table shows: streams by stream or neuron name, rows by a cycle window."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dmm import DMMError, Trace, UnknownStreamError


def select_streams(trace: Trace, streams: Sequence[str] | None) -> list[str]:
    """Resolve stream names or neuron names (every recorded port of the neuron) against a trace, in order; with no
    names, every recorded stream grouped by neuron (in the order neurons first appear in the trace)."""
    if not streams:
        rank = {m: i for i, m in enumerate(dict.fromkeys(n.split(".")[0] for n in trace.names))}
        return sorted(trace.names, key=lambda n: rank[n.split(".")[0]])  # stable: ports keep their order
    out: list[str] = []
    for s in streams:
        if s in trace:
            out.append(s)
            continue
        ports = [n for n in trace.names if n.split(".")[0] == s] if "." not in s else []
        if not ports:
            shown = ", ".join(trace.names[:12]) + (", …" if len(trace) > 12 else "")
            raise UnknownStreamError(f"unknown stream {s!r}: the trace holds {shown}")
        out.extend(ports)
    return list(dict.fromkeys(out))


def window(trace: Trace, cycles: tuple[int | None, int | None] | None) -> np.ndarray:
    """Row indices of the trace for the cycles ``(first, last)`` (inclusive; None = open end)."""
    c = trace.cycles
    lo, hi = cycles if cycles is not None else (None, None)
    keep = np.ones(len(c), bool)
    if lo is not None:
        keep &= c >= lo
    if hi is not None:
        keep &= c <= hi
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        span = f"{c[0]}..{c[-1]}" if len(c) else "none"
        raise DMMError(f"no cycles in {lo if lo is not None else ''}:{hi if hi is not None else ''} (the trace has cycles {span})")
    return rows
