"""``dmm run PROGRAM``: build a program (a program file or a registered builder), compile it, run it, save its trace
and print a summary. Long runs go in jitted chunks so that progress can be shown (`run_program`)."""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import dmm
import dmm.files
from dmm.plot import format_value

from .args import CLIError, program_args, split


DEFAULT_STEPS = 100
CHUNKS = 10  # a run of at least CHUNK_MIN_STEPS cycles goes in this many jitted pieces, reporting progress
CHUNK_MIN_STEPS = 2000
SUMMARY_STREAMS = 12  # streams whose last value the summary prints
MAX_STEPS = 2**31 - 1  # the machine counts cycles in int32
SEED_RANGE = (-(2**63), 2**63 - 1)  # what jax.random.key takes
BUILD_ERRORS = (ValueError, TypeError, IndexError, KeyError, ArithmeticError, AssertionError, RecursionError)


def add_command(commands: Any) -> None:
    """Add ``run`` and its options to the subcommands of the ``dmm`` parser."""
    p = commands.add_parser("run", help="run a program file or a registered program, save its trace")
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
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run ``dmm run``; returns the exit status."""
    import jax

    status = args.status
    t0 = time.perf_counter()
    if not SEED_RANGE[0] <= args.seed <= SEED_RANGE[1]:
        raise CLIError(f"--seed {args.seed} is out of range ({SEED_RANGE[0]}..{SEED_RANGE[1]})")
    if args.steps is not None and args.steps < 1:
        raise CLIError(f"--steps must be at least 1, not {args.steps}")
    if args.steps is not None and args.steps > MAX_STEPS:
        raise CLIError(f"--steps must be at most {MAX_STEPS} (the machine counts cycles in int32), not {args.steps}")
    check_writable(args.out, "--out")
    if args.save_program:
        check_writable(args.save_program, "--save-program", folder_ok=True)  # PATH.json + PATH.npz
    status.stage(f"building {args.program} ...")
    program, name = _load_program(args.program, args.arg or [])  # not split at commas: values may hold them
    inputs = _load_inputs(args.input or [])
    _check_input_streams(program, inputs)
    steps = args.steps
    if steps is None:
        lengths = {v.shape[0] if v.ndim else 0 for v in inputs.values()}
        if len(lengths) > 1:
            raise CLIError(f"the --input files have different lengths {sorted(lengths)}; give --steps")
        steps = lengths.pop() if lengths else DEFAULT_STEPS
    if steps < 1:
        raise CLIError(f"--steps must be at least 1, not {steps}")
    if steps > MAX_STEPS:
        raise CLIError(f"the --input files are {steps} cycles long, more than the {MAX_STEPS} a run can have")
    if args.save_program:
        try:
            path = dmm.files.save_program(program, args.save_program)
        except OSError as e:
            raise CLIError(f"--save-program {args.save_program}: cannot write it ({e.strerror or e})") from None
        print(f"saved the program as {path}; run it with: dmm run {path}")
    status.stage(f"compiling {name}: {len(program.neurons)} neurons, {len(program.links)} links ...")
    t1 = time.perf_counter()
    machine = dmm.compile(program, backend=args.backend)
    record = split(args.record) or None
    if record == ["all"]:
        record = "all"
    _check_trace_size(machine, record, steps)
    t2 = time.perf_counter()
    status.stage(f"running {steps} cycles ...")

    def report(done: int, total: int, seconds: float) -> None:
        eta = seconds / done * (total - done)
        status.progress(f"cycle {done}/{total} ({100 * done // total}%), {seconds:.1f} s, about {eta:.1f} s left")

    trace = run_program(machine, steps, inputs=inputs, record=record, key=jax.random.key(args.seed), report=report)
    t3 = time.perf_counter()
    try:
        dmm.files.save_trace(trace, args.out)
    except OSError as e:  # its filename is the hidden temporary file: name the user's path instead
        raise CLIError(f"--out {args.out}: cannot write it ({e.strerror or e})") from None
    status.clear()
    print(f"{name}: {len(program.neurons)} neurons, {len(program.links)} links, {steps} cycles "
          f"(build {t1 - t0:.1f} s, compile {t2 - t1:.1f} s, run {t3 - t2:.1f} s)")
    print(f"recorded {len(trace)} streams -> {args.out}")
    shown = trace.names[:SUMMARY_STREAMS]
    width = max(map(len, shown), default=0)
    for s in shown:
        print(f"  {s:<{width}}  at cycle {trace.cycles[-1]}: {format_value(trace[s][-1], trace.kinds[s], width=80)}")
    if len(trace) > len(shown):
        print(f"  ... {len(trace) - len(shown)} more")
    print(f"next: dmm show {args.out} --changes   |   dmm plot {args.out}")
    return 0


def run_program(
    machine: dmm.Machine,
    steps: int,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    record: Any = None,
    key: Any = None,
    report: Callable[[int, int, float], None] | None = None,
) -> dmm.Trace:
    """`machine.run`, in `CHUNKS` jitted pieces when `steps` is at least `CHUNK_MIN_STEPS` so that `report(done,
    steps, seconds)` can show progress; the pieces continue from each other's state, so the trace is the same."""
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


def _load_program(spec: str, pairs: Sequence[str]) -> tuple[dmm.Program, str]:
    """A program from a file or the registry, and a short name for it."""
    path = Path(spec)
    stem = path.with_suffix("") if path.suffix in (".json", ".npz") else path
    is_file = path.suffix in (".json", ".npz") or stem.with_suffix(".json").exists() or "/" in spec
    if is_file:
        if pairs:
            raise CLIError("--arg sets the parameters of a registered program; a program file has none")
        if not stem.with_suffix(".json").exists():
            raise CLIError(f"no program file {stem.with_suffix('.json')}")
        return dmm.files.load_program(spec), stem.name
    registry = dmm.registered_programs()
    if spec not in registry:
        raise CLIError(f"unknown program {spec!r}: no file {spec}.json and no registered program of that name (dmm programs lists them)")
    fn = registry[spec]
    kwargs = program_args(spec, fn, pairs)
    try:
        program = fn(**kwargs)
    except dmm.DMMError:
        raise
    except BUILD_ERRORS as e:  # e.g. a NumPy error on a size the builder did not check: a one-line user error
        given = " ".join(f"--arg {p}" for p in pairs) or "its default arguments"
        raise CLIError(f"program {spec!r} cannot be built with {given}: {type(e).__name__}: {e}") from None
    except MemoryError:
        given = " ".join(f"--arg {p}" for p in pairs) or "its default arguments"
        raise CLIError(f"program {spec!r} cannot be built with {given}: it needs more memory than there is") from None
    if not isinstance(program, dmm.Program):
        raise CLIError(f"registered program {spec!r} returned a {type(program).__name__}, not a dmm.Program")
    return program, spec


def _load_inputs(pairs: Sequence[str]) -> dict[str, np.ndarray]:
    """The ``--input STREAM=FILE.npy`` arrays by stream name."""
    inputs = {}
    for pair in pairs:
        name, sep, file = pair.partition("=")
        if not sep or not name or not file:
            raise CLIError(f"--input {pair!r}: expected STREAM=FILE.npy")
        inputs[name] = _read_npy(name, file)
    return inputs


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"


def _read_npy(name: str, file: str) -> np.ndarray:
    """One numeric array from a .npy file, its header checked against the file's size before anything is read."""
    def bad(why: str) -> CLIError:
        return CLIError(f"--input {name}: {file} is not a .npy array file ({why})".replace("\n", " "))

    path = Path(file)
    if not path.exists():
        raise CLIError(f"--input {name}: no such file {file}")
    if path.is_dir():
        raise CLIError(f"--input {name}: {file} is a folder, not a .npy array file")
    try:
        with open(path, "rb") as f:
            start = f.read(len(NPY_MAGIC))
            if start.startswith(ZIP_MAGIC):
                raise CLIError(f"--input {name}: {file} holds several arrays; give one .npy array (steps, *shape)")
            if start != NPY_MAGIC:
                raise bad("no .npy header")
            f.seek(0)
            try:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)  # version 3.0 differs from 2.0 only in the header's encoding (utf-8)
            except (ValueError, EOFError, SyntaxError, TypeError) as e:
                raise bad(f"unreadable header: {e}") from None
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
        if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
            raise CLIError(f"--input {name}: {file} holds a {dtype} array; give numbers (a bool, integer or float array)")
        need = math.prod(shape) * dtype.itemsize
        if size - offset < need:
            raise bad(f"truncated: {size - offset} bytes of data, {need} declared")
        array = np.load(path, allow_pickle=False)
    except CLIError:
        raise
    except FileNotFoundError:
        raise CLIError(f"--input {name}: no such file {file}") from None
    except (OSError, ValueError, EOFError, MemoryError) as e:
        raise bad(str(e) if not isinstance(e, OSError) else (e.strerror or str(e))) from None
    if not isinstance(array, np.ndarray):
        raise CLIError(f"--input {name}: {file} holds several arrays; give one .npy array (steps, *shape)")
    return array


def _check_input_streams(program: dmm.Program, inputs: Mapping[str, np.ndarray]) -> None:
    """Each ``--input`` stream must be a stream of `program` (listed when it is not)."""
    streams = list(program.streams())
    known = set(streams)
    for name in inputs:
        if name not in known:
            outputs = [s for s in streams if not program.is_input(s)]
            shown = ", ".join(outputs[:12]) + (", …" if len(outputs) > 12 else "")
            raise CLIError(f"--input {name}: unknown stream {name!r}: the program's output streams are {shown or 'none'}")


def _check_trace_size(machine: dmm.Machine, record: Any, steps: int) -> None:
    """Refuse a run whose recorded trace could not fit in this machine's memory."""
    names = machine.record_names(record)
    itemsize = np.dtype(machine.dtype).itemsize
    per_cycle = sum(math.prod(machine.layout.kind_of(s).shape or ()) for s in names) * itemsize
    total = per_cycle * steps
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if total > memory:
        raise CLIError(f"--steps {steps}: the trace of {len(names)} recorded streams would take {total / 2**30:.1f} GiB, "
                       f"more than this machine's {memory / 2**30:.1f} GiB; run fewer cycles or --record fewer streams")


def check_writable(out: str, option: str, folder_ok: bool = False) -> None:
    """Refuse an output path that is a folder or lies in a folder that does not exist, before any work is done."""
    path = Path(out)
    if path.is_dir() and not folder_ok:
        raise CLIError(f"{option} {out} is a folder; give a file name")
    parent = path.parent
    if not parent.is_dir():
        raise CLIError(f"{option} {out}: no folder {parent}" if not parent.exists() else f"{option} {out}: {parent} is not a folder")
