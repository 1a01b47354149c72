"""``dmm programs``: the registered program builders, one line each, or with their parameters (``-v``), described
without importing them (`dmm.describe_programs`), so the listing does not wait for JAX."""

from __future__ import annotations

import argparse
import shutil
from typing import Any

import dmm


def add_command(commands: Any) -> None:
    """Add ``programs`` and its options to the subcommands of the ``dmm`` parser."""
    p = commands.add_parser("programs", help="list the registered programs")
    p.add_argument("-v", "--verbose", action="store_true", help="show each program's parameters")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run ``dmm programs``; returns the exit status."""
    infos = dmm.describe_programs()
    width = max(map(len, infos), default=0)
    total = shutil.get_terminal_size((120, 24)).columns
    for name, info in infos.items():
        if args.verbose:
            print(f"{name}({info.parameters})\n    {info.summary}")
            continue
        room = max(20, total - width - 2)
        line = info.summary
        print(f"{name:<{width}}  {line if len(line) <= room else line[: room - 1] + '…'}")
    if not args.verbose:
        print(f"\n{len(infos)} programs. dmm programs -v shows their parameters; run one with dmm run NAME --arg KEY=VALUE")
    return 0
