"""The schedules: greedy cuts with backtracking (`sparsify`), parallel trial cuts (`search_sparsify`) and swaps
(`swap_sparsify`), each a `Policy` of the one driver loop (`drive`) with its configuration."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from dmm import ProgramError
from dmm.train import Trainer, TrainState, stack_states, unstack_state

from .criteria import least_damage, regrow_gains, single_cut_losses, smallest_links
from .driver import Attempt, Inputs, PathLike, Policy, Session, SparsifyReport, drive
from .links import Link, links_mask, live_links
from .surgery import prune, regrow


def _links(pairs: Any) -> tuple[Link, ...]:
    return tuple((str(s), str(d)) for s, d in pairs)


def _grown(size: int, grow: float, max_cut: int) -> int:
    """The cut size after an accepted cut of `size` links: × `grow`, at least one more when growing, at most `max_cut`."""
    return min(max(int(size * grow), size + 1 if grow > 1 else size), max_cut)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CutSchedule:
    """The fields `SparsifyConfig` and `SearchConfig` share (keyword-only), validated once:

    - `tolerance`: a cut is acceptable when the data loss after recovery is at most this (a non-negative float).
    - `recover_steps`: training steps after each cut.
    - `cut`: links in the first cut; `grow`: factor applied after an accepted cut; `max_cut`: upper bound.
    - `min_links`: stop when this few links are left (counting protected ones).
    - `protect`: links never cut, ``(src, dst)`` pairs.
    - `max_steps`: training-step budget of the whole schedule (None: unlimited).
    - `l1`: penalty coefficient during the schedule (None: keep the state's).
    - `final_steps`: training steps after the schedule ends (polish the last good state).
    """

    tolerance: float
    recover_steps: int = 100
    cut: int = 1
    grow: float = 2.0
    max_cut: int = 1 << 30
    min_links: int = 0
    protect: tuple[Link, ...] = ()
    max_steps: int | None = None
    l1: float | None = None
    final_steps: int = 0

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not self.tolerance >= 0:
            raise ProgramError(f"{name}: tolerance must be non-negative, not {self.tolerance}")
        if self.recover_steps < 0 or self.cut < 1 or self.grow < 1 or self.max_cut < 1:
            raise ProgramError(f"{name}: need recover_steps >= 0, cut >= 1, grow >= 1, max_cut >= 1")
        object.__setattr__(self, "protect", _links(self.protect))


# ------------------------------------------------------------------------------------------ greedy (sparsify)
@dataclasses.dataclass(frozen=True, kw_only=True)
class SparsifyConfig(CutSchedule):
    """The schedule of `sparsify` (see the package docstring).

    - `tolerance`: a cut is accepted when the data loss after recovery is at most this (a non-negative float).
    - `recover_steps`: training steps after each cut; `max_recover_steps`, `improve`: keep recovering (in rounds of
      `recover_steps`, up to `max_recover_steps` in all) while the loss exceeds the tolerance but falls by at least
      the fraction `improve` per round.
    - `cut`: links cut in the first attempt; `grow`: factor applied after an accepted cut; `max_cut`: upper bound.
    - `min_links`: stop when this few links are left (counting protected ones).
    - `protect`: links never cut, ``(src, dst)`` pairs.
    - `max_steps`: training-step budget of the whole schedule (None: unlimited).
    - `final_steps`: training steps after the schedule ends (polish the last good state; kept only if it stays
      within tolerance).
    - `l1`: penalty coefficient during the schedule (None: keep the state's).
    - `criterion`: "weight" (cut the smallest abs(w)) or "loss" (cut the least damaging of the `candidates`
      smallest, each evaluated alone).
    """

    max_recover_steps: int = 0
    improve: float = 0.1
    criterion: str = "weight"
    candidates: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.criterion not in ("weight", "loss"):
            raise ProgramError(f"SparsifyConfig: criterion must be 'weight' or 'loss', not {self.criterion!r}")
        if self.candidates < 1:
            raise ProgramError("SparsifyConfig: candidates must be at least 1")
        object.__setattr__(self, "max_recover_steps", max(self.max_recover_steps, self.recover_steps))


class Greedy(Policy):
    """`sparsify`'s policy: cut a group, recover, accept or back off (halve the group; a single link that cannot
    be cut is critical until the next accepted cut)."""

    name = "sparsify"

    def __init__(self, config: SparsifyConfig) -> None:
        super().__init__(config)
        self.max_steps, self.cut, self.uncuttable = config.max_steps, config.cut, []

    @property
    def critical(self) -> list[Link]:
        return self.uncuttable

    def round(self, session: Session) -> Attempt | None:
        c, tr = self.config, session.trainer
        if not session.budget_left(c.recover_steps):
            return None
        live = live_links(session.state, tr.machine)
        if len(live) <= c.min_links:
            return None
        k, protect = min(self.cut, len(live) - c.min_links), list(c.protect) + self.uncuttable
        if c.criterion == "weight":
            chosen = smallest_links(tr, session.state, k, protect)
        else:
            chosen = least_damage(tr, session.state, k, protect, c.candidates, session.inputs, session.data)
        if not chosen:
            return None
        trial = prune(tr, session.state, [l for l, _ in chosen])
        loss_cut = session.evaluate(trial)
        after, last, used = loss_cut, np.inf, 0
        # recover; keep going (up to max_recover_steps) while the loss is above tolerance but still falling
        while used < c.max_recover_steps and session.budget_left(c.recover_steps) and (
            used == 0 or (after > c.tolerance and after < (1 - c.improve) * last)
        ):
            trial = session.fit(trial, c.recover_steps)
            used += c.recover_steps
            last, after = after, session.evaluate(trial)
        ok = bool(np.isfinite(after) and after <= c.tolerance)
        entry = {
            "step": int(trial.step), "cut": [[s, d, w] for (s, d), w in chosen], "loss_before": session.loss,
            "loss_cut": loss_cut, "loss_after": after, "limit": c.tolerance, "recover_steps": used, "accepted": ok,
            "links_left": len(live) - (len(chosen) if ok else 0),
        }
        message = (f"cut {len(chosen)} -> {entry['links_left']} links, loss {session.loss:.3g} -> {loss_cut:.3g} -> "
                   f"{after:.3g} ({used} steps) {'accepted' if ok else 'rejected'}")
        if ok:
            self.uncuttable, self.cut = [], _grown(self.cut, c.grow, c.max_cut)
        elif len(chosen) > 1:
            self.cut = max(len(chosen) // 2, 1)
        else:
            self.uncuttable.append(chosen[0][0])
            self.cut = 1
        return Attempt(entry, ok, trial, after, message)

    def final(self, session: Session) -> tuple[int, float]:
        return self.config.final_steps, max(self.config.tolerance, session.loss)


def sparsify(trainer: Trainer, state: TrainState, config: SparsifyConfig, inputs: Inputs = None, data: Any = None, *,
             checkpoint: PathLike = None, log: PathLike = None, progress: bool = False) -> tuple[TrainState, SparsifyReport]:
    """Run the adaptive pruning schedule `config` from `state` (see the package docstring).

    **Arguments:** `trainer`, `state`; `inputs`, `data` as for `Trainer.update`; `checkpoint`: where the last good
    state is saved after every accepted cut; `log`: a JSONL file receiving one line per attempt; `progress`: print
    one line per attempt to stderr.

    **Returns:** the last good state (its loss at most `tolerance`, unless no cut was ever accepted) and a
    `SparsifyReport`.
    """
    return drive(trainer, state, Greedy(config), inputs, data, checkpoint=checkpoint, log=log, progress=progress)


# ------------------------------------------------------------------------------------ parallel trial cuts (search)
@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchConfig(CutSchedule):
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

    recover_steps: int = 200
    ratchet: float | None = None
    trials: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ratchet is not None and not self.ratchet >= 1:
            raise ProgramError(f"SearchConfig: ratchet must be at least 1, not {self.ratchet}")
        if self.trials < 1 or self.recover_steps < 1:
            raise ProgramError("SearchConfig: need trials >= 1 and recover_steps >= 1")


def trial_sets(order: list[Link], size: int, trials: int) -> list[list[Link]]:
    """The cuts of one search round: groups of the `size`, size/2, size/4, ... best-ranked links of `order` (sizes
    > 1), then single links in rank order, `trials` cuts in all (fewer when fewer links are left)."""
    sets, g = [], min(size, len(order))
    while g > 1 and len(sets) < trials:
        sets.append(order[:g])
        g //= 2
    sets += [[l] for l in order[: trials - len(sets)]]
    return sets


class Search(Policy):
    """`search_sparsify`'s policy: rank by single-cut loss, recover `trials` cuts at once, keep the largest
    acceptable one (or mark the single links tried uncuttable and try the next ones)."""

    name = "search"

    def __init__(self, config: SearchConfig) -> None:
        super().__init__(config)
        self.max_steps, self.size, self.failed, self.lowest = config.max_steps, config.cut, set(), np.inf

    @property
    def critical(self) -> list[Link]:
        return sorted(self.failed)

    def round(self, session: Session) -> Attempt | None:
        c, tr = self.config, session.trainer
        m = tr.machine
        self.lowest = min(self.lowest, session.loss)
        if not session.budget_left(c.trials * c.recover_steps):
            return None
        live = live_links(session.state, m)
        if len(live) <= c.min_links:
            return None
        pool = [l for l in live if l not in c.protect and l not in self.failed]
        if not pool:
            return None
        # 1. loss-aware ranking of the candidates, each removed alone
        scores = single_cut_losses(tr, session.state, pool, session.inputs, session.data)
        order = [pool[i] for i in np.lexsort((np.abs([live[l] for l in pool]), scores))]
        # 2.-3. the round's trial cuts, recovered in parallel (padded to `trials` members: one compilation)
        sets = trial_sets(order, min(self.size, len(live) - c.min_links), c.trials)
        masks = [links_mask(m, s) for s in sets]
        masks += [masks[0]] * (c.trials - len(masks))
        trial = prune(tr, stack_states([session.state] * c.trials), {k: np.stack([mk[k] for mk in masks]) for k in masks[0]})
        loss_cut = session.evaluate_many(trial)[: len(sets)]
        trial = session.fit_many(trial, c.recover_steps)
        after = session.evaluate_many(trial)[: len(sets)]
        # 4. the acceptable trial that cut most, else the best one for the log
        limit = c.tolerance if c.ratchet is None else max(c.tolerance, c.ratchet * self.lowest)
        ok = [i for i in range(len(sets)) if np.isfinite(after[i]) and after[i] <= limit]
        best = max(ok, key=lambda i: (len(sets[i]), -after[i])) if ok else int(np.argmin(np.where(np.isfinite(after), after, np.inf)))
        chosen = sets[best]
        entry = {
            "step": int(session.state.step) + c.recover_steps, "cut": [[s, d, live[(s, d)]] for s, d in chosen],
            "loss_before": session.loss, "loss_cut": float(loss_cut[best]), "loss_after": float(after[best]),
            "limit": limit, "recover_steps": c.recover_steps, "accepted": bool(ok),
            "links_left": len(live) - (len(chosen) if ok else 0), "trials": [[len(s), float(a)] for s, a in zip(sets, after)],
        }
        message = (f"{len(sets)} trials, best cut {len(chosen)} -> {entry['links_left']} links, loss "
                   f"{session.loss:.3g} -> {entry['loss_after']:.3g} (limit {limit:.3g}) {'accepted' if ok else 'rejected'}")
        if ok:
            self.failed, self.size = set(), _grown(len(chosen), c.grow, c.max_cut)
            return Attempt(entry, True, unstack_state(trial, best), float(after[best]), message)
        self.failed |= {s[0] for s in sets if len(s) == 1}
        self.size = 1
        return Attempt(entry, False, None, session.loss, message)

    def final(self, session: Session) -> tuple[int, float]:
        return self.config.final_steps, session.loss


def search_sparsify(trainer: Trainer, state: TrainState, config: SearchConfig, inputs: Inputs = None, data: Any = None,
                    *, checkpoint: PathLike = None, log: PathLike = None,
                    progress: bool = False) -> tuple[TrainState, SparsifyReport]:
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
    if trainer.through_self is not None:
        raise ProgramError("search_sparsify: trainers that train through Self are not supported (use sparsify)")
    return drive(trainer, state, Search(config), inputs, data, checkpoint=checkpoint, log=log, progress=progress)


# --------------------------------------------------------------------------------- swaps (cut one, regrow one)
@dataclasses.dataclass(frozen=True)
class SwapConfig:
    """The schedule of `swap_sparsify` (see its docstring).

    - `tolerance`: the loss a network must stay within (swaps, free cuts and polishing), a non-negative float.
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
        object.__setattr__(self, "protect", _links(self.protect))


class Swap(Policy):
    """`swap_sparsify`'s policy: swap one link for a regrown one, then cut what became free; stop at the first
    round whose best swap does not lower the loss within the tolerance."""

    name = "swap"

    def __init__(self, config: SwapConfig, residuals: Any) -> None:
        super().__init__(config)
        self.residuals, self.rounds, self.stopped = residuals, 0, False

    def round(self, session: Session) -> Attempt | None:
        c, tr = self.config, session.trainer
        m = tr.machine
        if self.stopped or self.rounds == c.max_rounds:
            return None
        self.rounds += 1
        # 1. candidate swaps: each live link cut, the best regrowths at that state set to their optimum
        cands = []
        for cut_link in [l for l in live_links(session.state, m) if l not in c.protect]:
            cut = prune(tr, session.state, [cut_link])
            gains = [x for x in regrow_gains(tr, cut, self.residuals, session.inputs, session.data) if x[0] != cut_link]
            for link, _, w in gains[: c.regrow]:
                swapped = regrow(tr, cut, {link: w})
                after = session.evaluate(swapped)
                cands.append((after if np.isfinite(after) else np.inf, cut_link, link, swapped))
        if not cands:
            return None
        cands.sort(key=lambda x: x[0])
        chosen = cands[: c.trials]
        # 2. recover them in parallel (padded to `trials` members: one compilation)
        pad = [x[3] for x in chosen] + [chosen[0][3]] * (c.trials - len(chosen))
        trial = session.fit_many(stack_states(pad), c.recover_steps)
        rec = session.evaluate_many(trial)[: len(chosen)]
        loss = session.loss
        ok = [i for i in range(len(chosen)) if np.isfinite(rec[i]) and rec[i] <= c.tolerance and rec[i] < loss]
        entry = {"swaps": [[list(x[1]), list(x[2]), x[0], float(r)] for x, r in zip(chosen, rec)],
                 "loss_before": loss, "accepted": bool(ok)}
        if not ok:
            self.stopped = True
            return Attempt(entry, False, None, loss, f"{len(chosen)} trials, best {min(rec):.3g} -> rejected")
        # 3.-4. accept, then free cuts and polishing
        best = min(ok, key=lambda i: rec[i])
        state, loss = unstack_state(trial, best), float(rec[best])
        entry.update(cut=list(chosen[best][1]), regrown=list(chosen[best][2]))
        freed = []
        while live := [l for l in live_links(state, m) if l not in c.protect]:
            scores = single_cut_losses(tr, state, live, session.inputs, session.data)
            i = int(np.argmin(scores))
            if not scores[i] <= c.tolerance:
                break
            state, loss = prune(tr, state, [live[i]]), float(scores[i])
            freed.append(list(live[i]))
        if c.polish_steps:
            state, loss = session.polish(state, loss, c.polish_steps, c.tolerance)
        entry.update(freed=freed, loss_after=loss, links_left=len(live_links(state, m)))
        message = (f"{len(chosen)} trials, best {min(rec):.3g} -> accepted, {len(freed)} free cuts, "
                   f"{entry['links_left']} links, loss {loss:.3g}")
        return Attempt(entry, True, state, loss, message)


def swap_sparsify(trainer: Trainer, state: TrainState, residuals: Any, config: SwapConfig, inputs: Inputs = None,
                  data: Any = None, *, log: PathLike = None, progress: bool = False) -> tuple[TrainState, SparsifyReport]:
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
    links did lets them go. Arguments as in `sparsify` (no checkpoint); returns the final state and a
    `SparsifyReport` (one attempt entry per round).
    """
    return drive(trainer, state, Swap(config, residuals), inputs, data, log=log, progress=progress)
