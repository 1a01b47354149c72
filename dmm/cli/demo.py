"""``dmm demo``: run the duplicate-character detector on a short text, draw its trace and tell what happened.

Everything the narrative reports is read off the program and its trace: when each output of the sink changes, which
character is read a second time, how many cycles its effect takes to reach the first output, and the chain of
links it travels (the shortest one in the program).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import dmm
from dmm import plot

from .plot import require_matplotlib


PROGRAM = "duplicate_detector"
TEXT, EVERY, STEPS = "test string.", 10, 150
READER, COUNTS = "input", "accum"  # the neurons that read the text (one-hot characters) and count the characters
MEANINGS = {"dict-1": "extra copies of the most repeated character", "dict-2": "the number of '.' read"}


def add_command(commands: Any) -> None:
    """Add ``demo`` and its options to the subcommands of the ``dmm`` parser."""
    p = commands.add_parser("demo", help="run the duplicate-detector demo and write a figure")
    p.add_argument("-o", "--output", default="demo.png", help="figure file (default demo.png)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run ``dmm demo``; returns the exit status."""
    require_matplotlib()
    args.status.stage("compiling and running the duplicate detector ...")
    t0 = time.perf_counter()
    program = dmm.registered_programs()[PROGRAM](text=TEXT, every=EVERY)
    trace = dmm.compile(program).run(STEPS)
    elapsed = time.perf_counter() - t0
    outputs = _sink_inputs(program)
    second = _second_read(trace, f"{READER}.out")
    args.status.stage(f"drawing {args.output} ...")
    title = f"duplicate detector on {TEXT!r}: characters read, counts, outputs"
    plot.plot_trace(trace, args.output, streams=[f"{READER}.out", f"{COUNTS}.out", *outputs], title=title)
    args.status.clear()
    print(f"dmm demo: the duplicate-character detector of arXiv 1606.09470 §3, {len(program.neurons)} neurons and "
          f"{len(program.links)} links, reads {TEXT!r} one character every {EVERY} cycles; {STEPS} cycles took "
          f"{elapsed:.1f} s, compilation included.")
    for s in outputs:
        rises = ", ".join(f"{x:g} at cycle {c}" for c, x in _changes(trace, s))
        print(f"  {s} ({MEANINGS[s.split('.')[1]]}) became {rises}.")
    print(f"  The text ends with its last character {TEXT[-1]!r} at cycle {1 + (len(TEXT) - 1) * EVERY}; from then on the "
          f"reader repeats that character every {EVERY} cycles, so each repeat counts as another {TEXT[-1]!r} read.")
    if second is not None:
        cycle, char = second
        first = outputs[0]
        delay = _changes(trace, first)[0][0] - cycle
        route = " -> ".join(_route(program, READER, first))
        print(f"  Every link costs one cycle: the second {char!r} is read at cycle {cycle} and reaches {first} "
              f"{delay} cycles later ({route}).")
    print(f"Wrote {args.output}: the characters read, their running counts and the two outputs over time.")
    print(f"Next: dmm programs  |  dmm run {PROGRAM} --steps {STEPS}  |  dmm show trace.npz --streams output --changes"
          "  |  dmm plot trace.npz")
    return 0


def _sink_inputs(program: dmm.Program) -> list[str]:
    """The input streams of the neurons without outputs (the program's results), in program order."""
    return [f"{n}.{p.name}" for n, neuron in program.neurons.items() if not neuron.type.outputs for p in neuron.type.inputs]


def _changes(trace: dmm.Trace, stream: str) -> list[tuple[int, float]]:
    """(cycle, new value) wherever the scalar `stream` changes."""
    v, c = np.asarray(trace[stream]), trace.cycles
    return [(int(c[i]), float(v[i])) for i in range(1, len(v)) if v[i] != v[i - 1]]


def _second_read(trace: dmm.Trace, stream: str) -> tuple[int, str] | None:
    """(cycle, character) of the first character that the keyed one-hot `stream` reads for the second time."""
    seen: set[str] = set()
    for cycle, row in zip(trace.cycles, trace.labeled(stream)):
        if max(row.values()) > 0:
            char = max(row, key=row.get)
            if char in seen:
                return int(cycle), char
            seen.add(char)
    return None


def _route(program: dmm.Program, start: str, stream: str) -> list[str]:
    """The neurons on the shortest chain of links from the neuron `start` to the input port `stream` (breadth
    first), each link one cycle."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for n in frontier:
            for link in program.links:
                if link.src.split(".")[0] != n:
                    continue
                if link.dst == stream:
                    return paths[n] + [link.dst.split(".")[0]]
                m = link.dst.split(".")[0]
                if m not in paths:
                    paths[m] = paths[n] + [m]
                    following.append(m)
        frontier = following
    raise dmm.ProgramError(f"no chain of links from {start!r} to {stream!r}")
