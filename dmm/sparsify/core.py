"""Automated sparsification: prune links while keeping the optimizer state of the survivors, on an adaptive schedule
with backtracking.

`prune(trainer, state, links)` removes links from a `TrainState`: their weights become 0, their mask entries False
(so they stay 0), and every parameter-shaped leaf of the optimizer state (Adam's first and second moments, say) is
zeroed at the same entries, while the survivors' entries, the step count and everything else are kept: training
continues as if the cut links had never been there, without the restart a fresh optimizer would cause.

`sparsify(trainer, state, config, ...)` runs the schedule:

1. choose the links to cut: the `cut` smallest by abs(w) (criterion "weight", the author's), or the `cut` whose
   removal alone costs the least loss among the `candidates` smallest (criterion "loss", evaluated in one vmapped
   pass); protected links are never chosen;
2. prune them and train `recover_steps` steps, and more (up to `max_recover_steps`) while the loss is above the
   tolerance but still falling by at least the fraction `improve` per round;
3. if the loss is then at most `tolerance`, accept: the state becomes the new "last good" state (saved to
   `checkpoint` if given) and the cut size grows (× `grow`, at most `max_cut`);
4. otherwise back off: restore the last good state and halve the cut size; when even a single link cannot be cut,
   that link is *critical* and is skipped until the next accepted cut changes the network;
5. stop when every remaining link is protected or critical, at `min_links` links, or when the step budget
   `max_steps` runs out; optionally polish with `final_steps` more steps.

Every attempt is logged (the links cut with their weights, the loss before the cut, right after it and after
recovery, the recovery steps, accepted or not) in the returned report and, if `log` is given, as JSONL lines.

`search_sparsify(trainer, state, SearchConfig(...))` is the parallel variant: each round ranks the live links by
the loss of the network without each one, recovers several trial cuts at once (`Trainer.fit_many`: a big group,
smaller ones, alternative single links) and keeps the acceptable trial that cut most; see its docstring.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dmm import Machine, ProgramError
from dmm.files import save_checkpoint
from dmm.train import MetricsLog, Trainer, TrainState, stack_states, unstack_state

Link = tuple[str, str]


def link_names(machine: Machine) -> dict[str, np.ndarray]:
    """For every kind, an object array shaped like ``params["W"][kind]`` holding the ``(src, dst)`` pair of each
    entry (dense blocks: (M, N) grid; sparse blocks: one pair per stored link)."""
    out = {}
    lay = machine.layout
    for k in machine.params["W"]:
        rows, cols = lay.rows[k], lay.cols[k]
        if machine.backend[k] == "sparse":
            r, c = machine._edges[k]
            names = np.empty(len(r), object)
            names[:] = [(cols[j], rows[i]) for i, j in zip(r, c)]
        else:
            names = np.empty((len(rows), len(cols)), object)
            for i, dst in enumerate(rows):
                for j, src in enumerate(cols):
                    names[i, j] = (src, dst)
        out[k] = names
    return out


def links_mask(machine: Machine, links: Iterable[Link]) -> dict[str, np.ndarray]:
    """Boolean arrays shaped like ``params["W"]``: True at the given ``(src, dst)`` links (unknown pairs raise
    `ProgramError`)."""
    out = {k: np.zeros(np.shape(w), bool) for k, w in machine.params["W"].items()}
    for src, dst in links:
        k, pos = machine.entry(src, dst)
        out[k][pos] = True
    return out


def live_links(state: TrainState, machine: Machine) -> dict[Link, float]:
    """The trainable links still in the mask, ``{(src, dst): weight}``."""
    lay = machine.layout
    out = {}
    for k, m in state.mask["W"].items():
        m = np.asarray(m)
        w = np.asarray(state.params["W"][k])
        rows, cols = lay.rows[k], lay.cols[k]
        if machine.backend[k] == "sparse":
            r, c = machine._edges[k]
            for e in np.flatnonzero(m):
                out[(cols[c[e]], rows[r[e]])] = float(w[e])
        else:
            for i, j in zip(*np.nonzero(m)):
                out[(cols[j], rows[i])] = float(w[i, j])
    return out


def prune(trainer: Trainer, state: TrainState, links: Iterable[Link] | Mapping[str, Any]) -> TrainState:
    """Remove `links` (``(src, dst)`` pairs, or boolean arrays shaped like ``params["W"]``) from `state`.

    Their weights are set to 0 and their mask entries to False; every params-shaped leaf of the optimizer state is
    zeroed at those entries and kept elsewhere (`optax.tree_utils.tree_map_params`); through Self, the running
    machine's matrix loses them too. Returns the new state.
    """
    where = dict(links) if isinstance(links, Mapping) else links_mask(trainer.machine, links)
    return _edit_links(trainer, state, where, {}, live=False)


def regrow(trainer: Trainer, state: TrainState, links: Mapping[Link, float]) -> TrainState:
    """The inverse of `prune`: give the trainable links ``{(src, dst): weight}`` back to `state` with those starting
    weights (mask entries True, the optimizer's params-shaped state zeroed at those entries, everything else kept).
    Links that are not trainable in the program raise `ProgramError`."""
    m = trainer.machine
    where = {k: np.zeros(np.shape(w), bool) for k, w in state.params["W"].items()}
    values = {k: np.zeros(np.shape(w), np.float64) for k, w in state.params["W"].items()}
    for (src, dst), w in links.items():
        k, pos = m.entry(src, dst)
        if not np.asarray(m.trainable["W"][k])[pos]:
            raise ProgramError(f"regrow: link {src} -> {dst} is not trainable")
        where[k][pos], values[k][pos] = True, w
    return _edit_links(trainer, state, where, values, live=True)


def _edit_links(trainer: Trainer, state: TrainState, where: Mapping[str, Any], values: Mapping[str, Any],
                live: bool) -> TrainState:
    """Set the W entries marked in `where` ({kind: bool array}) to `values` (0 where missing), their mask entries
    to `live`, and zero the optimizer's params-shaped state there."""
    m = trainer.machine
    sel = {"W": {k: jnp.asarray(where.get(k, np.zeros(np.shape(w), bool))) for k, w in state.params["W"].items()},
           "neurons": jax.tree_util.tree_map(lambda x: jnp.zeros(jnp.shape(x), bool), state.params["neurons"])}
    zero = lambda x, c: jnp.where(c, jnp.zeros_like(x), x)
    W = {k: jnp.where(sel["W"][k], jnp.asarray(values[k], w.dtype) if k in values else jnp.zeros_like(w), w)
         for k, w in state.params["W"].items()}
    params = {**state.params, "W": W}
    mask = jax.tree_util.tree_map(lambda x, c: (x | c) if live else (x & ~c), state.mask, sel)
    opt_state = optax.tree_utils.tree_map_params(
        trainer.optimizer, zero, state.opt_state, sel, transform_non_params=lambda x, *_: x
    )
    run = state.run
    if run is not None:
        run = m.write(run, m.layout.self_stream, m.network.flatten(params["W"], jnp))
    return state._replace(params=params, mask=mask, opt_state=opt_state, run=run)


def _choose(trainer, state, k, protect, config, inputs, data) -> list[tuple[Link, float]]:
    """The links to cut next: the k smallest by abs(w), or (criterion "loss") the k whose removal alone costs the
    least loss among the `candidates` smallest."""
    if config.criterion == "weight":
        return smallest_links(trainer, state, k, protect)
    pool = smallest_links(trainer, state, config.candidates, protect)
    if not pool:
        return []
    losses = _single_cut_losses(trainer, state, [l for l, _ in pool], inputs, data)
    order = np.argsort(losses, kind="stable")
    return [pool[i] for i in order[:k]]


def smallest_links(trainer: Trainer, state: TrainState, k: int, protect: Iterable[Link] = ()) -> list[tuple[Link, float]]:
    """The `k` live links of smallest abs(weight), excluding `protect`, as ``[((src, dst), weight), ...]``."""
    protect = set(protect)
    items = [(l, w) for l, w in live_links(state, trainer.machine).items() if l not in protect]
    items.sort(key=lambda lw: (abs(lw[1]), lw[0]))
    return items[:k]


@dataclasses.dataclass(frozen=True)
class SparsifyConfig:
    """The schedule of `sparsify` (see the module docstring).

    - `tolerance`: a cut is accepted when the data loss after recovery is at most this.
    - `recover_steps`: training steps after each cut; `max_recover_steps`, `improve`: keep recovering (in rounds of
      `recover_steps`, up to `max_recover_steps` in all) while the loss exceeds the tolerance but falls by at least
      the fraction `improve` per round.
    - `cut`: links cut in the first attempt; `grow`: factor applied after an accepted cut; `max_cut`: upper bound.
    - `min_links`: stop when this few links are left (counting protected ones).
    - `protect`: links never cut.
    - `max_steps`: training-step budget of the whole schedule (None: unlimited).
    - `final_steps`: training steps after the schedule ends (polish the last good state; kept only if it stays
      within tolerance).
    - `l1`: penalty coefficient during the schedule (None: keep the state's).
    - `criterion`: "weight" (cut the smallest abs(w)) or "loss" (cut the least damaging of the `candidates`
      smallest, each evaluated alone).
    """

    tolerance: float
    recover_steps: int = 100
    cut: int = 1
    grow: float = 2.0
    max_cut: int = 1 << 30
    min_links: int = 0
    protect: tuple[Link, ...] = ()
    max_recover_steps: int = 0
    improve: float = 0.1
    max_steps: int | None = None
    final_steps: int = 0
    l1: float | None = None
    criterion: str = "weight"
    candidates: int = 32

    def __post_init__(self) -> None:
        if not self.tolerance >= 0:
            raise ProgramError(f"SparsifyConfig: tolerance must be non-negative, not {self.tolerance}")
        if self.recover_steps < 0 or self.cut < 1 or self.grow < 1 or self.max_cut < 1:
            raise ProgramError("SparsifyConfig: need recover_steps >= 0, cut >= 1, grow >= 1, max_cut >= 1")
        if self.criterion not in ("weight", "loss"):
            raise ProgramError(f"SparsifyConfig: criterion must be 'weight' or 'loss', not {self.criterion!r}")
        if self.candidates < 1:
            raise ProgramError("SparsifyConfig: candidates must be at least 1")
        object.__setattr__(self, "protect", tuple((str(s), str(d)) for s, d in self.protect))
        object.__setattr__(self, "max_recover_steps", max(self.max_recover_steps, self.recover_steps))


@dataclasses.dataclass
class SparsifyReport:
    """What `sparsify` did: `attempts` (one dict per attempt: step, links cut with weights, loss_before, loss_cut,
    loss_after, limit (the tolerance it was held to), accepted, links_left), `critical` (links found uncuttable and protected), `links` (live links at the
    end) and `loss` (the final data loss), `steps` (training steps spent), `seconds`."""

    attempts: list[dict] = dataclasses.field(default_factory=list)
    critical: list[Link] = dataclasses.field(default_factory=list)
    links: int = 0
    loss: float = float("nan")
    steps: int = 0
    seconds: float = 0.0


def sparsify(
    trainer: Trainer,
    state: TrainState,
    config: SparsifyConfig,
    inputs: Mapping[str, Any] | None = None,
    data: Any = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    log: str | os.PathLike | None = None,
    progress: bool = False,
) -> tuple[TrainState, SparsifyReport]:
    """Run the adaptive pruning schedule `config` from `state` (see the module docstring).

    **Arguments:** `trainer`, `state`; `inputs`, `data` as for `Trainer.update`; `checkpoint`: where the last good
    state is saved after every accepted cut; `log`: a JSONL file receiving one line per attempt; `progress`: print
    one line per attempt to stderr.

    **Returns:** the last good state (its loss at most `tolerance`, unless no cut was ever accepted) and a
    `SparsifyReport`.
    """
    for l in config.protect:
        trainer.machine.entry(*l)
    t0 = time.perf_counter()
    if config.l1 is not None:
        state = state._replace(l1=jnp.asarray(config.l1, state.l1.dtype))
    report = SparsifyReport()
    logger = MetricsLog(log) if log is not None else None
    critical: list[Link] = []
    good = state
    good_loss = float(trainer.evaluate(state, inputs, data).loss)
    cut = config.cut
    spent = 0

    def budget_left(n: int) -> bool:
        return config.max_steps is None or spent + n <= config.max_steps

    try:
        while budget_left(config.recover_steps):
            live = live_links(good, trainer.machine)
            if len(live) <= config.min_links:
                break
            chosen = _choose(trainer, good, min(cut, len(live) - config.min_links), list(config.protect) + critical,
                             config, inputs, data)
            if not chosen:
                break
            trial = prune(trainer, good, [l for l, _ in chosen])
            loss_cut = float(trainer.evaluate(trial, inputs, data).loss)
            after, last, used = loss_cut, np.inf, 0
            # recover; keep going (up to max_recover_steps) while the loss is above tolerance but still falling
            while used < config.max_recover_steps and budget_left(config.recover_steps) and (
                used == 0 or (after > config.tolerance and after < (1 - config.improve) * last)
            ):
                trial, _ = trainer.fit(trial, config.recover_steps, inputs, data, progress=False)
                spent += config.recover_steps
                used += config.recover_steps
                last, after = after, float(trainer.evaluate(trial, inputs, data).loss)
            ok = bool(np.isfinite(after) and after <= config.tolerance)
            entry = {
                "step": int(trial.step),
                "cut": [[s, d, w] for (s, d), w in chosen],
                "loss_before": good_loss,
                "loss_cut": loss_cut,
                "loss_after": after,
                "limit": config.tolerance,
                "recover_steps": used,
                "accepted": ok,
                "links_left": len(live) - (len(chosen) if ok else 0),
            }
            report.attempts.append(entry)
            if logger is not None:
                logger.write(**entry)
            if progress:
                sys.stderr.write(
                    f"sparsify: cut {len(chosen)} -> {entry['links_left']} links, loss {good_loss:.3g} -> "
                    f"{loss_cut:.3g} -> {after:.3g} ({used} steps) {'accepted' if ok else 'rejected'}\n"
                )
            if ok:
                good, good_loss = trial, after
                critical = []
                if checkpoint is not None:
                    save_checkpoint(checkpoint, good, {"links": entry["links_left"], "loss": after})
                cut = min(max(int(cut * config.grow), cut + 1 if config.grow > 1 else cut), config.max_cut)
            elif len(chosen) > 1:
                cut = max(len(chosen) // 2, 1)
            else:
                critical.append(chosen[0][0])
                cut = 1
        if config.final_steps and budget_left(config.final_steps):
            trial, _ = trainer.fit(good, config.final_steps, inputs, data, progress=progress)
            spent += config.final_steps
            after = float(trainer.evaluate(trial, inputs, data).loss)
            if np.isfinite(after) and after <= max(config.tolerance, good_loss):
                good, good_loss = trial, after
    finally:
        if logger is not None:
            logger.close()
    report.critical = critical
    report.links = len(live_links(good, trainer.machine))
    report.loss = good_loss
    report.steps = spent
    report.seconds = time.perf_counter() - t0
    return good, report


# ------------------------------------------------------------------------------------ parallel trial cuts (search)
@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The schedule of `search_sparsify` (see its docstring).

    - `tolerance`: a trial cut is acceptable when its recovered loss is at most ``limit = max(tolerance,
      ratchet × the lowest loss of the network so far)`` (`ratchet` None: the limit is `tolerance` alone). With a
      ratchet, a cut may not undo what training has won: the limit tightens as the loss falls, down to `tolerance`.
    - `trials`: trial cuts per round, each recovered for `recover_steps` steps, all at once (`Trainer.fit_many`).
    - `cut`: links in the largest trial of the first round; `grow`: factor applied to the size of an accepted cut;
      `max_cut`: upper bound.
    - `min_links`, `protect`, `max_steps`, `l1`: as in `SparsifyConfig`.
    - `final_steps`: training steps after the search (kept when they lower the loss).
    """

    tolerance: float
    ratchet: float | None = None
    trials: int = 8
    recover_steps: int = 200
    cut: int = 1
    grow: float = 2.0
    max_cut: int = 1 << 30
    min_links: int = 0
    protect: tuple[Link, ...] = ()
    max_steps: int | None = None
    l1: float | None = None
    final_steps: int = 0

    def __post_init__(self) -> None:
        if not self.tolerance >= 0:
            raise ProgramError(f"SearchConfig: tolerance must be non-negative, not {self.tolerance}")
        if self.ratchet is not None and not self.ratchet >= 1:
            raise ProgramError(f"SearchConfig: ratchet must be at least 1, not {self.ratchet}")
        if self.trials < 1 or self.recover_steps < 1 or self.cut < 1 or self.grow < 1 or self.max_cut < 1:
            raise ProgramError("SearchConfig: need trials, recover_steps, cut, max_cut >= 1 and grow >= 1")
        object.__setattr__(self, "protect", tuple((str(s), str(d)) for s, d in self.protect))


def _trial_sets(order: list, size: int, trials: int) -> list[list]:
    """The cuts of one round: groups of the `size`, size/2, size/4, ... best-ranked links (sizes > 1), then single
    links in rank order, `trials` cuts in all (fewer when fewer links are left)."""
    sets, g = [], min(size, len(order))
    while g > 1 and len(sets) < trials:
        sets.append(order[:g])
        g //= 2
    sets += [[l] for l in order[: trials - len(sets)]]
    return sets


def search_sparsify(
    trainer: Trainer,
    state: TrainState,
    config: SearchConfig,
    inputs: Mapping[str, Any] | None = None,
    data: Any = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    log: str | os.PathLike | None = None,
    progress: bool = False,
) -> tuple[TrainState, SparsifyReport]:
    """Sparsify by parallel trial cuts: several candidate cuts of the network are each recovered by training, all
    at once in one vmapped run, and the best acceptable one is kept.

    Each round:

    1. rank the live links (protected ones and those already found uncuttable excluded) by the loss of the network
       with that link alone removed (one vmapped evaluation: a loss-aware score), ties by abs(w);
    2. build `trials` cuts: the best-ranked `size`, size/2, size/4, ... links together, then the best-ranked links
       one at a time (so a round tries a big cut, smaller ones, and alternative single links in parallel);
    3. prune each cut (moments kept, `prune`) and train every trial `recover_steps` steps (`Trainer.fit_many`);
    4. among the trials whose recovered loss is within the limit (see `SearchConfig`), keep the one that cut most
       links (then the lowest loss): it becomes the network and `size` grows to `grow` × its cut. When none is
       acceptable the network stays as it was (backtracking: nothing was applied), the single links tried are
       marked uncuttable until the next accepted cut, and the next round tries single links only, the next ones in
       rank order (backtracking on the structure, not only on the cut size);
    5. stop when no link is left to try, at `min_links` links or when the `max_steps` budget (counting every
       trial's steps) would be exceeded; then `final_steps` of training if they lower the loss.

    Arguments and returns as in `sparsify`; the report's attempts hold one entry per round (the cut chosen, or the
    best trial when none was acceptable, and every trial's size and recovered loss).
    """
    m = trainer.machine
    if trainer.through_self is not None:
        raise ProgramError("search_sparsify: trainers that train through Self are not supported (use sparsify)")
    for l in config.protect:
        m.entry(*l)
    t0 = time.perf_counter()
    if config.l1 is not None:
        state = state._replace(l1=jnp.asarray(config.l1, state.l1.dtype))
    report = SparsifyReport()
    logger = MetricsLog(log) if log is not None else None
    good = state
    good_loss = lowest = float(trainer.evaluate(state, inputs, data).loss)
    size, spent = config.cut, 0
    failed: set[Link] = set()
    protect = set(config.protect)
    round_cost = config.trials * config.recover_steps
    try:
        while config.max_steps is None or spent + round_cost <= config.max_steps:
            live = live_links(good, m)
            if len(live) <= config.min_links:
                break
            pool = [l for l in live if l not in protect and l not in failed]
            if not pool:
                break
            # 1. loss-aware ranking of the candidates, each removed alone
            scores = _single_cut_losses(trainer, good, pool, inputs, data)
            order = [pool[i] for i in np.lexsort((np.abs([live[l] for l in pool]), scores))]
            # 2.-3. the round's trial cuts, recovered in parallel (padded to `trials` members: one compilation)
            sets = _trial_sets(order, min(size, len(live) - config.min_links), config.trials)
            masks = [links_mask(m, s) for s in sets]
            masks += [masks[0]] * (config.trials - len(masks))
            trial = prune(trainer, stack_states([good] * config.trials),
                          {k: np.stack([mk[k] for mk in masks]) for k in masks[0]})
            loss_cut = trainer.evaluate_many(trial, inputs, data)[: len(sets)]
            trial, _ = trainer.fit_many(trial, config.recover_steps, inputs, data)
            spent += round_cost
            after = trainer.evaluate_many(trial, inputs, data)[: len(sets)]
            limit = config.tolerance if config.ratchet is None else max(config.tolerance, config.ratchet * lowest)
            ok = [i for i in range(len(sets)) if np.isfinite(after[i]) and after[i] <= limit]
            if ok:
                best = max(ok, key=lambda i: (len(sets[i]), -after[i]))
            else:
                best = int(np.argmin(np.where(np.isfinite(after), after, np.inf)))
            chosen = sets[best]
            entry = {
                "step": int(good.step) + config.recover_steps,
                "cut": [[s, d, live[(s, d)]] for s, d in chosen],
                "loss_before": good_loss,
                "loss_cut": float(loss_cut[best]),
                "loss_after": float(after[best]),
                "limit": limit,
                "recover_steps": config.recover_steps,
                "accepted": bool(ok),
                "links_left": len(live) - (len(chosen) if ok else 0),
                "trials": [[len(s), float(a)] for s, a in zip(sets, after)],
            }
            report.attempts.append(entry)
            if logger is not None:
                logger.write(**entry)
            if progress:
                sys.stderr.write(
                    f"search: {len(sets)} trials, best cut {len(chosen)} -> {entry['links_left']} links, loss "
                    f"{good_loss:.3g} -> {entry['loss_after']:.3g} (limit {limit:.3g}) "
                    f"{'accepted' if ok else 'rejected'}\n"
                )
            if ok:
                good, good_loss = unstack_state(trial, best), float(after[best])
                lowest = min(lowest, good_loss)
                failed = set()
                size = min(max(int(len(chosen) * config.grow), len(chosen) + (config.grow > 1)), config.max_cut)
                if checkpoint is not None:
                    save_checkpoint(checkpoint, good, {"links": entry["links_left"], "loss": good_loss})
            else:
                failed |= {s[0] for s in sets if len(s) == 1}
                size = 1
        if config.final_steps and (config.max_steps is None or spent + config.final_steps <= config.max_steps):
            polished, _ = trainer.fit(good, config.final_steps, inputs, data, progress=progress)
            spent += config.final_steps
            after = float(trainer.evaluate(polished, inputs, data).loss)
            if np.isfinite(after) and after <= good_loss:
                good, good_loss = polished, after
    finally:
        if logger is not None:
            logger.close()
    report.critical = sorted(failed)
    report.links = len(live_links(good, m))
    report.loss = good_loss
    report.steps = spent
    report.seconds = time.perf_counter() - t0
    return good, report


# --------------------------------------------------------------------------------- swaps (cut one, regrow one)
@dataclasses.dataclass(frozen=True)
class SwapConfig:
    """The schedule of `swap_sparsify` (see its docstring).

    - `tolerance`: the loss a network must stay within (swaps, free cuts and polishing).
    - `regrow`: regrowths tried per cut link (the best by predicted gain); `trials`: swaps recovered per round (the
      lowest immediate losses), each for `recover_steps` steps, all at once (`Trainer.fit_many`).
    - `polish_steps`: training steps after each accepted round's free cuts (kept while within tolerance).
    - `max_rounds`, `protect`, `l1`: the round budget, links never cut, the L1 coefficient (None: unchanged).
    """

    tolerance: float
    regrow: int = 2
    trials: int = 8
    recover_steps: int = 3000
    polish_steps: int = 3000
    max_rounds: int = 4
    protect: tuple[Link, ...] = ()
    l1: float | None = None

    def __post_init__(self) -> None:
        if not self.tolerance >= 0:
            raise ProgramError(f"SwapConfig: tolerance must be non-negative, not {self.tolerance}")
        if min(self.regrow, self.trials, self.recover_steps, self.max_rounds) < 1 or self.polish_steps < 0:
            raise ProgramError("SwapConfig: need regrow, trials, recover_steps, max_rounds >= 1 and polish_steps >= 0")
        object.__setattr__(self, "protect", tuple((str(s), str(d)) for s, d in self.protect))


def regrow_gains(
    trainer: Trainer, state: TrainState, residuals: Any, inputs: Mapping[str, Any] | None = None, data: Any = None
) -> list[tuple[Link, float, float]]:
    """Gauss-Newton ranking of the links that could be given back to `state`.

    For a data loss L = Σ r² with residuals r = ``residuals(trace, data)`` (a 1-D array), and every trainable link
    that is cut (mask False, weight 0): g = dL/dw = 2 Σ r ∂r/∂w and H = 2 Σ (∂r/∂w)² (one `jax.jacrev` of the
    residuals with respect to W). Setting that link alone to w* = −g/H lowers the linearised loss by g²/(2H).

    Returns ``[((src, dst), gain, w*), ...]`` by decreasing gain (links with H = 0 left out).
    """
    m = trainer.machine
    if trainer.through_self is not None or trainer.batched:
        raise ProgramError("regrow_gains: trainers that train through Self or on batches are not supported")
    h = trainer.horizon(int(state.step))
    g, H = _gauss_newton(trainer, residuals)(state, trainer.episode_inputs(inputs, h), data, h)
    names = link_names(m)
    out = []
    for k in g:
        gk, hk = np.asarray(g[k], np.float64), np.asarray(H[k], np.float64)
        free = np.asarray(m.trainable["W"][k], bool) & ~np.asarray(state.mask["W"][k], bool) & (hk > 0)
        for pos in zip(*np.nonzero(free)):
            out.append((names[k][pos], float(gk[pos] ** 2 / (2 * hk[pos])), float(-gk[pos] / hk[pos])))
    out.sort(key=lambda x: -x[1])
    return out


def _gauss_newton(trainer: Trainer, residuals: Any):
    """A jitted (state, inputs, data) -> (g, H) over ``params["W"]`` for `regrow_gains` (cached per trainer)."""
    cache = trainer.__dict__.setdefault("_gauss_newton_cache", {})
    if residuals in cache:
        return cache[residuals]
    m = trainer.machine

    def fn(state, inputs, data, h):
        key = jax.random.fold_in(state.key, state.step) if m.stochastic else None

        def r_of(W):
            trace, _ = trainer.episode_trace({**state.params, "W": W}, None, inputs, key, h)
            return jnp.ravel(residuals(trace, data))

        W = state.params["W"]
        r, J = r_of(W), jax.jacrev(r_of)(W)
        return ({k: 2 * jnp.tensordot(r, J[k], axes=1) for k in W}, {k: 2 * jnp.sum(J[k] ** 2, axis=0) for k in W})

    cache[residuals] = jax.jit(fn, static_argnums=3)
    return cache[residuals]


def swap_sparsify(
    trainer: Trainer,
    state: TrainState,
    residuals: Any,
    config: SwapConfig,
    inputs: Mapping[str, Any] | None = None,
    data: Any = None,
    *,
    log: str | os.PathLike | None = None,
    progress: bool = False,
) -> tuple[TrainState, SparsifyReport]:
    """Leave a network where no single cut is affordable by swapping links: cut one, give another back.

    Needs the data loss as a sum of squares: `residuals(trace, data)` returns the 1-D residuals r, with the trainer's
    loss equal to Σ r². Each round:

    1. for every live link c (protected ones excepted): cut c, rank the cut links by their Gauss-Newton gain at that
       state (`regrow_gains`), and for the best `regrow` of them set the link to its one-dimensional optimum w*
       (the optimizer state of both entries zeroed, as in `prune` and `regrow`); evaluate each swap's loss;
    2. recover the `trials` swaps with the lowest losses for `recover_steps` steps, all at once;
    3. accept the best recovered swap if its loss is within the tolerance and below the current loss; otherwise
       stop (nothing is applied);
    4. free cuts: while the cheapest single cut (loss of the network without that link, no training) stays within
       the tolerance, cut it; then `polish_steps` of training, kept if the loss stays within the tolerance.

    A swap keeps the link count, so it is the free cuts that shrink the network: a swap that reroutes what several
    links did lets them go. Returns the final state and a `SparsifyReport` (one attempt entry per round).
    """
    m = trainer.machine
    if config.l1 is not None:
        state = state._replace(l1=jnp.asarray(config.l1, state.l1.dtype))
    t0 = time.perf_counter()
    report = SparsifyReport()
    logger = MetricsLog(log) if log is not None else None
    protect = set(config.protect)
    for l in protect:
        m.entry(*l)
    loss = float(trainer.evaluate(state, inputs, data).loss)
    spent = 0
    try:
        for _ in range(config.max_rounds):
            # 1. candidate swaps: each live link cut, the best regrowths at that state set to their optimum
            cands = []
            for c in [l for l in live_links(state, m) if l not in protect]:
                cut = prune(trainer, state, [c])
                gains = [x for x in regrow_gains(trainer, cut, residuals, inputs, data) if x[0] != c]
                for link, _, w in gains[: config.regrow]:
                    swapped = regrow(trainer, cut, {link: w})
                    after = float(trainer.evaluate(swapped, inputs, data).loss)
                    cands.append((after if np.isfinite(after) else np.inf, c, link, swapped))
            if not cands:
                break
            cands.sort(key=lambda x: x[0])
            chosen = cands[: config.trials]
            # 2. recover them in parallel (padded to `trials` members: one compilation)
            pad = [x[3] for x in chosen] + [chosen[0][3]] * (config.trials - len(chosen))
            trial, _ = trainer.fit_many(stack_states(pad), config.recover_steps, inputs, data)
            spent += config.trials * config.recover_steps
            rec = trainer.evaluate_many(trial, inputs, data)[: len(chosen)]
            ok = [i for i in range(len(chosen)) if np.isfinite(rec[i]) and rec[i] <= config.tolerance and rec[i] < loss]
            best = min(ok, key=lambda i: rec[i]) if ok else None
            entry = {"swaps": [[list(x[1]), list(x[2]), x[0], float(r)] for x, r in zip(chosen, rec)],
                     "loss_before": loss, "accepted": best is not None}
            if best is not None:
                # 3.-4. accept, then free cuts and polishing
                state, loss = unstack_state(trial, best), float(rec[best])
                entry.update(cut=list(chosen[best][1]), regrown=list(chosen[best][2]))
                freed = []
                while True:
                    live = [l for l in live_links(state, m) if l not in protect]
                    if not live:
                        break
                    scores = _single_cut_losses(trainer, state, live, inputs, data)
                    i = int(np.argmin(scores))
                    if not scores[i] <= config.tolerance:
                        break
                    state, loss = prune(trainer, state, [live[i]]), float(scores[i])
                    freed.append(list(live[i]))
                if config.polish_steps:
                    polished, _ = trainer.fit(state, config.polish_steps, inputs, data, progress=False)
                    spent += config.polish_steps
                    after = float(trainer.evaluate(polished, inputs, data).loss)
                    if np.isfinite(after) and after <= config.tolerance:
                        state, loss = polished, after
                entry.update(freed=freed, loss_after=loss, links_left=len(live_links(state, m)))
            report.attempts.append(entry)
            if logger is not None:
                logger.write(**entry)
            if progress:
                sys.stderr.write(
                    f"swap: {len(chosen)} trials, best {min(rec):.3g} -> "
                    + (f"accepted, {len(entry['freed'])} free cuts, {entry['links_left']} links, loss {loss:.3g}\n"
                       if best is not None else "rejected\n")
                )
            if best is None:
                break
    finally:
        if logger is not None:
            logger.close()
    report.links = len(live_links(state, m))
    report.loss = loss
    report.steps = spent
    report.seconds = time.perf_counter() - t0
    return state, report


def _single_cut_losses(trainer: Trainer, state: TrainState, links: list[Link], inputs, data) -> np.ndarray:
    """The data loss of `state` without each of `links` alone (one vmapped pass); inf where non-finite. The batch is
    padded to a multiple of 64 (with variants that cut nothing), so shrinking networks reuse one compilation."""
    m = trainer.machine
    n = -(-len(links) // 64) * 64
    cuts = {k: np.zeros((n, *np.shape(w)), bool) for k, w in state.params["W"].items()}
    for i, l in enumerate(links):
        k, pos = m.entry(*l)
        cuts[k][(i, *np.atleast_1d(pos))] = True
    scores = trainer.cut_losses(state, cuts, inputs, data)[: len(links)]
    return np.where(np.isfinite(scores), scores, np.inf)
