"""Pictures of traces: `plot_trace` (matplotlib, the ``plot`` extra) and the `panels` it draws.

A figure is made of *panels*, chosen per stream so that a person sees the dynamics at a glance:

- a scalar stream is a line over the cycles;
- a vector stream is a heatmap (coordinates x cycles; a keyed kind's labels name the rows), or a few lines when it
  is a short vector without labels; long vectors keep only the coordinates that change;
- a matrix stream (the network matrix W of a Self neuron, matrix-valued edits) is a row of image frames taken at
  the cycles where it changes, followed by a heatmap of the entries that change;
- a stream that is constant over the window is not drawn but listed with its value under the figure.

matplotlib is imported only when `plot_trace` is called; without it, `plot_trace` raises an ImportError that names
the extra to install (``pip install 'dmm[plot]'``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dmm import Trace

from .selection import select_streams, window
from .tables import format_value


EXTRA_HINT = "plotting needs matplotlib: pip install 'dmm[plot]' (in a checkout: pip install -e '.[plot]')"
MAX_ROWS = 48  # heatmap rows kept for long vectors / changing matrix entries
MAX_LINES = 6  # an unlabelled vector up to this size is drawn as lines
MAX_PANELS = 24


# ------------------------------------------------------------------------------------------------ panels
@dataclasses.dataclass(frozen=True)
class Panel:
    """One picture of one stream.

    - `style`: ``"lines"`` (`values` (T, L), one line per column, `labels` the legend, empty for one line),
      ``"heatmap"`` (`values` (R, T), `labels` the row names) or ``"frames"`` (`values` (F, m, n), `labels` the
      frame titles, `frame_cycles` their cycles).
    - `stream`, `title`: the stream name and the panel title; `cycles`: (T,) cycle numbers.
    """

    style: str
    stream: str
    title: str
    cycles: np.ndarray
    values: np.ndarray
    labels: tuple[str, ...] = ()
    frame_cycles: tuple[int, ...] = ()


def _changing(flat: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the columns of a (T, d) array that change over T, the `limit` with the largest range."""
    rng = flat.max(axis=0) - flat.min(axis=0)
    idx = np.flatnonzero(rng > 0)
    if len(idx) > limit:
        idx = np.sort(idx[np.argsort(-rng[idx], kind="stable")[:limit]])
    return idx


def _frame_rows(values: np.ndarray, n: int) -> list[int]:
    """Rows at which a matrix stream changes (the first row included): the first `n`; the last row replaces the
    n-th when there are more."""
    changes = [0] + [t for t in range(1, len(values)) if not np.array_equal(values[t], values[t - 1])]
    if len(changes) > n:
        changes = changes[: n - 1] + [len(values) - 1]
    return changes


def panels(
    trace: Trace,
    streams: Sequence[str] | None = None,
    cycles: tuple[int | None, int | None] | None = None,
    frames: int = 8,
) -> tuple[list[Panel], list[str]]:
    """The panels that picture `trace` (see the module docstring) and the lines listing its constant streams.

    **Arguments:** `streams`: stream or neuron names (default every recorded stream, in order); `cycles`:
    ``(first, last)`` cycle window, inclusive; `frames`: at most this many image frames per matrix stream.
    """
    names = select_streams(trace, streams)
    rows = window(trace, cycles)
    c = trace.cycles[rows]
    out: list[Panel] = []
    constant: list[str] = []
    for s in names:
        kind = trace.kinds.get(s)
        v = np.asarray(trace[s])[rows]
        if np.all(v == v[:1]):
            constant.append(f"{s} = {format_value(v[0], kind)}")
            continue
        if v.ndim == 1:
            out.append(Panel("lines", s, s, c, v[:, None]))
        elif v.ndim == 3:
            fr = _frame_rows(v, frames)
            titles = tuple(f"cycle {c[r]}" for r in fr)
            out.append(Panel("frames", s, f"{s} ({v.shape[1]}x{v.shape[2]}, frames where it changes)", c, v[fr], titles, tuple(int(c[r]) for r in fr)))
            flat = v.reshape(len(v), -1)
            idx = _changing(flat, MAX_ROWS)
            labels = tuple(f"[{i // v.shape[2]},{i % v.shape[2]}]" for i in idx)
            out.append(Panel("heatmap", s, f"{s}: {_count(len(idx), 'entry that changes', 'entries that change')}", c, flat[:, idx].T, labels))
        else:
            flat = v.reshape(len(v), -1)
            d = flat.shape[1]
            labels = kind.labels if kind is not None and kind.labels is not None and v.ndim == 2 else None
            if labels is None and d <= MAX_LINES:
                out.append(Panel("lines", s, s, c, flat, tuple(f"[{i}]" for i in range(d))))
                continue
            idx = np.arange(d)
            title = s
            if d > MAX_ROWS:
                idx = _changing(flat, MAX_ROWS)
                title = f"{s}: {len(idx)} of {d} coordinates (those that change most)"
            names_ = tuple(labels[i] for i in idx) if labels is not None else tuple(f"[{i}]" for i in idx)
            out.append(Panel("heatmap", s, title, c, flat[:, idx].T, tuple(repr(n) if labels is not None else n for n in names_)))
    return out, constant


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _title(c: np.ndarray, title: str | None) -> str:
    return title if title is not None else f"{len(c)} cycles ({c[0]}..{c[-1]})"


# ------------------------------------------------------------------------------------------ matplotlib
def require_matplotlib() -> Any:
    """Import matplotlib or raise an ImportError naming the ``plot`` extra. (Figures are drawn on a
    `matplotlib.figure.Figure` directly, so no pyplot backend or global state is involved.)"""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise ImportError(EXTRA_HINT) from None
    return matplotlib


def plot_trace(
    trace: Trace,
    path: str | Path | None = None,
    *,
    streams: Sequence[str] | None = None,
    cycles: tuple[int | None, int | None] | None = None,
    frames: int = 8,
    title: str | None = None,
) -> Any:
    """Draw `trace` with matplotlib and save it to `path` (any format matplotlib writes: .png, .pdf, .svg) when
    given. Returns the `matplotlib.figure.Figure`.

    **Arguments:** `streams` (stream or neuron names; default all), `cycles` (``(first, last)``, inclusive),
    `frames` (image frames per matrix stream), `title` (default: the number and range of cycles).

    Raises ImportError naming the ``plot`` extra when matplotlib is missing, `UnknownStreamError` for a stream the
    trace lacks.
    """
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    ps, constant = panels(trace, streams, cycles, frames)
    rows = window(trace, cycles)
    c = trace.cycles[rows]
    extra = len(ps) - MAX_PANELS
    ps = ps[:MAX_PANELS]
    heights = [_height(p) for p in ps] or [0.6]
    notes = _notes(constant, extra, 160)
    foot = 0.15 * len(notes) + 0.1 if notes else 0
    fig = Figure(figsize=(11, 0.7 + sum(heights) + foot), layout="constrained")
    fig.suptitle(_title(c, title), fontsize=11)
    gs = fig.add_gridspec(len(heights), 2, height_ratios=heights, width_ratios=[1, 0.012])
    shared = None
    time_axes = []
    for i, p in enumerate(ps):
        if p.style == "frames":
            _mpl_frames(fig, gs[i, :], p)
            continue
        ax = fig.add_subplot(gs[i, 0], sharex=shared)
        shared = shared or ax
        time_axes.append(ax)
        if p.style == "lines":
            _mpl_lines(ax, p)
        else:
            _mpl_heatmap(fig, ax, fig.add_subplot(gs[i, 1]), p)
        ax.set_title(p.title, loc="left", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in time_axes[:-1]:
        ax.tick_params(labelbottom=False)
    if time_axes:
        time_axes[-1].set_xlabel("cycle", fontsize=9)
        time_axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))  # cycles are whole numbers
    if not ps:
        ax = fig.add_subplot(gs[0, :])
        ax.axis("off")
        ax.text(0.5, 0.5, "every stream is constant over these cycles", ha="center", va="center")
    if notes:
        fig.text(0.01, 0.002, "\n".join(notes), fontsize=8, va="bottom", family="monospace")
        fig.get_layout_engine().set(rect=(0, foot / fig.get_figheight(), 1, 1 - foot / fig.get_figheight()))
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _notes(constant: Sequence[str], extra: int, width: int) -> list[str]:
    """The lines under a figure: the constant streams (wrapped to `width` characters) and the panels left out."""
    lines: list[str] = []
    line = "constant:"
    for i, entry in enumerate(constant):  # wrap between entries, never inside one
        piece = f" {entry}" + ("  |" if i < len(constant) - 1 else "")
        if len(line) + len(piece) > width and i > 0:
            lines.append(line)
            line = " "
        line += piece
    if constant:
        lines.append(line)
    if extra > 0:
        lines.append(f"{extra} more panels not drawn: choose streams with streams=[...] (dmm plot --streams)")
    return lines


def _height(p: Panel) -> float:
    if p.style == "lines":
        return 1.5
    if p.style == "frames":
        return 1.9
    return min(4.0, max(0.7, 0.16 * len(p.labels) + 0.5))


def _mpl_lines(ax: Any, p: Panel) -> None:
    style = {"marker": "o", "markersize": 2.5} if len(p.cycles) <= 60 else {}
    for j in range(p.values.shape[1]):
        ax.step(p.cycles, p.values[:, j], where="mid", linewidth=1.2, label=p.labels[j] if p.labels else None, **style)
    if p.labels:
        ax.legend(fontsize=7, loc="lower right", bbox_to_anchor=(1, 1), ncol=len(p.labels), frameon=False,
                  borderaxespad=0.1)
    ax.grid(alpha=0.3)
    ax.margins(x=0.01)


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values ((0, 0) when there is none): NaN and Inf are left out of every scale."""
    f = values[np.isfinite(values)]
    return (float(f.min()), float(f.max())) if f.size else (0.0, 0.0)


def _color_range(values: np.ndarray) -> tuple[str, float, float]:
    lo, hi = _finite_range(values)
    if lo < 0 < hi or (lo < 0 and hi <= 0):
        m = max(-lo, hi) or 1.0
        return "RdBu_r", -m, m
    return "viridis", min(lo, 0.0), hi if hi > min(lo, 0.0) else min(lo, 0.0) + 1.0


def _mpl_heatmap(fig: Any, ax: Any, cax: Any, p: Panel) -> None:
    cmap, vmin, vmax = _color_range(p.values)
    c0, c1 = p.cycles[0], p.cycles[-1]
    im = ax.imshow(p.values, aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax,
                   extent=(c0 - 0.5, c1 + 0.5, len(p.labels) - 0.5, -0.5))
    if len(p.labels) <= 24:
        ax.set_yticks(range(len(p.labels)), p.labels, fontsize=7)
    else:
        ax.set_ylabel("coordinate", fontsize=8)
    fig.colorbar(im, cax=cax)
    cax.tick_params(labelsize=7)


def _mpl_frames(fig: Any, spec: Any, p: Panel) -> None:
    n = len(p.values)
    sub = fig.add_subfigure(spec)
    sub.suptitle(p.title, x=0.005, ha="left", fontsize=9)
    slots = max(n, 8)
    axes = sub.subplots(1, slots + 1, width_ratios=[1] * slots + [0.1])
    cmap, vmin, vmax = _color_range(p.values)
    for f, ax in enumerate(axes[:-1]):
        ax.set_xticks([])
        ax.set_yticks([])
        if f >= n:
            ax.axis("off")
            continue
        im = ax.imshow(p.values[f], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(p.labels[f], fontsize=8)
    sub.colorbar(im, cax=axes[-1])
    axes[-1].tick_params(labelsize=7)
