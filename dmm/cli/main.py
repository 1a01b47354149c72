"""The ``dmm`` command: run programs, look at traces, plot them, list the program registry, run the demo.

    dmm demo                                   the duplicate detector, explained, with a figure (demo.png)
    dmm programs [-v]                          the registered programs, one line each
    dmm run PROGRAM [--steps N] [--record S,..] [--input NAME=FILE.npy] [--arg KEY=VALUE] [--out trace.npz]
    dmm show trace.npz [--streams S,..] [--cycles A:B] [--changes] [--list]
    dmm plot trace.npz [-o figure.png] [--streams S,..] [--cycles A:B]

PROGRAM is a program file (``NAME.json`` + ``NAME.npz``, see `dmm.files.save_program`) or the name of a registered
program (`programs.registry()`), whose parameters ``--arg key=value`` sets (values are converted to the types the
function declares; lists and dicts are written as JSON). Every mistake (bad arguments, missing or malformed files,
unknown programs or streams) ends with a one-line message on stderr and exit status 2. Progress goes to stderr,
results to stdout.

This is the outermost layer of the project: the only module of `dmm` that imports `neurons` and `programs` (lazily,
inside the commands).
"""

from __future__ import annotations

import argparse
import collections.abc
import inspect
import json
import os
import shutil
import sys
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dmm import DMMError, plot


DEFAULT_STEPS = 100
CHUNKS = 10  # a run of at least CHUNK_MIN_STEPS cycles goes in this many jitted pieces, reporting progress
CHUNK_MIN_STEPS = 2000


class CLIError(Exception):
    """A user mistake: printed as one line, exit status 2."""


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
        if self.shown:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
            self.shown = False


# --------------------------------------------------------------------------------------------- helpers
def _split(values: Sequence[str] | None) -> list[str]:
    """Comma-separated and repeated option values as one list."""
    return [v.strip() for item in (values or []) for v in item.split(",") if v.strip()]


def _parse_cycles(text: str | None) -> tuple[int | None, int | None] | None:
    """``A:B`` (inclusive), ``A:``, ``:B`` or ``A``."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        if len(parts) == 1:
            c = int(parts[0])
            return c, c
        if len(parts) == 2:
            return tuple(int(p) if p.strip() else None for p in parts)  # type: ignore[return-value]
    except ValueError:
        pass
    raise CLIError(f"--cycles {text!r}: expected FIRST:LAST (inclusive), FIRST:, :LAST or one cycle")


def _registry() -> dict[str, Callable[..., Any]]:
    import programs

    return programs.registry()


def _describe(fn: Callable[..., Any]) -> str:
    """The first paragraph of a docstring, on one line."""
    doc = inspect.getdoc(fn) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _signature(fn: Callable[..., Any]) -> str:
    params = [f"{p.name}={p.default!r}" if p.default is not inspect.Parameter.empty else p.name
              for p in inspect.signature(fn).parameters.values()]
    return ", ".join(params)


# ------------------------------------------------------------------------------------- --arg conversion
_NONE = {"none", "null"}
_BOOL = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}


def _coerce(value: Any, hint: Any, raw: str | None = None) -> Any:
    """Convert a parsed JSON value (or the raw string) to the type `hint`; raise ValueError when it does not fit."""
    origin, targs = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return value
    if hint is type(None):
        if value is None or (isinstance(value, str) and value.lower() in _NONE):
            return None
        raise ValueError("expected none")
    if origin in (typing.Union, types.UnionType):
        members = sorted(targs, key=lambda t: t is str)  # try str last: it accepts everything
        for t in members:
            try:
                return _coerce(value, t, raw)
            except (ValueError, TypeError):
                continue
        raise ValueError(f"expected {' or '.join(getattr(t, '__name__', str(t)) for t in targs)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        key = str(raw if raw is not None else value).lower()
        if key in _BOOL:
            return _BOOL[key]
        raise ValueError("expected true or false")
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("+-").isdigit())):
            raise ValueError("expected an integer")
        return int(value)
    if hint is float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        return float(value)
    if hint is str:
        return raw if raw is not None else str(value)
    if origin in (tuple, list, collections.abc.Sequence):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ValueError("expected a list (JSON [..] or comma-separated)")
        if origin is tuple and targs and targs[-1] is not Ellipsis:
            if len(targs) != len(value):
                raise ValueError(f"expected {len(targs)} items")
            return tuple(_coerce(v, t) for v, t in zip(value, targs))
        item = targs[0] if targs else Any
        items = [_coerce(v, item) for v in value]
        return tuple(items) if origin is not list else items
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object {..}")
        kt, vt = targs if len(targs) == 2 else (Any, Any)
        return {_coerce(_json_or_str(k), kt, k): _coerce(v, vt) for k, v in value.items()}
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise TypeError(f"a {getattr(hint, '__name__', hint)} cannot be given on the command line")


def _json_or_str(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _program_args(name: str, fn: Callable[..., Any], pairs: Sequence[str]) -> dict[str, Any]:
    """Convert ``key=value`` strings to keyword arguments of the registered program `fn`."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: fall back to the types of the defaults
        hints = {}
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"--arg {pair!r}: expected KEY=VALUE")
        if key not in sig.parameters:
            raise CLIError(f"program {name!r} has no parameter {key!r}; its parameters: {_signature(fn) or 'none'}")
        p = sig.parameters[key]
        hint = hints.get(key, type(p.default) if p.default not in (inspect.Parameter.empty, None) else Any)
        try:
            kwargs[key] = _coerce(_json_or_str(text), hint, text)
        except (ValueError, TypeError) as e:
            raise CLIError(f"--arg {key}={text}: {e}") from None
    missing = [p.name for p in sig.parameters.values() if p.default is inspect.Parameter.empty and p.name not in kwargs
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if missing:
        raise CLIError(f"program {name!r} needs --arg {missing[0]}=VALUE (its parameters: {_signature(fn)})")
    return kwargs


# -------------------------------------------------------------------------------------------------- run
def _load_program(spec: str, pairs: Sequence[str]) -> tuple[Any, str]:
    """A program from a file or the registry, and a short name for it."""
    import dmm
    import dmm.files

    path = Path(spec)
    stem = path.with_suffix("") if path.suffix in (".json", ".npz") else path
    is_file = path.suffix in (".json", ".npz") or stem.with_suffix(".json").exists() or "/" in spec
    if is_file:
        if pairs:
            raise CLIError("--arg sets the parameters of a registered program; a program file has none")
        if not stem.with_suffix(".json").exists():
            raise CLIError(f"no program file {stem.with_suffix('.json')}")
        return dmm.files.load_program(spec), stem.name
    registry = _registry()
    if spec not in registry:
        raise CLIError(f"unknown program {spec!r}: no file {spec}.json and no registered program of that name (dmm programs lists them)")
    fn = registry[spec]
    program = fn(**_program_args(spec, fn, pairs))
    if not isinstance(program, dmm.Program):
        raise CLIError(f"registered program {spec!r} returned a {type(program).__name__}, not a dmm.Program")
    return program, spec


def _load_inputs(pairs: Sequence[str]) -> dict[str, np.ndarray]:
    inputs = {}
    for pair in pairs:
        name, sep, file = pair.partition("=")
        if not sep or not name or not file:
            raise CLIError(f"--input {pair!r}: expected STREAM=FILE.npy")
        try:
            inputs[name] = np.load(file, allow_pickle=False)
        except FileNotFoundError:
            raise CLIError(f"--input {name}: no such file {file}") from None
        except (OSError, ValueError) as e:
            raise CLIError(f"--input {name}: {file} is not a .npy array file ({e})".replace("\n", " ")) from None
        if not isinstance(inputs[name], np.ndarray):
            raise CLIError(f"--input {name}: {file} holds several arrays; give one .npy array (steps, *shape)")
    return inputs


def run_program(
    machine: Any,
    steps: int,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    record: Any = None,
    key: Any = None,
    report: Callable[[int, int, float], None] | None = None,
) -> Any:
    """`machine.run`, in `CHUNKS` jitted pieces when `steps` is at least `CHUNK_MIN_STEPS` so that `report(done,
    steps, seconds)` can show progress; the pieces continue from each other's state, so the trace is the same."""
    import dmm
    import dmm.files

    inputs = dict(inputs or {})
    if steps < CHUNK_MIN_STEPS or report is None:
        return machine.run(steps, inputs=inputs, record=record, key=key)
    size = -(-steps // CHUNKS)
    state, parts, start, done = None, [], time.perf_counter(), 0
    while done < steps:
        n = min(size, steps - done)
        part = machine.run(n, state=state, inputs={k: v[done : done + n] for k, v in inputs.items()}, record=record, key=key)
        parts.append(part)
        state, done = part.state, done + n
        report(done, steps, time.perf_counter() - start)
    records = {s: np.concatenate([p[s] for p in parts]) for s in parts[0].names}
    return dmm.Trace(records, parts[0].kinds, parts[0].first_cycle, state)


def _cmd_run(args: argparse.Namespace) -> int:
    import jax

    import dmm
    import dmm.files

    status = args.status
    t0 = time.perf_counter()
    status.stage(f"building {args.program} ...")
    program, name = _load_program(args.program, args.arg or [])  # not split at commas: values may hold them
    inputs = _load_inputs(args.input or [])
    steps = args.steps
    if steps is None:
        lengths = {v.shape[0] if v.ndim else 0 for v in inputs.values()}
        if len(lengths) > 1:
            raise CLIError(f"the --input files have different lengths {sorted(lengths)}; give --steps")
        steps = lengths.pop() if lengths else DEFAULT_STEPS
    if steps < 1:
        raise CLIError(f"--steps must be at least 1, not {steps}")
    if args.save_program:
        json_path, _ = dmm.files.save_program(program, args.save_program)
        print(f"saved the program as {json_path} (+ .npz); run it with: dmm run {json_path}")
    status.stage(f"compiling {name}: {len(program.neurons)} neurons, {len(program.links)} links ...")
    t1 = time.perf_counter()
    machine = dmm.compile(program, backend=args.backend)
    record = _split(args.record) or None
    if record == ["all"]:
        record = "all"
    t2 = time.perf_counter()
    status.stage(f"running {steps} cycles ...")

    def report(done: int, total: int, seconds: float) -> None:
        eta = seconds / done * (total - done)
        status.progress(f"cycle {done}/{total} ({100 * done // total}%), {seconds:.1f} s, about {eta:.1f} s left")

    trace = run_program(machine, steps, inputs=inputs, record=record, key=jax.random.key(args.seed), report=report)
    t3 = time.perf_counter()
    dmm.files.save_trace(trace, args.out)
    status.clear()
    print(f"{name}: {len(program.neurons)} neurons, {len(program.links)} links, {steps} cycles "
          f"(build {t1 - t0:.1f} s, compile {t2 - t1:.1f} s, run {t3 - t2:.1f} s)")
    print(f"recorded {len(trace)} streams -> {args.out}")
    shown = trace.names[:12]
    width = max(map(len, shown), default=0)
    for s in shown:
        print(f"  {s:<{width}}  at cycle {trace.cycles[-1]}: {_cell(trace[s][-1], trace.kinds[s], 4, 80)}")
    if len(trace) > len(shown):
        print(f"  ... {len(trace) - len(shown)} more")
    print(f"next: dmm show {args.out} --changes   |   dmm plot {args.out}")
    return 0


# ------------------------------------------------------------------------------------------------- show
def _cell(value: Any, kind: Any, digits: int, width: int) -> str:
    s = plot.format_value(value, kind, digits)
    return s if len(s) <= width else s[: width - 1] + "…"


def _load_trace(path: str) -> Any:
    import dmm
    import dmm.files

    if not Path(path).exists():
        raise CLIError(f"no such trace file {path}")
    return dmm.files.load_trace(path)


def _cmd_show(args: argparse.Namespace) -> int:
    trace = _load_trace(args.trace)
    names = plot.select_streams(trace, _split(args.streams))
    if trace.steps == 0:
        print(f"{args.trace}: an empty trace (0 cycles)")
        return 0
    rows = plot.window(trace, _parse_cycles(args.cycles))
    print(f"{args.trace}: {trace.steps} cycles ({trace.cycles[0]}..{trace.cycles[-1]}), {len(trace)} streams")
    if args.list:
        return _show_list(trace, names, rows, args.digits)
    values = {s: np.asarray(trace[s]) for s in names}
    clocks: list[str] = []
    if args.changes:
        rows, clocks = _changed_rows(values, rows)
    hidden = max(0, len(rows) - args.limit)
    rows = rows[: args.limit]
    cells = {s: [_cell(values[s][r], trace.kinds[s], args.digits, args.width) for r in rows] for s in names}
    cycles = [str(c) for c in trace.cycles[rows]]
    total = shutil.get_terminal_size((120, 24)).columns
    groups: list[list[str]] = [[]]
    used = 6
    for s in names:
        w = max([len(s)] + [len(c) for c in cells[s]]) + 2
        if groups[-1] and used + w > total:
            groups.append([])
            used = 6
        groups[-1].append(s)
        used += w
    for g in groups:
        widths = {s: max([len(s)] + [len(c) for c in cells[s]]) for s in g}
        cw = max(5, max(map(len, cycles), default=5))
        print()
        print("cycle".rjust(cw) + "".join("  " + s.ljust(widths[s]) for s in g).rstrip())
        for i, c in enumerate(cycles):
            print(c.rjust(cw) + "".join("  " + cells[s][i].ljust(widths[s]) for s in g).rstrip())
    if args.changes:
        ignored = f"; {', '.join(clocks)} changed at nearly every cycle, not counted" if clocks else ""
        print(f"\n(only the cycles where a shown stream changed{ignored})")
    if hidden:
        print(f"\n... {hidden} more cycles: choose them with --cycles FIRST:LAST, --changes or --limit N")
    return 0


def _changed_rows(values: Mapping[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The rows where some stream changes from the previous row (the first row always), and the "clocks": streams
    that change at 90 % of the rows or more (a timer), which are not counted unless every stream is one."""
    flips = {s: np.array([True] + [not np.array_equal(v[r], v[p]) for p, r in zip(rows[:-1], rows[1:])]) for s, v in values.items()}
    clocks = [s for s, f in flips.items() if len(rows) > 2 and f[1:].mean() >= 0.9]
    counted = [f for s, f in flips.items() if s not in clocks] or list(flips.values())
    if len(counted) == len(flips):
        clocks = []
    return rows[np.any(counted, axis=0)], clocks


def _show_list(trace: Any, names: Sequence[str], rows: np.ndarray, digits: int) -> int:
    table = [("stream", "kind", "shape", "min", "max", f"at cycle {trace.cycles[rows[-1]]}")]
    for s in names:
        v = np.asarray(trace[s])[rows]
        k = trace.kinds[s]
        table.append((s, k.name + (" (keyed)" if k.labels else ""), str(tuple(k.shape)), plot.format_number(v.min(), digits),
                      plot.format_number(v.max(), digits), _cell(v[-1], k, digits, 60)))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    print()
    for r in table:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
    return 0


# ------------------------------------------------------------------------------------------------- plot
def _require_matplotlib() -> None:
    try:
        plot.require_matplotlib()
    except ImportError as e:
        raise CLIError(str(e)) from None


def _cmd_plot(args: argparse.Namespace) -> int:
    trace = _load_trace(args.trace)
    out = args.output or str(Path(args.trace).with_suffix(".png"))
    if trace.steps == 0:
        raise CLIError(f"{args.trace} is an empty trace (0 cycles): nothing to plot")
    if args.frames < 1:
        raise CLIError(f"--frames must be at least 1, not {args.frames}")
    kw = dict(streams=_split(args.streams) or None, cycles=_parse_cycles(args.cycles), frames=args.frames, title=args.title)
    ps, constant = plot.panels(trace, kw["streams"], kw["cycles"], args.frames)
    args.status.stage(f"drawing {len(ps)} panels ...")
    _require_matplotlib()
    plot.plot_trace(trace, out, **kw)
    args.status.clear()
    listed = f", {len(constant)} constant stream{'s' * (len(constant) != 1)} listed under the figure" if constant else ""
    print(f"wrote {out}: {len(ps)} panel{'s' * (len(ps) != 1)}{listed}")
    return 0


# --------------------------------------------------------------------------------------------- programs
def _cmd_programs(args: argparse.Namespace) -> int:
    registry = _registry()
    width = max(map(len, registry), default=0)
    total = shutil.get_terminal_size((120, 24)).columns
    for name, fn in registry.items():
        line = _describe(fn)
        if args.verbose:
            print(f"{name}({_signature(fn)})\n    {line}")
            continue
        room = max(20, total - width - 2)
        print(f"{name:<{width}}  {line if len(line) <= room else line[: room - 1] + '…'}")
    if not args.verbose:
        print(f"\n{len(registry)} programs. dmm programs -v shows their parameters; run one with dmm run NAME --arg KEY=VALUE")
    return 0


# ------------------------------------------------------------------------------------------------- demo
def _changes(values: np.ndarray, cycles: np.ndarray) -> list[tuple[int, float]]:
    """(cycle, new value) wherever a scalar stream changes."""
    return [(int(cycles[i]), float(values[i])) for i in range(1, len(values)) if values[i] != values[i - 1]]


def _cmd_demo(args: argparse.Namespace) -> int:
    import dmm
    import dmm.files
    import programs

    _require_matplotlib()
    text, every, steps = "test string.", 10, 150
    args.status.stage("compiling and running the duplicate detector ...")
    t0 = time.perf_counter()
    program = programs.duplicate_detector(text=text, every=every)
    machine = dmm.compile(program)
    trace = machine.run(steps)
    elapsed = time.perf_counter() - t0
    c = trace.cycles
    d1, d2 = trace["output.dict-1"], trace["output.dict-2"]
    rises = lambda v: ", ".join(f"{x:g} at cycle {cy}" for cy, x in _changes(v, c))  # noqa: E731
    # the first character read a second time, and how long its effect takes to reach output.dict-1
    reads = [(int(cy), max(row, key=row.get)) for cy, row in zip(c, trace.labeled("input.out")) if max(row.values()) > 0]
    seen: dict[str, int] = {}
    second = None
    for cy, ch in reads:
        seen[ch] = seen.get(ch, 0) + 1
        if seen[ch] == 2:
            second = (cy, ch)
            break
    first_rise = _changes(d1, c)[0][0]
    streams = ["input.out", "accum.out", "output.dict-1", "output.dict-2"]
    title = f"duplicate detector on {text!r}: characters read, counts, outputs"
    args.status.stage(f"drawing {args.output} ...")
    plot.plot_trace(trace, args.output, streams=streams, title=title)
    args.status.clear()
    print(f"dmm demo: the duplicate-character detector of arXiv 1606.09470 §3, {len(program.neurons)} neurons and "
          f"{len(program.links)} links, reads {text!r} one character every {every} cycles; {steps} cycles took "
          f"{elapsed:.1f} s, compilation included.")
    print(f"  output.dict-1 (extra copies of the most repeated character) became {rises(d1)}.")
    print(f"  output.dict-2 (the number of '.' read) became {rises(d2)}.")
    if second is not None:
        print(f"  Every link costs one cycle: the second {second[1]!r} is read at cycle {second[0]} and reaches output.dict-1 "
              f"{first_rise - second[0]} cycles later (input -> accum -> norm -> compare -> output).")
    print(f"Wrote {args.output}: the characters read, their running counts and the two outputs over time.")
    print("Next: dmm programs  |  dmm run duplicate_detector --steps 150  |  dmm show trace.npz --streams output --changes"
          "  |  dmm plot trace.npz")
    return 0


# ------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``dmm`` command."""
    parser = _Parser(prog="dmm", description="Dataflow matrix machines in JAX: run programs, inspect and plot traces.")
    from dmm import __version__

    parser.add_argument("--version", action="version", version=f"dmm {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help="run a program file or a registered program, save its trace")
    p.add_argument("program", metavar="PROGRAM", help="a program file (NAME.json + NAME.npz) or a registered program name")
    p.add_argument("--steps", type=int, help=f"cycles to run (default: the length of the --input arrays, else {DEFAULT_STEPS})")
    p.add_argument("--record", action="append", metavar="STREAMS",
                   help="streams or neurons to record, comma-separated, or 'all' (default: every output and the sinks' inputs)")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy",
                   help="per-cycle values (steps, *shape) for the output stream NAME of a source neuron")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="a parameter of a registered program (JSON for lists and dicts)")
    p.add_argument("--out", default="trace.npz", help="where to save the trace (default trace.npz)")
    p.add_argument("--backend", default="dense", choices=("dense", "sparse", "auto"), help="network-matrix storage")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed for stochastic neurons (default 0)")
    p.add_argument("--save-program", metavar="PATH", help="also save the program as PATH.json + PATH.npz")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("show", help="print a saved trace as a table")
    p.add_argument("trace", metavar="TRACE.npz")
    p.add_argument("--streams", action="append", metavar="STREAMS", help="streams or neurons to show, comma-separated")
    p.add_argument("--cycles", metavar="FIRST:LAST", help="cycles to show, inclusive (FIRST:, :LAST and one cycle work too)")
    p.add_argument("--changes", action="store_true", help="only the cycles where a shown stream changed")
    p.add_argument("--limit", type=int, default=60, help="at most this many rows (default 60)")
    p.add_argument("--digits", type=int, default=4, help="significant digits (default 4)")
    p.add_argument("--width", type=int, default=48, help="widest cell, in characters (default 48)")
    p.add_argument("--list", action="store_true", help="list the streams with their kinds, ranges and last values")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("plot", help="draw a saved trace (needs the plot extra: pip install 'dmm[plot]')")
    p.add_argument("trace", metavar="TRACE.npz")
    p.add_argument("-o", "--output", metavar="FIGURE", help="image file (.png, .pdf, .svg; default: the trace's name .png)")
    p.add_argument("--streams", action="append", metavar="STREAMS", help="streams or neurons to draw, comma-separated")
    p.add_argument("--cycles", metavar="FIRST:LAST", help="cycles to draw, inclusive")
    p.add_argument("--frames", type=int, default=8, help="image frames per matrix stream (default 8)")
    p.add_argument("--title", help="figure title")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("programs", help="list the registered programs")
    p.add_argument("-v", "--verbose", action="store_true", help="show each program's parameters")
    p.set_defaults(func=_cmd_programs)

    p = sub.add_parser("demo", help="run the duplicate-detector demo and write a figure")
    p.add_argument("-o", "--output", default="demo.png", help="figure file (default demo.png)")
    p.set_defaults(func=_cmd_demo)
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
        if getattr(args, "limit", 1) < 1:
            raise CLIError("--limit must be at least 1")
        return int(args.func(args) or 0)
    except BaseException as e:
        status.clear()
        return _failure(e, args)


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
    if isinstance(e, (CLIError, DMMError, OSError)):
        message = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else str(e)
        print(f"dmm: error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    if isinstance(e, Exception) and not (args is not None and args.traceback):
        print(f"dmm: unexpected error: {type(e).__name__}: {' '.join(str(e).split())} (dmm --traceback ... shows where)",
              file=sys.stderr)
        return 1
    raise e

if __name__ == "__main__":
    sys.exit(main())
