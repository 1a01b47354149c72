"""Fast-weight and self-referential neurons, each with its state as a matrix stream.

- `linear_attention`: causal linear attention in recurrent form (state [S | z]); `linear_matrix_attention` is the
  parallel form on (L × d) matrix streams, and the two are equal token by token.
- `delta_rule`: the delta-rule fast-weight programmer (Schlag, Irie & Schmidhuber 2021).
- `srwm`: the modern self-referential weight matrix (Irie, Schlag, Csordás & Schmidhuber 2022).

Wire the state with `attention.add_with_state` (a hard weight-1 link `state` -> `state_in`).
"""

from __future__ import annotations

import jax
import numpy as np

from dmm import NUMBER, Kind, Neuron, ProgramError, make_type, neuron_type

from . import functional as F
from .kinds import check_kind


def _check_eps(eps: float, where: str) -> None:
    if not isinstance(eps, (int, float)) or eps < 0:
        raise ProgramError(f"{where}: eps must be a non-negative number, not {eps!r}")


@neuron_type("linear_attention")
def linear_attention(
    key_kind: Kind, value_kind: Kind, feature: str = "elu1", nu: int = 1, eps: float = 1e-6, gated: bool = False
):
    """Causal linear attention, recurrent form (Katharopoulos+ 2020), one token per cycle.

    Inputs `q`, `k` (`key_kind`, (d_k,)), `v` (`value_kind`, (d_v,)), [`write` if `gated`], `state_in`
    ((d_φ, d_v + 1) = [S | z]); outputs `out` (`value_kind`) and `state`. With g = write (1 if not gated):

        S ← S + g φ(k) vᵀ,   z ← z + g φ(k),   out = Sᵀφ(q) / (zᵀφ(q) + eps)

    φ = `feature` ("elu1" = elu + 1, "dpfp" with ν = `nu`, "identity"). The state is constant in size.
    """
    where = "linear_attention"
    check_kind(key_kind, "key_kind", where, 1)
    check_kind(value_kind, "value_kind", where, 1)
    _check_eps(eps, where)
    phi, dim = F.feature_map(feature, nu, where)
    state = Kind(f"linear_attention_{dim(key_kind.size)}x{value_kind.size + 1}", (dim(key_kind.size), value_kind.size + 1))

    def fn(p, x, ctx):
        new, y = F.linear_attention_step(x["state_in"], x["q"], x["k"], x["v"], phi=phi, eps=eps, write=x["write"] if gated else 1.0)
        return {"out": y, "state": new}

    inputs = {"q": key_kind, "k": key_kind, "v": value_kind, **({"write": NUMBER} if gated else {}), "state_in": state}
    return make_type(inputs, {"out": value_kind, "state": state}, fn=fn)


@neuron_type("linear_matrix_attention")
def linear_matrix_attention(
    q_kind: Kind, v_kind: Kind, causal: bool = True, feature: str = "elu1", nu: int = 1, eps: float = 1e-6
):
    """Linear attention, parallel form, on matrix streams: Y = (A V) / (A 1 + eps), A = φ(Q)φ(K)ᵀ (lower
    triangle if `causal`).

    Inputs `q`, `k` (`q_kind`, (L, d_k)), `v` (`v_kind`, (L, d_v)); output `out` (`v_kind`).
    """
    where = "linear_matrix_attention"
    check_kind(q_kind, "q_kind", where, 2)
    check_kind(v_kind, "v_kind", where, 2)
    if q_kind.shape[0] != v_kind.shape[0]:
        raise ProgramError(f"{where}: q_kind {q_kind.shape} and v_kind {v_kind.shape} need the same length L")
    _check_eps(eps, where)
    phi, _ = F.feature_map(feature, nu, where)

    def fn(p, x, ctx):
        return {"out": F.linear_attention(x["q"], x["k"], x["v"], phi=phi, causal=causal, eps=eps)}

    return make_type({"q": q_kind, "k": q_kind, "v": v_kind}, {"out": v_kind}, fn=fn)


@neuron_type("delta_rule")
def delta_rule(key_kind: Kind, value_kind: Kind, feature: str = "elu1", nu: int = 1, gated: bool = False):
    """Delta-rule fast-weight programmer (Schlag, Irie & Schmidhuber 2021), one token per cycle.

    Inputs `q`, `k` (`key_kind`), `v` (`value_kind`), `beta` (number: the learning-rate logit, usually
    w_βᵀx + b routed by W), [`write` if `gated`], `state_in` (the fast weights W, (d_v, d_φ)); outputs `out`
    and `state`. With k̂ = φ(k)/Σφ(k), q̂ = φ(q)/Σφ(q), g = write (1 if not gated):

        v̄ = W k̂,   W ← W + g σ(β) (v - v̄) ⊗ k̂,   out = W q̂

    Unlike the sum rule (linear attention), it can overwrite the value stored under a repeated key.
    """
    where = "delta_rule"
    check_kind(key_kind, "key_kind", where, 1)
    check_kind(value_kind, "value_kind", where, 1)
    phi, dim = F.feature_map(feature, nu, where)
    state = Kind(f"fast_weights_{value_kind.size}x{dim(key_kind.size)}", (value_kind.size, dim(key_kind.size)))

    def fn(p, x, ctx):
        new, y = F.delta_rule_step(x["state_in"], x["q"], x["k"], x["v"], x["beta"], phi=phi, write=x["write"] if gated else 1.0)
        return {"out": y, "state": new}

    inputs = {"q": key_kind, "k": key_kind, "v": value_kind, "beta": NUMBER, **({"write": NUMBER} if gated else {})}
    inputs["state_in"] = state
    return make_type(inputs, {"out": value_kind, "state": state}, fn=fn)


def srwm_kind(in_kind: Kind, out_kind: Kind, rates: int = 4) -> Kind:
    """The state kind of `srwm`: (d_out + 2·d_in + rates, d_in)."""
    d = in_kind.size
    return Kind(f"srwm_{out_kind.size + 2 * d + rates}x{d}", (out_kind.size + 2 * d + rates, d))


@neuron_type("srwm")
def srwm_type(in_kind: Kind, out_kind: Kind, rates: int = 4):
    """Modern self-referential weight matrix (Irie+ 2022), one token per cycle.

    Input `x` (`in_kind`, (d,)) and `state_in` (ΔW, `srwm_kind`); outputs `y` (`out_kind`) and `state`. The
    weight matrix in force is W_{t-1} = W_0 + ΔW_{t-1}, W_0 the trainable parameter `w0`; it generates its own
    update from its own outputs:

        (y, q, k, β) = W_{t-1} x,   v = W_{t-1} softmax(q),   v̄ = W_{t-1} softmax(k),
        ΔW_t = ΔW_{t-1} + σ(β) (v - v̄) ⊗ softmax(k)

    with one learning rate (`rates` = 1) or one per row block y, q, k, β (`rates` = 4, the official code).
    """
    where = "srwm"
    check_kind(in_kind, "in_kind", where, 1)
    check_kind(out_kind, "out_kind", where, 1)
    if rates not in (1, 4):
        raise ProgramError(f"{where}: rates must be 1 or 4, not {rates!r}")
    state = srwm_kind(in_kind, out_kind, rates)

    def fn(p, x, ctx):
        w = p["w0"] + x["state_in"]
        new, y = F.srwm_step(w, x["x"], d_out=out_kind.size, rates=rates)
        return {"y": y, "state": new - p["w0"]}

    return make_type(
        {"x": in_kind, "state_in": state}, {"y": out_kind, "state": state}, fn=fn,
        defaults={"w0": np.zeros(state.shape)}, trainable=("w0",),
    )


def srwm(in_kind: Kind, out_kind: Kind, rates: int = 4, *, w0=None, key: jax.Array | None = None) -> Neuron:
    """An SRWM neuron. `w0` gives the initial matrix W_0; otherwise `key` draws W_0 ~ N(0, 1/d_in) (the official
    initialisation); with neither, W_0 = 0."""
    t = srwm_type(in_kind, out_kind, rates)
    shape = t.defaults["w0"].shape
    if w0 is None and key is not None:
        w0 = np.asarray(jax.random.normal(key, shape)) / np.sqrt(in_kind.size)
    return Neuron(t, {} if w0 is None else {"w0": np.asarray(w0, np.float64)})
