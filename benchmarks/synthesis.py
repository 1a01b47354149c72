"""Benchmark: the detector synthesis end to end, beside the author's numbers (training-and-attention.md A.3–A.6).

    python benchmarks/synthesis.py            # the full run (about 11 minutes on 2 CPU cores)
    python benchmarks/synthesis.py --quick    # a smoke run: 2 seeds, short budgets (not comparable)

The run is the experiment script `experiments/synthesis.py` (its `run` and schedules). Prints one table: seconds
per training step of the 1,486-link, 140-cycle network (one jitted value_and_grad + Adam step, teacher targets
precomputed), the loss after 1,000 and 2,500 steps, the smallest network the automated schedule reaches and its
loss, and the whole run's time; then the generalization table, and last the speed-up per step against the author's
Julia engine (~50 s per step, A.3).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax
import jax.numpy as jnp
import numpy as np

import dmm
from programs import synthesis

# the experiment is a script outside the installed packages (experiments/synthesis.py): load it from its file
_spec = importlib.util.spec_from_file_location("synthesis_experiment", ROOT / "experiments" / "synthesis.py")
experiment = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(experiment)

AUTHOR = {
    "step_seconds": 50.0,  # 45–55 s per step, Julia/Zygote, laptop CPU (A.3)
    "loss_1000": 0.608,
    "loss_2500": 0.0546,
    "links": 19,
    "loss_sparse": 0.00161,  # s20: 19 soft links after manual ("babysitted") pruning, A.5
}
# the author's generalization measurements (A.6): (text, cycles) -> {model: prereg loss}
AUTHOR_GEN = {
    ("test string.", 140): "0.00161 (sparse20)",
    ("test string.", 150): "0.678 (sparse20)",
    ("tets string.", 140): "5.016 (dense) / 0.0313 (109 links) / 0.00144 (sparse20)",
    ("teest string.", 140): "0.00134 (sparse20)",
    ("teest string.", 150): "0.00145 (sparse20)",
    ("tets. str.ingtb str.ingtb", 140): "1.62 (sparse20)",
    ("tets. str.ingtb str.ingtb", 180): "9.00 (sparse20)",
    ("tets. str.ingtb str.ingtb", 250): "50.6 (sparse20)",
}


def step_time(repeats: int = 3, steps: int = 200) -> tuple[float, float]:
    """(compile seconds, best seconds per step) of the dense network's training step, by itself."""
    machine = dmm.compile(synthesis.synthesis_network(seed=0))
    targets = jnp.asarray(synthesis.teacher_targets())
    trainer = experiment.make_trainer(machine)
    state = trainer.init()
    t = time.perf_counter()
    state, _ = trainer.update(state, data=targets)
    compile_s = time.perf_counter() - t
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        state, _ = trainer.fit(state, steps, data=targets, progress=False)
        best = min(best, (time.perf_counter() - t) / steps)
    return compile_s, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 seeds and small budgets (a smoke test, not comparable)")
    ap.add_argument("--out", default=None, help="folder for the run's logs and checkpoints")
    args = ap.parse_args()
    if args.quick:
        schedule = experiment.QUICK
    else:
        schedule = experiment.Schedule()
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; jax {jax.__version__} on {jax.devices()[0].platform}")
    compile_s, step_s = step_time()
    t = time.perf_counter()
    r = experiment.run(schedule, args.out, progress=False)
    wall = time.perf_counter() - t
    h = r.dense[r.seed]
    at = lambda k: float(h[k - 1]) if len(h) >= k else float("nan")
    others = {s: (at_s(d, 1000), at_s(d, 2500)) for s, d in r.dense.items()}
    rows = [
        ("seconds per training step (1,486 links, 140 cycles)", f"{step_s:.4f}", f"~{AUTHOR['step_seconds']:.0f} (Julia)"),
        ("compile time of the step (s)", f"{compile_s:.1f}", "-"),
        (f"loss after 1,000 steps (seed {r.seed})", f"{at(1000):.4g}", f"{AUTHOR['loss_1000']}"),
        (f"loss after 2,500 steps (seed {r.seed})", f"{at(2500):.4g}", f"{AUTHOR['loss_2500']}"),
        ("  range over seeds at 1,000 / 2,500", " / ".join(f"{min(v):.3g}–{max(v):.3g}" for v in zip(*others.values())), "-"),
        (f"loss after {len(h):,} dense steps (chosen)", f"{float(h[-1]):.4g}", "-"),
        ("smallest network reached (soft links)", f"{len(r.links)}", f"{AUTHOR['links']} (manual, days)"),
        ("  its loss on 'test string.' (140 cycles)", f"{r.loss:.4g}", f"{AUTHOR['loss_sparse']}"),
        ("  sparsification tolerance (automatic)", f"{r.tolerance:.4g}", "-"),
        *[(f"  looser tolerance {tol:.3g}: links / loss", f"{n} / {loss:.4g}", "-") for tol, n, loss in r.pareto[1:]],
        ("  sparsification steps / attempts",
         f"{sum(s.steps for s in r.stages):,} / {sum(len(s.attempts) for s in r.stages)}", "-"),
        ("seconds: dense (all seeds) / sparsify / ladder / total",
         f"{r.seconds['dense']:.0f} / {r.seconds['sparsify']:.0f} / {r.seconds['ladder']:.0f} / {wall:.0f}", "days"),
    ]
    w = max(len(a) for a, _, _ in rows)
    print(f"\n| {'quantity'.ljust(w)} | dmm | author |\n|{'-' * (w + 2)}|-----|--------|")
    for a, b, c in rows:
        print(f"| {a.ljust(w)} | {b} | {c} |")
    print("\n| text | cycles | loss (dmm, final network) | max error | author (prereg loss) |\n|---|---|---|---|---|")
    for row in r.generalization:
        print(f"| {row['text']!r} | {row['cycles']} | {row['loss']:.4g} | {row['max_error']:.3g} | "
              f"{AUTHOR_GEN.get((row['text'], row['cycles']), '-')} |")
    print("\nfinal network:")
    for (src, dst), wt in sorted(r.links.items(), key=lambda x: x[0][1]):
        print(f"  {src:>20} -> {dst:<20} {wt:+.4f}")
    print(f"\nspeed-up per training step vs the author's Julia engine: {AUTHOR['step_seconds'] / step_s:,.0f}x")


def at_s(h: np.ndarray, k: int) -> float:
    return float(h[k - 1]) if len(h) >= k else float("nan")


if __name__ == "__main__":
    main()
