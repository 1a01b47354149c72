"""Traces as text: one value (`format_value`), the table of a trace's cycles (`trace_table`, what ``dmm show``
prints), the list of its streams (`stream_list`, ``dmm show --list``) and the rows worth showing (`changed_rows`).

Every function returns strings (a table as a list of lines); printing, terminal widths and option checks are the
command line's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dmm import Kind, Trace


CYCLE_COLUMN = 6  # characters taken by the cycle column and its gap, counted when blocks are fitted to a width
CLOCK_SHARE = 0.9  # a stream that changes at this share of the rows or more is a clock (see `changed_rows`)


def format_number(x: float, digits: int = 4) -> str:
    """A number in at most `digits` significant digits (``2`` for 2.0, ``0.5``, ``1e-07``)."""
    s = f"{float(x):.{digits}g}"
    return "0" if s == "-0" else s


def format_value(value: Any, kind: Kind | None = None, digits: int = 4, max_items: int = 8, *,
                 width: int | None = None) -> str:
    """One value of a stream as text: a number; a keyed vector as ``{label: value}`` (zero entries left out, ``{}``
    when all are zero); another vector as ``[a b c ...]``; a matrix as ``MxN {[i,j]: value, ...}`` (nonzero
    entries). At most `max_items` entries are written, then ``… +n``; text longer than `width` characters (when
    given) is cut to `width`, ending in ``…``."""
    text = _format(np.asarray(value, np.float64), kind, digits, max_items)
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _format(v: np.ndarray, kind: Kind | None, digits: int, max_items: int) -> str:
    num = lambda x: format_number(x, digits)  # noqa: E731

    def cut(items: list[str], total: int) -> str:
        more = f", … +{total - max_items}" if total > max_items else ""
        return ", ".join(items[:max_items]) + more

    if v.ndim == 0:
        return num(v)
    if v.ndim == 1 and kind is not None and kind.labels is not None:
        nz = [(lab, x) for lab, x in zip(kind.labels, v) if x != 0]
        return "{" + cut([f"{lab!r}: {num(x)}" for lab, x in nz], len(nz)) + "}"
    if v.ndim == 1:
        more = f" … +{len(v) - max_items}" if len(v) > max_items else ""
        return "[" + " ".join(num(x) for x in v[:max_items]) + more + "]"
    if v.ndim == 2:
        idx = list(zip(*np.nonzero(v)))
        return f"{v.shape[0]}x{v.shape[1]} {{" + cut([f"[{i},{j}]: {num(v[i, j])}" for i, j in idx], len(idx)) + "}"
    return f"array {v.shape}, max |x| {num(np.abs(v).max()) if v.size else 0}"


def changed_rows(trace: Trace, names: Sequence[str], rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The `rows` where one of the streams `names` changes from the previous row (the first row always), and the
    "clocks": streams that change at `CLOCK_SHARE` of the rows or more (a timer), which are not counted unless every
    stream is one."""
    values = {s: np.asarray(trace[s]) for s in names}
    flips = {s: np.array([True] + [not np.array_equal(v[r], v[p]) for p, r in zip(rows[:-1], rows[1:])])
             for s, v in values.items()}
    clocks = [s for s, f in flips.items() if len(rows) > 2 and f[1:].mean() >= CLOCK_SHARE]
    counted = [f for s, f in flips.items() if s not in clocks] or list(flips.values())
    if len(counted) == len(flips):
        clocks = []
    return rows[np.any(counted, axis=0)], clocks


def trace_table(trace: Trace, names: Sequence[str], rows: np.ndarray, *, digits: int = 4, width: int = 48,
                columns: int = 120) -> list[str]:
    """The lines of a table of the streams `names` at the trace rows `rows`: a cycle column, then one column per
    stream (values as `format_value` writes them, cut to `width` characters). Streams that do not fit in `columns`
    characters go on to further blocks; each block starts with an empty line and a header line."""
    cells = {s: [format_value(np.asarray(trace[s])[r], trace.kinds[s], digits, width=width) for r in rows] for s in names}
    widths = {s: max([len(s)] + [len(c) for c in cells[s]]) for s in names}
    cycles = [str(c) for c in trace.cycles[rows]]
    cw = max(5, max(map(len, cycles), default=5))
    blocks: list[list[str]] = [[]]
    used = CYCLE_COLUMN
    for s in names:
        if blocks[-1] and used + widths[s] + 2 > columns:
            blocks.append([])
            used = CYCLE_COLUMN
        blocks[-1].append(s)
        used += widths[s] + 2
    lines = []
    for block in blocks:
        lines.append("")
        lines.append("cycle".rjust(cw) + "".join("  " + s.ljust(widths[s]) for s in block).rstrip())
        lines.extend(c.rjust(cw) + "".join("  " + cells[s][i].ljust(widths[s]) for s in block).rstrip()
                     for i, c in enumerate(cycles))
    return lines


def stream_list(trace: Trace, names: Sequence[str], rows: np.ndarray, digits: int = 4) -> list[str]:
    """The lines of a table of the streams `names` over the trace rows `rows`: kind, shape, minimum, maximum and
    last value of each, after an empty line."""
    table = [("stream", "kind", "shape", "min", "max", f"at cycle {trace.cycles[rows[-1]]}")]
    for s in names:
        v = np.asarray(trace[s])[rows]
        k = trace.kinds[s]
        table.append((s, k.name + (" (keyed)" if k.labels else ""), str(tuple(k.shape)), format_number(v.min(), digits),
                      format_number(v.max(), digits), format_value(v[-1], k, digits, width=60)))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return [""] + ["  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in table]
