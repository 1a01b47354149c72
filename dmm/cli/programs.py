"""``dmm programs``: the registered program builders (`dmm.registered_programs`), one line each, or with their
parameters (``-v``)."""

from __future__ import annotations

import argparse
import inspect
import shutil
from collections.abc import Callable
from typing import Any

import dmm

from .args import signature


def add_command(commands: Any) -> None:
    """Add ``programs`` and its options to the subcommands of the ``dmm`` parser."""
    p = commands.add_parser("programs", help="list the registered programs")
    p.add_argument("-v", "--verbose", action="store_true", help="show each program's parameters")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run ``dmm programs``; returns the exit status."""
    registry = dmm.registered_programs()
    width = max(map(len, registry), default=0)
    total = shutil.get_terminal_size((120, 24)).columns
    for name, fn in registry.items():
        line = _describe(fn)
        if args.verbose:
            print(f"{name}({signature(fn)})\n    {line}")
            continue
        room = max(20, total - width - 2)
        print(f"{name:<{width}}  {line if len(line) <= room else line[: room - 1] + '…'}")
    if not args.verbose:
        print(f"\n{len(registry)} programs. dmm programs -v shows their parameters; run one with dmm run NAME --arg KEY=VALUE")
    return 0


def _describe(fn: Callable[..., Any]) -> str:
    """The first paragraph of a docstring, on one line."""
    doc = inspect.getdoc(fn) or ""
    return " ".join(doc.split("\n\n")[0].split())
