"""The detector synthesis experiment: train the 1,486-link student (`programs.synthesis`) to imitate the handcrafted
detector, then sparsify it automatically (the author's "feedforward-run-3", `training-and-attention.md` A.2–A.6).

    python experiments/synthesis.py --out runs/synthesis      # the full run (about 11 minutes on 2 CPU cores)
    python experiments/synthesis.py --quick --out /tmp/synth  # the smoke-test schedule (seconds)

- **Training** (`make_trainer`): soft weights 0.01·N(0, 1); Adam, learning rate 1e-3; L1 1e-3 on the soft links;
  the imitation loss `programs.synthesis.output_loss` over 140 cycles.
- **The automated run** (`run`, `Schedule`): several seeds trained densely, the best one sparsified in three
  stages with moment-preserving pruning and backtracking, the tolerance set from the dense loss (no manual
  cutoffs): `dmm.sparsify.sparsify` by abs(w) at a looser limit, `dmm.sparsify.sparsify` by least damage at the
  tolerance, then `dmm.sparsify.swap_sparsify` (cut one link, regrow another at its Gauss-Newton optimum, cut what
  became free); then the generalization table (`generalization`).

This is a script, not part of the installed packages; `benchmarks/synthesis.py` times it and the tests load it from
its file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax

import dmm
import dmm.files
import dmm.sparsify
import dmm.train
from programs import duplicate_detector
from programs.synthesis import CYCLES, OUTPUTS, output_loss, output_residuals, synthesis_network, teacher_targets

# the texts of the author's generalization table (A.6), with the windows he measured
GENERALIZATION = (
    ("test string.", 140), ("test string.", 150), ("tets string.", 140), ("teest string.", 140),
    ("teest string.", 150), ("tets. str.ingtb str.ingtb", 140), ("tets. str.ingtb str.ingtb", 180),
    ("tets. str.ingtb str.ingtb", 250),
)


def make_trainer(
    machine: dmm.Machine, *, lr: float = 1e-3, l1: float = 1e-3, cycles: int = CYCLES, **options
) -> dmm.train.Trainer:
    """The author's training setup on `machine` (a compiled student): Adam(`lr`) on the soft links, L1 `l1`, horizon
    `cycles` (an int); `options` go to `dmm.train.Trainer`."""
    return dmm.train.Trainer(machine, output_loss(machine), optax.adam(lr), cycles, record=OUTPUTS, l1=l1, **options)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The automated synthesis schedule (no manual cutoffs anywhere).

    - `seeds`: students trained (one after the other) with the author's setup for `dense_steps` + `extra_steps`
      steps; the one with the lowest loss is sparsified.
    - `tolerance_factor`, `min_tolerance`: the sparsification tolerance is max(min_tolerance, factor × the chosen
      student's loss), so every accepted cut keeps the loss within that factor of the dense network's.
    - `coarse`: the first `dmm.sparsify.sparsify` stage (cut by abs(w), cut size growing ×2 from 16) down to
      `fine_from` links, at `coarse_factor` × the tolerance (raising L1 to `l1` alone costs the dense network about
      as much as the tolerance, so a coarse stage held to the tolerance itself rejects even links of |w| ≈ 1e-5);
      `fine`: the second stage, at the tolerance (criterion "loss": the single cut that costs least, among every
      live link), recovering `recover_steps` to `max_recover_steps` steps per cut. `max_steps`: the training-step
      budget of both stages together.
    - `polish_steps`: training steps after the fine stage (short recoveries stop on plateaus that longer training
      leaves).
    - `swap_*`: the last stage, `dmm.sparsify.swap_sparsify` at the tolerance: up to `swap_rounds` rounds, each
      trying every live link cut with its best `swap_regrow` Gauss-Newton regrowths, recovering the `swap_trials`
      best swaps `swap_recover_steps` steps in one vmapped run, then cutting every link that became free and
      polishing `polish_steps` steps; it stops by itself when no swap lowers the loss.
    - `search_*` (off by default): before the swaps, `dmm.sparsify.search_sparsify` at the tolerance for
      `search_rounds` rounds of `search_trials` single-link trial cuts, each recovered `search_recover_steps` steps.
    - `l1`: the penalty during sparsification.
    - `ladder`, `ladder_steps`: optionally, after the network within tolerance is found, keep sparsifying it with the
      tolerance multiplied by each factor in turn (`ladder_steps` steps each), to chart how many more links a looser
      loss buys (`Result.pareto`); the final network stays the one within tolerance.
    - `chunk`: training steps per jitted call (`Trainer.fit`).
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3)
    dense_steps: int = 2500
    extra_steps: int = 2500
    tolerance_factor: float = 2.5
    min_tolerance: float = 0.005
    coarse_factor: float = 2.5
    l1: float = 0.01
    recover_steps: int = 200
    max_recover_steps: int = 1000
    fine_from: int = 60
    max_steps: int = 150_000
    polish_steps: int = 3000
    swap_rounds: int = 10
    swap_regrow: int = 2
    swap_trials: int = 8
    swap_recover_steps: int = 3000
    search_rounds: int = 0
    search_trials: int = 8
    search_recover_steps: int = 3000
    ladder: tuple[float, ...] = ()
    ladder_steps: int = 15_000
    chunk: int = 100


QUICK = Schedule(seeds=(0, 1), dense_steps=300, extra_steps=200, max_steps=2000, fine_from=200, polish_steps=100,
                 swap_rounds=0, search_trials=2, search_recover_steps=50, search_rounds=2, ladder=(2.0,),
                 ladder_steps=400)
"""A smoke-test schedule (seconds, not comparable with the author's numbers)."""


@dataclasses.dataclass
class Result:
    """What `run` measured.

    - `dense`: per seed, the losses of every dense step (NumPy (dense_steps + extra_steps,)).
    - `seed`, `tolerance`: the chosen seed and the sparsification tolerance.
    - `step_seconds`: seconds per training step of the dense 1,486-link network (after compilation).
    - `stages`: the `dmm.sparsify.SparsifyReport` of each sparsification stage.
    - `links`: the final network's soft links {(src, dst): weight}; `loss`: its prereg loss on "test string.".
    - `pareto`: [(tolerance, links, loss)] for the final network and each rung of the ladder.
    - `generalization`: `generalization(...)` rows for the final network.
    - `seconds`: wall time of each phase.
    - `state`: the final `dmm.train.TrainState`.
    """

    dense: dict[int, np.ndarray]
    seed: int
    tolerance: float
    step_seconds: float
    stages: list[dmm.sparsify.SparsifyReport]
    links: dict
    loss: float
    pareto: list[tuple[float, int, float]]
    generalization: list[dict]
    seconds: dict[str, float]
    state: dmm.train.TrainState | None = None


def run(schedule: Schedule = Schedule(), out: str | Path | None = None, *, progress: bool = True) -> Result:
    """The whole synthesis: dense training of every seed, automated sparsification of the best one, the
    generalization table. With `out`, writes there: the metrics logs (``dense-SEED.jsonl``), the cut log
    (``cuts.jsonl``), the last good checkpoint (``sparse.npz``), the final program (``final.json``)
    and a summary (``summary.json``)."""
    t_all = time.perf_counter()
    out = None if out is None else Path(out)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    targets = jnp.asarray(teacher_targets())
    machine = dmm.compile(synthesis_network())
    trainer = make_trainer(machine)
    seconds: dict[str, float] = {}

    # 1. dense training, the author's setup, one student per seed
    t0 = time.perf_counter()
    dense, states, step_seconds = {}, {}, []
    n = schedule.dense_steps + schedule.extra_steps
    for seed in schedule.seeds:
        say(f"dense training, seed {seed}: {n} steps")
        state = trainer.init(dmm.compile(synthesis_network(seed=seed)).params)
        state, h = trainer.fit(state, 1, data=targets, progress=False)  # compiles
        t = time.perf_counter()
        log = None if out is None else out / f"dense-{seed}.jsonl"
        state, h2 = trainer.fit(state, n - 1, data=targets, progress=progress, log=log, chunk=schedule.chunk)
        step_seconds.append((time.perf_counter() - t) / (n - 1))
        dense[seed] = np.concatenate([h["loss"], h2["loss"]])
        states[seed] = state
    final_loss = {s: float(trainer.evaluate(st, data=targets).loss) for s, st in states.items()}
    seed = min(final_loss, key=final_loss.get)
    tolerance = max(schedule.min_tolerance, schedule.tolerance_factor * final_loss[seed])
    seconds["dense"] = time.perf_counter() - t0
    say(f"best seed {seed}: loss {final_loss[seed]:.4g}; sparsifying with tolerance {tolerance:.4g}")

    # 2. automated sparsification: coarse (by abs(w)), fine (least damaging single cuts), polish, swaps
    t0 = time.perf_counter()
    state = states[seed]
    common = {"recover_steps": schedule.recover_steps, "max_recover_steps": schedule.max_recover_steps, "l1": schedule.l1}
    ck = None if out is None else out / "sparse"
    log = None if out is None else out / "cuts.jsonl"
    coarse = dmm.sparsify.SparsifyConfig(tolerance=schedule.coarse_factor * tolerance, cut=16, max_cut=256,
                                         min_links=schedule.fine_from, max_steps=schedule.max_steps, **common)
    state, rep1 = dmm.sparsify.sparsify(trainer, state, coarse, data=targets, checkpoint=ck, log=log, progress=progress)
    fine = dmm.sparsify.SparsifyConfig(tolerance=tolerance, cut=1, criterion="loss", candidates=64,
                                       max_steps=max(schedule.max_steps - rep1.steps, 0), **common)
    state, rep2 = dmm.sparsify.sparsify(trainer, state, fine, data=targets, checkpoint=ck, log=log, progress=progress)
    if schedule.polish_steps:
        state, _ = trainer.fit(state, schedule.polish_steps, data=targets, progress=False, chunk=schedule.chunk)
    stages = [rep1, rep2]
    if schedule.search_rounds:
        search = dmm.sparsify.SearchConfig(
            tolerance=tolerance, trials=schedule.search_trials, recover_steps=schedule.search_recover_steps, cut=1,
            l1=schedule.l1, max_steps=schedule.search_rounds * schedule.search_trials * schedule.search_recover_steps,
        )
        state, rep = dmm.sparsify.search_sparsify(trainer, state, search, data=targets, checkpoint=ck, log=log,
                                                  progress=progress)
        stages.append(rep)
    if schedule.swap_rounds:
        swap = dmm.sparsify.SwapConfig(tolerance=tolerance, regrow=schedule.swap_regrow, trials=schedule.swap_trials,
                                       recover_steps=schedule.swap_recover_steps, polish_steps=schedule.polish_steps,
                                       max_rounds=schedule.swap_rounds, l1=schedule.l1)
        state, rep = dmm.sparsify.swap_sparsify(trainer, state, output_residuals(machine), swap, data=targets, log=log,
                                                progress=progress)
        stages.append(rep)
    final = stages[-1]
    seconds["sparsify"] = time.perf_counter() - t0
    pareto = [(tolerance, final.links, final.loss)]
    t0 = time.perf_counter()
    looser = state
    for factor in schedule.ladder:
        rung = dataclasses.replace(fine, tolerance=factor * tolerance, max_steps=schedule.ladder_steps)
        looser, rep = dmm.sparsify.sparsify(trainer, looser, rung, data=targets, log=log, progress=progress)
        pareto.append((rung.tolerance, rep.links, rep.loss))
        stages.append(rep)
    seconds["ladder"] = time.perf_counter() - t0

    # 3. the final network and how it generalizes
    t0 = time.perf_counter()
    loss = float(trainer.evaluate(state, data=targets).loss)
    links = dmm.sparsify.live_links(state, machine)
    table = generalization(state.params)
    seconds["generalization"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_all
    result = Result(dense, seed, tolerance, float(np.median(step_seconds)), stages, links, loss, pareto, table, seconds,
                    state)
    if out is not None:
        program = synthesis_network(seed=seed)
        for (src, dst), w in machine.weights(state.params).items():
            program.set_weight(src, dst, w)
        for l in program.links:
            if l.trainable and (l.src, l.dst) not in links:
                program.set_weight(l.src, l.dst, 0.0)
        dmm.files.save_program(program, out / "final")
        summary = {"seed": seed, "tolerance": tolerance, "loss": loss, "links": [[s, d, w] for (s, d), w in links.items()],
                   "pareto": pareto,
                   "step_seconds": result.step_seconds, "generalization": table, "seconds": seconds,
                   "dense_loss": {str(s): {"1000": float(h[999]), "2500": float(h[2499]), "last": float(h[-1])}
                                  for s, h in dense.items() if len(h) >= 2500}}
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return result


def generalization(
    params: dmm.Params, table: Sequence[tuple[str, int]] = GENERALIZATION, clip: float | None = 4.0
) -> list[dict]:
    """Run a trained student matrix on other texts and windows: for each (text, cycles) the imitation loss (prereg)
    and the largest per-element error against the teacher (`duplicate_detector` on that text, clipped like the
    student). The matrix does not depend on the text: the student's ports are the same for every text.

    **Arguments:** `params`: the student's parameters (``params["W"]`` is read); `table`: (text, cycles) pairs;
    `clip`: the dot neurons' clip of student and teacher (None: unclipped).
    """
    rows = []
    for text, cycles in table:
        m = dmm.compile(synthesis_network(text, clip=clip))
        W = {k: jnp.asarray(params["W"][k]) for k in m.params["W"]}
        tr = m.run(cycles, params={**m.params, "W": W}, record=list(OUTPUTS))
        n = m.kind(OUTPUTS[0]).index(":number")
        y = np.stack([tr[s][:, n] for s in OUTPUTS], axis=1)
        teacher = dmm.compile(duplicate_detector(text, clip=clip)).run(cycles, record=list(OUTPUTS))
        err = y - np.stack([teacher[s] for s in OUTPUTS], axis=1)
        rows.append({"text": text, "cycles": cycles, "loss": float(np.sum(err**2)), "max_error": float(np.max(np.abs(err)))})
    return rows


def main(argv: Sequence[str] | None = None) -> Result:
    """``python experiments/synthesis.py [--out DIR] [--seeds 0,1,2,3] [--max-steps N] [--quick] [--quiet]``: run
    the synthesis and print the final network, the links/loss ladder and the generalization table."""
    ap = argparse.ArgumentParser(prog="python experiments/synthesis.py", description=main.__doc__)
    ap.add_argument("--out", default=None, help="folder for logs, checkpoints and the final program")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2,3)")
    ap.add_argument("--max-steps", type=int, default=None, help="sparsification step budget (default 150,000)")
    ap.add_argument("--quick", action="store_true", help="the smoke-test schedule QUICK (seconds)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    base = QUICK if args.quick else Schedule()
    seeds = base.seeds if args.seeds is None else tuple(int(s) for s in args.seeds.split(","))
    max_steps = base.max_steps if args.max_steps is None else args.max_steps
    schedule = dataclasses.replace(base, seeds=seeds, max_steps=max_steps)
    r = run(schedule, args.out, progress=not args.quiet)
    print(f"seed {r.seed}: {len(r.links)} soft links, loss {r.loss:.4g} (tolerance {r.tolerance:.4g}), "
          f"{r.step_seconds * 1e3:.1f} ms per dense step, {r.seconds['total']:.0f} s in all")
    for (src, dst), w in sorted(r.links.items(), key=lambda x: x[0][1]):
        print(f"  {src:>20} -> {dst:<20} {w:+.4f}")
    for tol, n, loss in r.pareto:
        print(f"  tolerance {tol:.4g}: {n} links, loss {loss:.4g}")
    for row in r.generalization:
        print(f"  {row['text']!r:>30} {row['cycles']:>4} cycles: loss {row['loss']:.4g}, max error {row['max_error']:.3g}")
    return r


if __name__ == "__main__":
    main()
