"""Compile time against neuron count: programs of 10, 100, 1,000 and 10,000 neurons over 4 types.

Compile time = `dmm.compile(program)` + tracing and XLA compilation of a run (the first `run` minus a second,
already compiled `run` of the same length). Each size is measured in a fresh subprocess (no compilation caches
shared), best of 3. Every block uses the sparse backend so that only the neuron count changes; fan-in 4, vectors of
dimension 8. Prints a table, then the ratio compile(10,000) / compile(10) last (goal: at most 3; a per-neuron
design measured 270x on this machine).

    python benchmarks/compile_scaling.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time


SIZES = (10, 100, 1000, 10000)
REPEAT = 3


def build(n: int, fan: int = 4, seed: int = 0):
    import numpy as np

    import dmm
    import neurons

    vec = dmm.Kind("vec", (8,))
    rng = np.random.default_rng(seed)
    types = [neurons.accumulator(vec), neurons.tanh(vec), neurons.mult(vec), neurons.plus(vec)]
    p = dmm.Program()
    for i in range(n):
        p.add(f"n{i}", types[i % 4])
    ins = [s for s in p.streams() if p.is_input(s)]
    for d in ins:
        for s in rng.choice(n, min(fan, n), replace=False):
            p.link(f"n{s}.out", d, float(rng.normal(scale=0.3)))
    return p


def measure(n: int) -> dict:
    import dmm

    p = build(n)
    t0 = time.perf_counter()
    m = dmm.compile(p, backend="sparse")
    t1 = time.perf_counter()
    m.run(10, record=["n0.out"])
    t2 = time.perf_counter()
    m.run(10, record=["n0.out"])
    t3 = time.perf_counter()
    return {"n": n, "links": len(p.links), "compile": t1 - t0, "jit": (t2 - t1) - (t3 - t2)}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(int(sys.argv[2]))))
        return
    from common import machine_line

    print(f"# compile scaling ({machine_line()})")
    rows = {}
    for n in SIZES:
        runs = []
        for _ in range(REPEAT):
            out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows[n] = min(runs, key=lambda r: r["compile"] + r["jit"])
    print(f"{'neurons':>8} {'links':>7} {'dmm.compile s':>14} {'trace+XLA s':>12} {'total s':>8}")
    for n, r in rows.items():
        print(f"{n:>8} {r['links']:>7} {r['compile']:>14.3f} {r['jit']:>12.3f} {r['compile'] + r['jit']:>8.3f}")
    total = {n: r["compile"] + r["jit"] for n, r in rows.items()}
    print(f"ratio compile(10000) / compile(10) = {total[10000] / total[10]:.2f}")


if __name__ == "__main__":
    main()
