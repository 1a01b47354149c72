"""The key/value memory neuron, and the wiring helper for every neuron whose state is a matrix stream.

A neuron type holds no state: a memory neuron's state is a matrix-kind output `state` that loops back to its own
input `state_in` through a hard weight-1 link of W (`add_with_state` makes it), so the whole memory is visible in
traces, editable and differentiable through time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from dmm import (
    NUMBER,
    Kind,
    Neuron,
    NeuronType,
    Program,
    ProgramError,
    make_type,
    neuron_type,
)

from .kinds import check_kind
from .mechanisms import mechanism as resolve


def add_with_state(program: Program, name: str, neuron: Neuron | NeuronType, *, initial: Mapping[str, Any] | None = None) -> None:
    """Add a neuron with a `state` output and a `state_in` input and link `state` -> `state_in` with a hard
    (non-trainable) weight 1, so the state carries over from cycle to cycle."""
    program.add(name, neuron, initial=initial)
    program.link(f"{name}.state", f"{name}.state_in", 1.0, trainable=False)


def memory_kind(key_kind: Kind, value_kind: Kind, capacity: int) -> Kind:
    """The state kind of `kv_memory`: (capacity, d_k + d_v + 1) rows [key | value | write stamp]."""
    return Kind(f"kv_memory_{capacity}x{key_kind.size + value_kind.size + 1}", (capacity, key_kind.size + value_kind.size + 1))


@neuron_type("kv_memory")
def kv_memory(
    key_kind: Kind,
    value_kind: Kind,
    capacity: int,
    scale: float | None = None,
    gated: bool = False,
    mechanism: str = "softmax",
    options: Mapping[str, Any] | tuple = (),
    heads: int = 1,
):
    """A key/value memory that appends the current key and value each cycle and attends over what it holds.

    Inputs `q`, `k` (`key_kind`, vectors (d_k,)), `v` (`value_kind`, (d_v,)), `state_in` (`memory_kind`, shape
    (C, d_k + d_v + 1), C = `capacity`), and with `gated` a `write` number; outputs `out` (`value_kind`) and
    `state`. Row i of the state is [key_i | value_i | s_i], where the stamp s_i > 0 marks a filled slot (0 = empty).
    Each cycle, unless `gated` and write ≤ 1/2, the row at argmin s (the first empty slot, else the oldest) becomes
    [k | v | max s + 1]; then, over the filled rows (the mask s > 0),

        out = Σ_i w_i value_i,   w = softmax(scale · K q) (max-subtracted, or the chosen mechanism),

    so a query attends over every pair written so far, the current one included (over the last C once full).
    With H = `heads`, per head: head h scores the h-th d_k/H columns of the stored keys against those of q and
    mixes the h-th d_v/H columns of the stored values (the state is the same); heads are concatenated.
    `scale` defaults to 1/√(d_k/H). Run for L ≤ C cycles, row t of the outputs equals row t of the causal
    `matrix_attention` (same heads, scale and mechanism) of the L tokens received. Gradients flow through the
    stored keys and values, not through the stamps or the write decision. Link `state` -> `state_in` with
    weight 1 (`add_with_state`).
    """
    where = "kv_memory"
    check_kind(key_kind, "key_kind", where, 1)
    check_kind(value_kind, "value_kind", where, 1)
    if not isinstance(capacity, int) or capacity < 1:
        raise ProgramError(f"{where}: capacity must be an int >= 1, not {capacity!r}")
    mech = resolve(mechanism, options, where)
    dk, dv = key_kind.size, value_kind.size
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1 or dk % heads or dv % heads:
        raise ProgramError(f"{where}: heads={heads!r} must be an int >= 1 dividing d_k={dk} and d_v={dv}")
    s = (dk // heads) ** -0.5 if scale is None else float(scale)

    def fn(p, x, ctx):
        mem = x["state_in"]
        stamp = jax.lax.stop_gradient(mem[:, -1])
        row = jnp.concatenate([x["k"], x["v"], (jnp.max(stamp) + 1.0)[None]])
        hit = jnp.arange(capacity) == jnp.argmin(stamp)
        if gated:
            hit = hit & (jax.lax.stop_gradient(x["write"]) > 0.5)
        mem = jnp.where(hit[:, None], row, mem)
        filled = mem[:, -1] > 0
        keys = mem[:, :dk].reshape(capacity, heads, dk // heads)
        values = mem[:, dk : dk + dv].reshape(capacity, heads, dv // heads)
        logits = s * jnp.einsum("chd,hd->hc", keys, x["q"].reshape(heads, dk // heads))  # (H, C)
        w = mech.weights(logits, jnp.broadcast_to(filled, logits.shape), ctx.key)
        return {"out": jnp.einsum("hc,chd->hd", w, values).reshape(dv), "state": mem}

    inputs = {"q": key_kind, "k": key_kind, "v": value_kind, **({"write": NUMBER} if gated else {})}
    inputs["state_in"] = memory_kind(key_kind, value_kind, capacity)
    return make_type(inputs, {"out": value_kind, "state": inputs["state_in"]}, fn=fn, stochastic=mech.stochastic)
