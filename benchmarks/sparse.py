"""Dense against sparse down movement at 10,000 ports and 1 % density.

10,000 tanh neurons (10,000 input and 10,000 output ports), each input fed by 100 random outputs (1 % of W), run
for 20 cycles with each backend; the traces are checked equal to float32 rounding and the time per cycle is
compared. Measured for scalar streams (the `number` kind) and for vector streams of dimension 8 and 32. Prints a
table, then the ratio dense / sparse for scalar streams last (goal: at least 5).

    python benchmarks/sparse.py
"""

from __future__ import annotations

import time

import numpy as np

import dmm
import neurons
from common import best_time, machine_line


PORTS, DENSITY, T = 10_000, 0.01, 20


def build(dim: int) -> dmm.Program:
    kind = dmm.NUMBER if dim == 1 else dmm.Kind("vec", (dim,))
    rng = np.random.default_rng(dim)
    p = dmm.Program()
    t = neurons.tanh(kind)
    for i in range(PORTS):
        p.add(f"n{i}", t)
    fan = int(PORTS * DENSITY)
    src = [f"n{j}.out" for i in range(PORTS) for j in rng.choice(PORTS, fan, replace=False)]
    dst = [f"n{i}.in" for i in range(PORTS) for _ in range(fan)]
    p.link_many(src, dst, rng.normal(scale=1 / np.sqrt(fan), size=PORTS * fan))  # one call for the 10^6 links
    for i in range(0, PORTS, 7):
        p.set_initial(f"n{i}.out", rng.uniform(-1, 1, kind.shape))
    return p


def main() -> None:
    print(f"# sparse vs dense down movement, {PORTS} ports, {DENSITY:.0%} density ({machine_line()})")
    print(f"{'stream dim':>10} {'links':>9} {'dense ms/cycle':>15} {'sparse ms/cycle':>16} {'dense/sparse':>13} {'max |diff|':>11}")
    ratios = {}
    for dim in (32, 8, 1):
        t0 = time.perf_counter()
        p = build(dim)
        build_s = time.perf_counter() - t0
        record = [f"n{i}.out" for i in range(0, PORTS, 997)]
        times, traces = {}, {}
        for backend in ("dense", "sparse"):
            m = dmm.compile(p, backend=backend)
            traces[backend] = m.run(T, record=record)
            times[backend] = best_time(lambda: m.run(T, record=record)[record[0]], repeat=3) / T
        diff = max(float(np.max(np.abs(traces["dense"][s] - traces["sparse"][s]))) for s in record)
        assert diff < 1e-4, diff
        ratios[dim] = times["dense"] / times["sparse"]
        print(
            f"{dim:>10} {len(p.link_columns()[0]):>9} {times['dense'] * 1e3:>15.2f} {times['sparse'] * 1e3:>16.2f} "
            f"{ratios[dim]:>13.1f} {diff:>11.1e}   (program built in {build_s:.2f} s)"
        )
    print(f"ratio dense / sparse (scalar streams) = {ratios[1]:.1f}")


if __name__ == "__main__":
    main()
