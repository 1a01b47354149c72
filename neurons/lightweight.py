"""The Self neuron of the lightweight pure DMMs: a Self whose chosen rows of W are held fixed.

In the author's lightweight pure DMMs (`anhinga/fluid: Lightweight_Pure_DMMs`; `docs/semantics.md` §4.3) every stream
is the network matrix and Self's output is out0 = in0 + in1 on rows ≥ 1, with row 0 (Self's own accumulator row)
forced to e_0. `pinned_self` is that neuron for any program: the rows of the listed input ports ignore Self's delta,
so with the hard weight-1 link out -> accum they keep their W_0 values however the deltas reach them.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from dmm import NETWORK, NetworkLayout, ProgramError, make_type, neuron_type


def _row_mask(network: NetworkLayout, rows: Sequence[str]) -> np.ndarray:
    """1 at every entry of the network value that lies in one of `rows` (input ports), else 0."""
    mask = np.zeros(network.kind.shape)
    for r in rows:
        hits = [(name, n, off) for name, _, n, off in network.blocks if r in network.rows[name]]
        if not hits:
            raise ProgramError(f"pinned_self: {r!r} is not an input port of the program (rows of W)")
        name, n, off = hits[0]
        i = network.rows[name].index(r)
        if len(network.kind.shape) == 2:
            mask[i, :] = 1.0
        else:
            mask[off + i * n : off + (i + 1) * n] = 1.0
    return mask


@neuron_type("pinned_self")
def pinned_self(rows: Sequence[str] = ("self.accum",)):
    """Self with pinned rows: y.out = x.accum + (1 − P) ⊙ x.delta, P = 1 on the rows of W of the input ports `rows`
    ("neuron.port" names), 0 elsewhere.

    With its hard weight-1 link out -> accum, W_c = W_{c-1} + (1 − P) ⊙ Σ_u W_{c-1}[Self.delta, u]·Y_{c-1}[u]: the
    pinned rows keep their W_0 values. Pinning Self's own accumulator row (the default, for a Self neuron named
    "self") protects W[Self.accum, Self.out] = 1, as the lightweight pure DMMs force row 0 of W to e_0.
    """
    rows = tuple(rows)
    if not rows or not all(isinstance(r, str) for r in rows):
        raise ProgramError(f"pinned_self: rows must be a non-empty tuple of input port names, not {rows!r}")

    def fn(p, x, ctx):
        keep = jnp.asarray(1.0 - _row_mask(ctx.network, rows), x["delta"].dtype)
        return {"out": x["accum"] + keep * x["delta"]}

    return make_type({"accum": NETWORK, "delta": NETWORK}, {"out": NETWORK}, fn=fn, role="self")
