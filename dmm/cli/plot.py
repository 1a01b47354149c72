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
    out = args.output or str(Path(args.trace).with_suffix(".png"))
    if args.frames < 1:
        raise CLIError(f"--frames must be at least 1, not {args.frames}")
    if args.frames > MAX_FRAMES:
        raise CLIError(f"--frames must be at most {MAX_FRAMES}, not {args.frames}")
    check_output(out)
    trace = load_trace(args.trace)
    if trace.steps == 0:
        raise CLIError(f"{args.trace} is an empty trace (0 cycles): nothing to plot")
    streams, cycles = split(args.streams) or None, parse_cycles(args.cycles)
    ps, constant = plot.panels(trace, streams, cycles, args.frames)
    args.status.stage(f"drawing {len(ps)} panels ...")
    require_matplotlib()
    check_format(out)
    try:
        plot.plot_trace(trace, out, streams=streams, cycles=cycles, frames=args.frames, title=args.title)
    except OSError as e:
        raise CLIError(f"-o {out}: cannot write it ({e.strerror or e})") from None
    args.status.clear()
    listed = f", {len(constant)} constant stream{'s' * (len(constant) != 1)} listed under the figure" if constant else ""
    print(f"wrote {out}: {len(ps)} panel{'s' * (len(ps) != 1)}{listed}")
    return 0


MAX_FRAMES = 1000


def check_output(out: str) -> None:
    """Refuse a figure path that is a folder, lies in no folder, or has no extension naming its format."""
    path = Path(out)
    if path.is_dir():
        raise CLIError(f"-o {out} is a folder; give an image file (.png, .pdf, .svg)")
    if not path.parent.is_dir():
        raise CLIError(f"-o {out}: no folder {path.parent}")
    if not path.suffix or path.suffix == ".":
        raise CLIError(f"-o {out}: give the image format as the file's extension (.png, .pdf, .svg)")


def check_format(out: str) -> None:
    """Refuse a figure extension matplotlib cannot write (after `require_matplotlib`)."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    ext = Path(out).suffix[1:].lower()
    if ext not in formats:
        raise CLIError(f"-o {out}: matplotlib cannot write .{ext} files; use one of {', '.join('.' + f for f in sorted(formats))}")


def require_matplotlib() -> None:
    """Import matplotlib (`dmm.plot.require_matplotlib`), or a `CLIError` naming the ``plot`` extra."""
    try:
        plot.require_matplotlib()
    except ImportError as e:
        raise CLIError(str(e)) from None
