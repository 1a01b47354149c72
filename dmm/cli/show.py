"""``dmm show TRACE.npz``: a saved trace as a table of cycles (`dmm.plot.trace_table`), only the cycles where
something changes (``--changes``), or the list of its streams (``--list``)."""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from dmm import plot

from .args import CLIError, load_trace, parse_cycles, split

MAX_DIGITS = 17  # a float64 has no more significant digits
MIN_WIDTH, MAX_WIDTH = 4, 100_000


def add_command(commands: Any) -> None:
    """Add ``show`` and its options to the subcommands of the ``dmm`` parser."""
    p = commands.add_parser("show", help="print a saved trace as a table")
    p.add_argument("trace", metavar="TRACE.npz")
    p.add_argument("--streams", action="append", metavar="STREAMS", help="streams or neurons to show, comma-separated")
    p.add_argument("--cycles", metavar="FIRST:LAST", help="cycles to show, inclusive (FIRST:, :LAST and one cycle work too)")
    p.add_argument("--changes", action="store_true", help="only the cycles where a shown stream changed")
    p.add_argument("--limit", type=int, default=60, help="at most this many rows (default 60)")
    p.add_argument("--digits", type=int, default=4, help="significant digits (default 4)")
    p.add_argument("--width", type=int, default=48, help="widest cell, in characters (default 48)")
    p.add_argument("--list", action="store_true", help="list the streams with their kinds, ranges and last values")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run ``dmm show``; returns the exit status."""
    if args.limit < 1:
        raise CLIError("--limit must be at least 1")
    if not 1 <= args.digits <= MAX_DIGITS:
        raise CLIError(f"--digits must be between 1 and {MAX_DIGITS}, not {args.digits}")
    if not MIN_WIDTH <= args.width <= MAX_WIDTH:
        raise CLIError(f"--width must be between {MIN_WIDTH} and {MAX_WIDTH}, not {args.width}")
    trace = load_trace(args.trace)
    names = plot.select_streams(trace, split(args.streams))
    if trace.steps == 0:
        print(f"{args.trace}: an empty trace (0 cycles)")
        return 0
    rows = plot.window(trace, parse_cycles(args.cycles))
    print(f"{args.trace}: {trace.steps} cycles ({trace.cycles[0]}..{trace.cycles[-1]}), {len(trace)} streams")
    if args.list:
        print("\n".join(plot.stream_list(trace, names, rows, args.digits)))
        return 0
    clocks: list[str] = []
    if args.changes:
        rows, clocks = plot.changed_rows(trace, names, rows)
    hidden = max(0, len(rows) - args.limit)
    columns = shutil.get_terminal_size((120, 24)).columns
    table = plot.trace_table(trace, names, rows[: args.limit], digits=args.digits, width=args.width, columns=columns)
    print("\n".join(table))
    if args.changes:
        ignored = f"; {', '.join(clocks)} changed at nearly every cycle, not counted" if clocks else ""
        print(f"\n(only the cycles where a shown stream changed{ignored})")
    if hidden:
        print(f"\n... {hidden} more cycles: choose them with --cycles FIRST:LAST, --changes or --limit N")
    return 0

