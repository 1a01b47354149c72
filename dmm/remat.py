"""Rematerialisation strategies: how a run's `lax.scan` trades memory for recomputation under `jax.grad`.

A strategy is a small frozen object with one method, ``scan(body, state, xs, steps)``, with the signature of
`jax.lax.scan` over `steps` cycles. It changes the memory and speed of the backward pass, never the values.
`Machine.run`, `dmm.run_batch` and `dmm.train.Trainer` take a strategy or its name (``"none"``, ``"step"``,
``"nested"``, ``"auto"``); ``"auto"`` is resolved by the machine (`Machine.resolve_remat`): nested with a Self
neuron, per-cycle checkpoints when a block's backend asks for them, else none.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from .errors import ProgramError


class Remat:
    """The strategy protocol: ``scan(body, state, xs, steps) -> (final_state, stacked_outputs)``."""

    name = "?"

    def scan(self, body: Callable, state: Any, xs: Any, steps: int) -> tuple[Any, Any]:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class NoRemat(Remat):
    """Keep every cycle's residuals (fastest, most memory)."""

    name = "none"

    def scan(self, body, state, xs, steps):
        return jax.lax.scan(body, state, xs, length=steps)


@dataclasses.dataclass(frozen=True)
class PerCycle(Remat):
    """Checkpoint each cycle (`jax.checkpoint` around the cycle): keeps only the state between cycles."""

    name = "step"

    def scan(self, body, state, xs, steps):
        return jax.lax.scan(jax.checkpoint(body), state, xs, length=steps)


@dataclasses.dataclass(frozen=True)
class Nested(Remat):
    """Two-level checkpointing: chunks of about sqrt(steps) cycles, each checkpointed as a whole, so the backward
    pass keeps about 2·sqrt(steps) states (for self-modifying runs, whose state holds the matrix)."""

    name = "nested"

    def scan(self, body, state, xs, steps):
        if steps < 4:
            return jax.lax.scan(body, state, xs, length=steps)
        k = math.isqrt(steps - 1) + 1
        q, r = divmod(steps, k)
        head = jax.tree_util.tree_map(lambda a: a[: q * k].reshape(q, k, *a.shape[1:]), xs)
        tail = jax.tree_util.tree_map(lambda a: a[q * k :], xs)
        chunk = jax.checkpoint(lambda s, x: jax.lax.scan(body, s, x, length=k))
        state, out = jax.lax.scan(chunk, state, head, length=q)
        out = jax.tree_util.tree_map(lambda a: a.reshape(q * k, *a.shape[2:]), out)
        if r:
            state, out_tail = jax.lax.scan(body, state, tail, length=r)
            out = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), out, out_tail)
        return state, out


@dataclasses.dataclass(frozen=True)
class Auto(Remat):
    """Resolved by each machine (`Machine.resolve_remat`); see the module docstring."""

    name = "auto"


STRATEGIES: dict[str, Remat] = {s.name: s for s in (Auto(), NoRemat(), PerCycle(), Nested())}


def as_remat(spec: str | Remat) -> Remat:
    """The strategy named by `spec` (or `spec` itself); an unknown name raises `ProgramError`."""
    if isinstance(spec, Remat):
        return spec
    if isinstance(spec, str) and spec in STRATEGIES:
        return STRATEGIES[spec]
    raise ProgramError(f"remat must be a dmm.remat strategy or one of {tuple(STRATEGIES)}, not {spec!r}")
