"""Start-up time of the quick ``dmm`` commands against a bare ``python -c "import numpy"``.

``dmm --help``, ``dmm programs`` (and ``-v``) and ``dmm show`` on a saved trace must each take at most 3× the bare
NumPy import: they never import JAX (whose import alone costs about ten NumPy imports here). Each command runs as a
fresh process ``python -m dmm ...``, `REPEAT` times; the median wall time is reported, with the ratio to the
NumPy baseline measured in the same run last. ``dmm run`` (which compiles and runs) and ``dmm plot`` (which loads matplotlib) are shown for scale. The
commands run in a scratch folder (a module there named like a package, e.g. a script named ``attention.py``, would
shadow it).

    python benchmarks/cli_startup.py
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dmm
import dmm.files
import neurons
from common import machine_line

REPEAT = 11
GOAL = 3.0


def wall(argv: list[str], cwd: str) -> float:
    """Median wall time in seconds of running `argv` in `cwd` as a fresh process, `REPEAT` times."""
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = dmm.Program()
        p.add("one", neurons.const(1.0))
        p.add("cnt", neurons.accumulator())
        p.link("cnt.out", "cnt.accum")
        p.link("one.out", "cnt.delta")
        trace = Path(tmp) / "run.npz"
        dmm.files.save_trace(dmm.compile(p).run(200, record="all"), trace)
        dmm_cmd = [sys.executable, "-m", "dmm"]
        base = wall([sys.executable, "-c", "import numpy"], tmp)
        rows = {
            "dmm --help": dmm_cmd + ["--help"],
            "dmm programs": dmm_cmd + ["programs"],
            "dmm programs -v": dmm_cmd + ["programs", "-v"],
            "dmm show run.npz --cycles 1:5": dmm_cmd + ["show", str(trace), "--cycles", "1:5"],
            "dmm show run.npz --list": dmm_cmd + ["show", str(trace), "--list"],
        }
        print(machine_line())
        print(f"median of {REPEAT} fresh processes; baseline python -c 'import numpy': {base * 1e3:.0f} ms")
        print(f"{'command':<34} {'ms':>7} {'ratio':>7}")
        worst = 0.0
        for name, argv in rows.items():
            t = wall(argv, tmp)
            worst = max(worst, t / base)
            print(f"{name:<34} {t * 1e3:>7.0f} {t / base:>7.2f}")
        t = wall(dmm_cmd + ["run", "duplicate_detector", "--steps", "20", "-q", "--out", str(Path(tmp) / "d.npz")], tmp)
        print(f"{'(for scale) dmm run duplicate_detector':<34} {t * 1e3:>7.0f} {t / base:>7.2f}")
        if importlib.util.find_spec("matplotlib") is not None:
            t = wall(dmm_cmd + ["plot", str(trace), "-o", str(Path(tmp) / "run.png")], tmp)
            print(f"{'(for scale) dmm plot run.npz':<34} {t * 1e3:>7.0f} {t / base:>7.2f}")
        print(f"worst quick-command ratio to the NumPy import: {worst:.2f} (goal: at most {GOAL})")


if __name__ == "__main__":
    main()
