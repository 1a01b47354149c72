"""Attention neurons over ordinary streams and over matrix streams.

- `attention`: a query and n key/value pairs, each an ordinary input stream, so the network matrix W decides what
  is attended to (which outputs feed the keys and values, with what weights).
- `matrix_attention`: Q, K, V as (L × d) matrix-kind streams, single- or multi-head, optional causal mask; equal to
  `jax.nn.dot_product_attention` with the softmax mechanism.

Both take ``mechanism=`` ("softmax", "race", "oscillator", "rate" or a registered name) and ``options=`` (see
`attention.mechanisms`); softmax is computed in the max-subtracted form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from dmm import Kind, ProgramError, make_type, neuron_type

from .functional import dot_product_attention
from .kinds import check_kind
from .mechanisms import mechanism as resolve


@neuron_type("attention")
def attention(
    key_kind: Kind,
    value_kind: Kind,
    n: int = 2,
    scale: float | None = None,
    mechanism: str = "softmax",
    options: Mapping[str, Any] | tuple = (),
):
    """Attention of one query over n key/value input pairs.

    Inputs `q`, `k1`..`kn` (`key_kind`), `v1`..`vn` (`value_kind`); output `out` (`value_kind`):

        u_j = scale · ⟨q, k_j⟩,   w = softmax(u) (max-subtracted, or the chosen mechanism),   out = Σ_j w_j v_j

    with ⟨·,·⟩ summing over every entry of the key kind and `scale` defaulting to 1/√(key size).
    """
    where = "attention"
    check_kind(key_kind, "key_kind", where)
    check_kind(value_kind, "value_kind", where)
    if not isinstance(n, int) or n < 1:
        raise ProgramError(f"{where}: n must be an int >= 1, not {n!r}")
    mech = resolve(mechanism, options, where)
    s = key_kind.size**-0.5 if scale is None else float(scale)
    axes = tuple(range(1, 1 + len(key_kind.shape)))

    def fn(p, x, ctx):
        keys = jnp.stack([x[f"k{j}"] for j in range(1, n + 1)])
        values = jnp.stack([x[f"v{j}"] for j in range(1, n + 1)])
        w = mech.weights(s * jnp.sum(keys * x["q"], axis=axes), None, ctx.key)
        return {"out": jnp.tensordot(w, values, axes=1)}

    inputs = {"q": key_kind, **{f"k{j}": key_kind for j in range(1, n + 1)}, **{f"v{j}": value_kind for j in range(1, n + 1)}}
    return make_type(inputs, {"out": value_kind}, fn=fn, stochastic=mech.stochastic)


@neuron_type("matrix_attention")
def matrix_attention(
    q_kind: Kind,
    k_kind: Kind | None = None,
    v_kind: Kind | None = None,
    out_kind: Kind | None = None,
    heads: int = 1,
    causal: bool = False,
    scale: float | None = None,
    mechanism: str = "softmax",
    options: Mapping[str, Any] | tuple = (),
):
    """Scaled dot-product attention on matrix streams: Y = softmax(Q Kᵀ · scale [+ causal mask]) V, per head.

    Inputs `q` (`q_kind`, L_q × d_k), `k` (`k_kind`, L_k × d_k; default `q_kind`), `v` (`v_kind`, L_k × d_v;
    default `k_kind`); output `out` (L_q × d_v; `out_kind`, default `v_kind` when the shapes agree). Head h uses
    columns h·d_k/H : (h+1)·d_k/H of Q and K and the matching d_v/H columns of V; heads are concatenated.
    `scale` defaults to 1/√(d_k/H). With `causal`, row i attends to rows j ≤ i. With the softmax mechanism
    this equals `jax.nn.dot_product_attention` on (1, L, H, d/H) reshapes.
    """
    where = "matrix_attention"
    q_kind = check_kind(q_kind, "q_kind", where, 2)
    k_kind = check_kind(q_kind if k_kind is None else k_kind, "k_kind", where, 2)
    v_kind = check_kind(k_kind if v_kind is None else v_kind, "v_kind", where, 2)
    (lq, dk), (lk, dk2), (lv, dv) = q_kind.shape, k_kind.shape, v_kind.shape
    if dk2 != dk or lv != lk:
        raise ProgramError(
            f"{where}: shapes do not fit: q {q_kind.shape}, k {k_kind.shape}, v {v_kind.shape} "
            "(need q (L_q, d_k), k (L_k, d_k), v (L_k, d_v))"
        )
    if not isinstance(heads, int) or heads < 1 or dk % heads or dv % heads:
        raise ProgramError(f"{where}: heads={heads!r} must divide d_k={dk} and d_v={dv}")
    if out_kind is None:
        if v_kind.shape != (lq, dv):
            raise ProgramError(f"{where}: the output has shape {(lq, dv)}, not v_kind's {v_kind.shape}: give out_kind")
        out_kind = v_kind
    out_kind = check_kind(out_kind, "out_kind", where, 2)
    if out_kind.shape != (lq, dv):
        raise ProgramError(f"{where}: out_kind {out_kind!r} must have shape {(lq, dv)}")
    mech = resolve(mechanism, options, where)
    weights = None if mech.name == "softmax" else mech.weights

    def fn(p, x, ctx):
        w = None if weights is None else (lambda u, mask: weights(u, mask, ctx.key))
        return {"out": dot_product_attention(x["q"], x["k"], x["v"], heads=heads, causal=causal, scale=scale, weights=w)}

    return make_type({"q": q_kind, "k": k_kind, "v": v_kind}, {"out": out_kind}, fn=fn, stochastic=mech.stochastic)


@neuron_type("attention_weights")
def attention_weights(kind: Kind, scale: float = 1.0, mechanism: str = "softmax", options: Mapping[str, Any] | tuple = ()):
    """The attention weights alone: input `scores` and output `weights`, both of the vector kind `kind` (n,):

        weights = softmax(scale · scores) (max-subtracted), or the chosen mechanism's weights

    so a network can route candidate scores in and the weights out through W, and swap the mechanism.
    """
    where = "attention_weights"
    check_kind(kind, "kind", where, 1)
    mech = resolve(mechanism, options, where)
    s = float(scale)

    def fn(p, x, ctx):
        return {"weights": mech.weights(s * x["scores"], None, ctx.key)}

    return make_type({"scores": kind}, {"weights": kind}, fn=fn, stochastic=mech.stochastic)
