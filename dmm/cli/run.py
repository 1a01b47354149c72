"""``dmm run PROGRAM``: build a program (a program file or a registered builder), compile it, run it, save its trace
and print a summary. Long runs go in jitted chunks so that progress can be shown (`run_program`)."""

from __future__ import annotations

import argparse
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
        path = dmm.files.save_program(program, args.save_program)
        print(f"saved the program as {path}; run it with: dmm run {path}")
    status.stage(f"compiling {name}: {len(program.neurons)} neurons, {len(program.links)} links ...")
    t1 = time.perf_counter()
    machine = dmm.compile(program, backend=args.backend)
    record = split(args.record) or None
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
    program = fn(**program_args(spec, fn, pairs))
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
        try:
            inputs[name] = np.load(file, allow_pickle=False)
        except FileNotFoundError:
            raise CLIError(f"--input {name}: no such file {file}") from None
        except (OSError, ValueError) as e:
            raise CLIError(f"--input {name}: {file} is not a .npy array file ({e})".replace("\n", " ")) from None
        if not isinstance(inputs[name], np.ndarray):
            raise CLIError(f"--input {name}: {file} holds several arrays; give one .npy array (steps, *shape)")
    return inputs
