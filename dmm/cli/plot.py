"""``dmm plot TRACE.npz``: draw a saved trace into an image file (`dmm.plot.plot_trace`; needs matplotlib, the
``plot`` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dmm import plot

from .args import CLIError, load_trace, parse_cycles, split


def add_command(commands: Any) -> None:
    """Add ``plot`` and its options to the subcommands of the ``dmm`` parser."""
    p = commands.add_parser("plot", help="draw a saved trace (needs the plot extra: pip install 'dmm[plot]')")
    p.add_argument("trace", metavar="TRACE.npz")
    p.add_argument("-o", "--output", metavar="FIGURE", help="image file (.png, .pdf, .svg; default: the trace's name .png)")
    p.add_argument("--streams", action="append", metavar="STREAMS", help="streams or neurons to draw, comma-separated")
    p.add_argument("--cycles", metavar="FIRST:LAST", help="cycles to draw, inclusive")
    p.add_argument("--frames", type=int, default=8, help="image frames per matrix stream (default 8)")
    p.add_argument("--title", help="figure title")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run ``dmm plot``; returns the exit status."""
    trace = load_trace(args.trace)
    out = args.output or str(Path(args.trace).with_suffix(".png"))
    if trace.steps == 0:
        raise CLIError(f"{args.trace} is an empty trace (0 cycles): nothing to plot")
    if args.frames < 1:
        raise CLIError(f"--frames must be at least 1, not {args.frames}")
    streams, cycles = split(args.streams) or None, parse_cycles(args.cycles)
    ps, constant = plot.panels(trace, streams, cycles, args.frames)
    args.status.stage(f"drawing {len(ps)} panels ...")
    require_matplotlib()
    plot.plot_trace(trace, out, streams=streams, cycles=cycles, frames=args.frames, title=args.title)
    args.status.clear()
    listed = f", {len(constant)} constant stream{'s' * (len(constant) != 1)} listed under the figure" if constant else ""
    print(f"wrote {out}: {len(ps)} panel{'s' * (len(ps) != 1)}{listed}")
    return 0


def require_matplotlib() -> None:
    """Import matplotlib (`dmm.plot.require_matplotlib`), or a `CLIError` naming the ``plot`` extra."""
    try:
        plot.require_matplotlib()
    except ImportError as e:
        raise CLIError(str(e)) from None
