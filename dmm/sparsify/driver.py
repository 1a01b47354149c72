"""The one driver loop of every sparsification schedule.

A schedule is a `Policy`: each call of its `round` tries something on the last good network (a `Session` gives it
the trainer, the data and the step budget) and returns an `Attempt` (or None to stop). `drive` holds what every
schedule shares: the L1 override, the check of the protected links, the timer, the report, the JSONL log, the
progress line, the checkpoint of every accepted network and the final polish.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from dmm.files import save_checkpoint
from dmm.train import MetricsLog, Trainer, TrainState

from .links import Link, check_links, live_links

Inputs = Mapping[str, Any] | None
"""External inputs {output stream: array (steps, *kind.shape)}, as for `Trainer.update` (None: none)."""
PathLike = str | os.PathLike | None
"""A file path (None: no file)."""


@dataclasses.dataclass
class SparsifyReport:
    """What a sparsification schedule did.

    - `attempts`: one dict per attempt (round), as the schedule logs it (`sparsify`: step, links cut with weights,
      loss_before, loss_cut, loss_after, limit (the tolerance it was held to), recover_steps, accepted, links_left).
    - `critical`: links found uncuttable (and protected from then on), ``(src, dst)`` pairs.
    - `links`: int, live links at the end; `loss`: float, the final data loss.
    - `steps`: int, training steps spent (every trial's); `seconds`: float, wall time.
    """

    attempts: list[dict] = dataclasses.field(default_factory=list)
    critical: list[Link] = dataclasses.field(default_factory=list)
    links: int = 0
    loss: float = float("nan")
    steps: int = 0
    seconds: float = 0.0


class Attempt(NamedTuple):
    """What one round of a schedule did: `entry` (the dict logged and kept in the report), `accepted` (bool),
    `state` and `loss` (float) of the network it leads to when accepted (else the state may be None), and
    `message` (the progress line, without the schedule's name)."""

    entry: dict
    accepted: bool
    state: TrainState | None
    loss: float
    message: str


class Session:
    """The last good network of a running schedule and the means to train and evaluate variants of it.

    **Arguments:** `trainer`; `state` (the starting `TrainState`); `inputs`, `data` as for `Trainer.update`;
    `max_steps` (int or None): the training-step budget.

    **Attributes:** `state`, `loss` (float: its data loss), `spent` (int: training steps so far).
    """

    def __init__(self, trainer: Trainer, state: TrainState, inputs: Inputs, data: Any, max_steps: int | None) -> None:
        self.trainer, self.inputs, self.data, self.max_steps = trainer, inputs, data, max_steps
        self.state, self.loss, self.spent = state, self.evaluate(state), 0

    def budget_left(self, n: int) -> bool:
        """Whether `n` more training steps fit in the budget."""
        return self.max_steps is None or self.spent + n <= self.max_steps

    def evaluate(self, state: TrainState) -> float:
        """The data loss of `state`."""
        return float(self.trainer.evaluate(state, self.inputs, self.data).loss)

    def evaluate_many(self, states: TrainState) -> np.ndarray:
        """The data losses of K stacked states, float64 (K,), NaN where non-finite."""
        return self.trainer.evaluate_many(states, self.inputs, self.data)

    def fit(self, state: TrainState, n: int, *, progress: bool = False) -> TrainState:
        """`state` after `n` training steps (counted as spent)."""
        state, _ = self.trainer.fit(state, n, self.inputs, self.data, progress=progress)
        self.spent += n
        return state

    def fit_many(self, states: TrainState, n: int) -> TrainState:
        """K stacked states after `n` training steps each (K·n counted as spent)."""
        states, _ = self.trainer.fit_many(states, n, self.inputs, self.data)
        self.spent += int(np.shape(states.step)[0]) * n
        return states

    def polish(self, state: TrainState, loss: float, n: int, limit: float, *, progress: bool = False):
        """Train `state` (of loss `loss`) `n` more steps; ``(polished, its loss)`` if that loss is finite and at most
        `limit`, else ``(state, loss)``."""
        polished = self.fit(state, n, progress=progress)
        after = self.evaluate(polished)
        return (polished, after) if np.isfinite(after) and after <= limit else (state, loss)


class Policy:
    """A schedule for `drive`.

    - `name`: the word that starts its progress lines.
    - `config`: its configuration (with `protect`, ``(src, dst)`` pairs never cut, and `l1`, None or the penalty
      to train with).
    - `max_steps`: the training-step budget (None: unlimited).
    - `critical`: the links found uncuttable (for the report).
    """

    name = "?"
    max_steps: int | None = None

    def __init__(self, config: Any) -> None:
        self.config = config

    @property
    def critical(self) -> Sequence[Link]:
        """The ``(src, dst)`` links found uncuttable so far (none by default)."""
        return []

    def round(self, session: Session) -> Attempt | None:
        """Try one round on ``session.state``; None to stop."""
        raise NotImplementedError

    def final(self, session: Session) -> tuple[int, float]:
        """The final polish: (training steps, the loss the polished network must stay within)."""
        return 0, np.inf


def drive(trainer: Trainer, state: TrainState, policy: Policy, inputs: Inputs = None, data: Any = None, *,
          checkpoint: PathLike = None, log: PathLike = None, progress: bool = False) -> tuple[TrainState, SparsifyReport]:
    """Run `policy` from `state` until its `round` returns None, then its final polish (within the budget).

    **Arguments:** `trainer`, `state`; `inputs`, `data` as for `Trainer.update`; `checkpoint`: where the last good
    state is saved after every accepted round; `log`: a JSONL file receiving one line per attempt; `progress`:
    print one line per attempt to stderr.

    **Returns:** the last good state and a `SparsifyReport`.
    """
    check_links(trainer.machine, policy.config.protect)
    t0 = time.perf_counter()
    if policy.config.l1 is not None:
        state = state._replace(l1=jnp.asarray(policy.config.l1, state.l1.dtype))
    session = Session(trainer, state, inputs, data, policy.max_steps)
    report = SparsifyReport()
    logger = MetricsLog(log) if log is not None else None
    try:
        while (attempt := policy.round(session)) is not None:
            report.attempts.append(attempt.entry)
            if logger is not None:
                logger.write(**attempt.entry)
            if progress:
                sys.stderr.write(f"{policy.name}: {attempt.message}\n")
            if attempt.accepted:
                session.state, session.loss = attempt.state, attempt.loss
                if checkpoint is not None:
                    save_checkpoint(checkpoint, session.state, {"links": attempt.entry["links_left"], "loss": attempt.loss})
        steps, limit = policy.final(session)
        if steps and session.budget_left(steps):
            session.state, session.loss = session.polish(session.state, session.loss, steps, limit, progress=progress)
    finally:
        if logger is not None:
            logger.close()
    report.critical = list(policy.critical)
    report.links = len(live_links(session.state, trainer.machine))
    report.loss = session.loss
    report.steps = session.spent
    report.seconds = time.perf_counter() - t0
    return session.state, report
