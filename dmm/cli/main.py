"""The ``dmm`` parser, the dispatch to the commands (one module each: `run`, `show`, `plot`, `programs`, `demo`),
progress on stderr (`Status`) and what an exception leaving a command becomes (`main`'s exit status)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import typing
from collections.abc import Sequence

import dmm

from . import demo, plot, programs, run, show
from .args import CLIError


COMMANDS = (run, show, plot, programs, demo)  # in the order --help lists them


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # argparse would print the usage and exit
        raise CLIError(f"{message} (see {self.prog} --help)")


class Status:
    """Progress on stderr. On a terminal, one transient line (rewritten in place, erased when the command ends);
    otherwise only `progress` messages of long work, one line each, so that logs and pipes stay clean and a failure
    prints exactly one line."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.shown = False

    def stage(self, message: str) -> None:
        """What the command is doing now (shown on a terminal only)."""
        if self.tty and not self.quiet:
            print("\r\033[K" + message, end="", file=sys.stderr, flush=True)
            self.shown = True

    def progress(self, message: str) -> None:
        """How far long work has got."""
        if self.quiet:
            return
        if self.tty:
            self.stage(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def clear(self) -> None:
        """Erase the transient line, if one is shown."""
        if self.shown:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
            self.shown = False


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dmm`` command."""
    parser = _Parser(prog="dmm", description="Dataflow matrix machines in JAX: run programs, inspect and plot traces.")
    parser.add_argument("--version", action="version", version=f"dmm {dmm.__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of an unexpected error")
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import MODULE first (repeatable), e.g. the module that defines a program file's custom neuron types",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS:
        module.add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dmm`` command with `argv` (default ``sys.argv[1:]``); returns the exit status (0 ok, 2 a user
    mistake, 1 an unexpected error, 130 interrupted)."""
    parser = build_parser()
    args = None
    status = Status()
    try:
        args = parser.parse_args(argv)
        status.quiet = getattr(args, "quiet", False)
        args.status = status
        if args.command is None:
            raise CLIError("choose a command: demo, programs, run, show, plot (dmm --help)")
        for module in args.imports:
            _import(module)
        return int(args.func(args) or 0)
    except BaseException as e:
        status.clear()
        return _failure(e, args)


def _import(module: str) -> None:
    """Import a module named by ``--import`` (its neuron types and programs register themselves)."""
    if os.getcwd() not in sys.path:  # a module beside the files it serves, as `python -m` would find it
        sys.path.insert(0, os.getcwd())
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise CLIError(f"--import {module}: cannot import it ({e})") from None


def _failure(e: BaseException, args: argparse.Namespace | None) -> int:
    """The exit status for an exception leaving a command, after a one-line message on stderr."""
    if isinstance(e, SystemExit):  # --help, --version
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    if isinstance(e, BrokenPipeError):  # `dmm show ... | head`: the reader has gone
        sys.stdout = open(os.devnull, "w")
        return 0
    if isinstance(e, KeyboardInterrupt):
        print("dmm: interrupted", file=sys.stderr)
        return 130
    if isinstance(e, (CLIError, dmm.DMMError, OSError)):
        message = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else str(e)
        print(f"dmm: error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    if isinstance(e, Exception) and not (args is not None and args.traceback):
        print(f"dmm: unexpected error: {type(e).__name__}: {' '.join(str(e).split())} (dmm --traceback ... shows where)",
              file=sys.stderr)
        return 1
    raise e
