"""Higher-order attention: attention over the rows of the network matrix, emitting a matrix delta.

The neuron reads the running network matrix from Self (a NETWORK-kind input linked from Self's output) and writes
a NETWORK-kind delta (linked into Self's delta): fast weights on the DMM's own connectivity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from dmm import NETWORK, NUMBER, ProgramError, make_type, neuron_type

from .mechanisms import mechanism as resolve


def _rows(names: Any, what: str, where: str) -> tuple[str, ...]:
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ProgramError(f"{where}: {what} must be a non-empty tuple of input port names, not {names!r}")
    return names


@neuron_type("row_attention")
def row_attention(
    kind: str,
    queries: tuple[str, ...],
    memories: tuple[str, ...],
    beta: float = 8.0,
    mechanism: str = "softmax",
    options: Mapping[str, Any] | tuple = (),
):
    """Attention over rows of W: each query row moves to the attention-weighted mix of the memory rows.

    Inputs `net` (NETWORK: the running matrix, from Self.out with weight 1) and `gate` (number); output `delta`
    (NETWORK, into Self.delta). Rows are input ports of kind `kind` (each row of the block W_kind is the fan-in of
    one input port). With ξ_i the row of query port i and x_j the row of memory port j,

        w_i = softmax(β ⟨ξ_i, x_j⟩ over j),   Δξ_i = gate · (Σ_j w_ij x_j - ξ_i)

    and zero elsewhere: one modern-Hopfield retrieval step (Ramsauer+ 2020, ξ ← X softmax(β Xᵀξ)) applied to the
    network's own wiring, so a damaged fan-in is pulled to the stored pattern it is closest to. The row names are
    checked against `ctx.network` (the program's layout) when the program is compiled.
    """
    where = "row_attention"
    if not isinstance(kind, str):
        raise ProgramError(f"{where}: kind must be a kind name (a string), not {kind!r}")
    queries, memories = _rows(queries, "queries", where), _rows(memories, "memories", where)
    if not isinstance(beta, (int, float)) or isinstance(beta, bool):
        raise ProgramError(f"{where}: beta must be a number, not {beta!r}")
    mech = resolve(mechanism, options, where)

    def fn(p, x, ctx):
        net = ctx.network
        if kind not in net.rows:
            raise ProgramError(f"{where}: the network has no block of kind {kind!r}; kinds: {list(net.rows)}")
        rows = net.rows[kind]
        missing = [r for r in queries + memories if r not in rows]
        if missing:
            raise ProgramError(f"{where}: {missing} are not input ports of kind {kind!r}")
        qi = jnp.asarray([rows.index(r) for r in queries])
        mi = jnp.asarray([rows.index(r) for r in memories])
        w = net.block(x["net"], kind)
        xi, mem = w[qi], w[mi]
        weights = mech.weights(beta * (xi @ mem.T), None, ctx.key)
        blocks = {name: jnp.zeros((m, n), w.dtype) for name, m, n, _ in net.blocks}
        blocks[kind] = blocks[kind].at[qi].set(x["gate"] * (weights @ mem - xi))
        return {"delta": net.flatten(blocks, jnp)}

    return make_type({"net": NETWORK, "gate": NUMBER}, {"delta": NETWORK}, fn=fn, stochastic=mech.stochastic)
