"""Fast-weight and self-referential neurons, each with its state as a matrix stream.

- `linear_attention`: causal linear attention in recurrent form (state [S | z]); `linear_matrix_attention` is the
  parallel form on (L × d) matrix streams, and the two are equal token by token.
- `delta_rule`: the delta-rule fast-weight programmer (Schlag, Irie & Schmidhuber 2021), one token per cycle;
  `delta_matrix_attention` is its whole-sequence form on matrix streams.
- `srwm`: the modern self-referential weight matrix (Irie, Schlag, Csordás & Schmidhuber 2022), one token per
  cycle; `srwm_matrix` is its whole-sequence form.

Each takes ``heads=H`` (see `attention.functional`: per-head column blocks, head-major stacked state); the token
form run for L cycles equals the sequence form's rows. Wire a token form's state with `attention.add_with_state` (a
hard weight-1 link `state` -> `state_in`); `attention.mixer` selects either form by name.
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


def check_heads(heads: int, widths: dict[str, int], where: str) -> int:
    """`heads` if it is an int >= 1 dividing every width in `widths` (name -> width); otherwise raise
    `dmm.ProgramError` naming `where` and the width it does not divide."""
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
        raise ProgramError(f"{where}: heads must be an int >= 1, not {heads!r}")
    for what, d in widths.items():
        if d % heads:
            raise ProgramError(f"{where}: heads={heads} must divide {what}={d}")
    return heads


def _matrix_pair(a: Kind, b: Kind, where: str, names: tuple[str, str] = ("q_kind", "v_kind")) -> tuple[int, int, int]:
    """(L, d_a, d_b) of two (L, d) matrix kinds; `dmm.ProgramError` naming `where` and the argument otherwise."""
    check_kind(a, names[0], where, 2)
    check_kind(b, names[1], where, 2)
    if a.shape[0] != b.shape[0]:
        raise ProgramError(f"{where}: {names[0]} {a.shape} and {names[1]} {b.shape} need the same length L")
    return a.shape[0], a.shape[1], b.shape[1]


def linear_state_kind(key_kind: Kind, value_kind: Kind, feature: str = "elu1", nu: int = 1, heads: int = 1) -> Kind:
    """The state kind of `linear_attention`: the heads' [S_h | z_h] stacked, (H·d_φh, d_v/H + 1) with
    d_φh = dim φ(d_k/H) ((d_φ, d_v + 1) for one head)."""
    where = "linear_attention"
    check_heads(heads, {"d_k": key_kind.size, "d_v": value_kind.size}, where)
    _, dim = F.feature_map(feature, nu, where)
    rows, cols = heads * dim(key_kind.size // heads), value_kind.size // heads + 1
    return Kind(f"linear_attention_{rows}x{cols}", (rows, cols))


def fast_weights_kind(key_kind: Kind, value_kind: Kind, feature: str = "elu1", nu: int = 1, heads: int = 1) -> Kind:
    """The state kind of `delta_rule`: the heads' fast weights W_h (d_v/H, d_φh) stacked, (d_v, d_φh) with
    d_φh = dim φ(d_k/H)."""
    where = "delta_rule"
    check_heads(heads, {"d_k": key_kind.size, "d_v": value_kind.size}, where)
    _, dim = F.feature_map(feature, nu, where)
    cols = dim(key_kind.size // heads)
    return Kind(f"fast_weights_{value_kind.size}x{cols}", (value_kind.size, cols))


def beta_kind(heads: int = 1, length: int | None = None) -> Kind:
    """The kind of the delta rule's learning-rate logits: one per head, `dmm.NUMBER` for one head in the token
    form, (H,) for H heads; (L, H) in the sequence form (`length` L)."""
    if length is None:
        return NUMBER if heads == 1 else Kind(f"beta_{heads}", (heads,))
    return Kind(f"beta_{length}x{heads}", (length, heads))


@neuron_type("linear_attention")
def linear_attention(
    key_kind: Kind,
    value_kind: Kind,
    feature: str = "elu1",
    nu: int = 1,
    eps: float = 1e-6,
    gated: bool = False,
    heads: int = 1,
):
    """Causal linear attention, recurrent form (Katharopoulos+ 2020), one token per cycle.

    Inputs `q`, `k` (`key_kind`, (d_k,)), `v` (`value_kind`, (d_v,)), [`write` if `gated`], `state_in`
    ((d_φ, d_v + 1) = [S | z]); outputs `out` (`value_kind`) and `state`. With g = write (1 if not gated):

        S ← S + g φ(k) vᵀ,   z ← z + g φ(k),   out = Sᵀφ(q) / (zᵀφ(q) + eps)

    φ = `feature` ("elu1" = elu + 1, "dpfp" with ν = `nu`, "identity"); the division by zᵀφ(q) + eps is the
    sum normalisation (out = Σ_j a_j v_j / (Σ_j a_j + eps), a_j = φ(q)·φ(k_j)). With H = `heads`, per head on the
    h-th d_k/H and d_v/H columns, the state stacking the heads' [S_h | z_h] (`linear_state_kind`). The state is
    constant in size.
    """
    where = "linear_attention"
    check_kind(key_kind, "key_kind", where, 1)
    check_kind(value_kind, "value_kind", where, 1)
    _check_eps(eps, where)
    phi, _ = F.feature_map(feature, nu, where)
    state = linear_state_kind(key_kind, value_kind, feature, nu, heads)

    def fn(p, x, ctx):
        new, y = F.linear_attention_step(
            x["state_in"], x["q"], x["k"], x["v"], phi=phi, eps=eps, write=x["write"] if gated else 1.0, heads=heads
        )
        return {"out": y, "state": new}

    inputs = {"q": key_kind, "k": key_kind, "v": value_kind, **({"write": NUMBER} if gated else {}), "state_in": state}
    return make_type(inputs, {"out": value_kind, "state": state}, fn=fn)


@neuron_type("linear_matrix_attention")
def linear_matrix_attention(
    q_kind: Kind,
    v_kind: Kind,
    causal: bool = True,
    feature: str = "elu1",
    nu: int = 1,
    eps: float = 1e-6,
    heads: int = 1,
):
    """Linear attention, parallel form, on matrix streams: Y = (A V) / (A 1 + eps), A = φ(Q)φ(K)ᵀ (lower
    triangle if `causal`), per head with H = `heads` (head h: the h-th d_k/H columns of Q, K and d_v/H of V;
    heads concatenated). φ and eps as `linear_attention`; with `causal` row t equals that neuron's output at token t.

    Inputs `q`, `k` (`q_kind`, (L, d_k)), `v` (`v_kind`, (L, d_v)); output `out` (`v_kind`).
    """
    where = "linear_matrix_attention"
    _, dk, dv = _matrix_pair(q_kind, v_kind, where)
    check_heads(heads, {"d_k": dk, "d_v": dv}, where)
    _check_eps(eps, where)
    phi, _ = F.feature_map(feature, nu, where)

    def fn(p, x, ctx):
        return {"out": F.linear_attention(x["q"], x["k"], x["v"], phi=phi, causal=causal, eps=eps, heads=heads)}

    return make_type({"q": q_kind, "k": q_kind, "v": v_kind}, {"out": v_kind}, fn=fn)


@neuron_type("delta_rule")
def delta_rule(key_kind: Kind, value_kind: Kind, feature: str = "elu1", nu: int = 1, gated: bool = False, heads: int = 1):
    """Delta-rule fast-weight programmer (Schlag, Irie & Schmidhuber 2021), one token per cycle.

    Inputs `q`, `k` (`key_kind`), `v` (`value_kind`), `beta` (the learning-rate logit, usually w_βᵀx + b routed
    by W: a number for one head, `beta_kind(H)` = (H,), one per head, for H = `heads`), [`write` if `gated`],
    `state_in` (the fast weights W, (d_v, d_φ)); outputs `out` and `state`. With k̂ = φ(k)/Σφ(k),
    q̂ = φ(q)/Σφ(q) (sum normalisation), g = write (1 if not gated):

        v̄ = W k̂,   W ← W + g σ(β) (v - v̄) ⊗ k̂,   out = W q̂

    per head with `heads` > 1 (head h: the h-th d_k/H columns of q, k, d_v/H of v, its own β_h and W_h; the
    state stacks the W_h, `fast_weights_kind`). Unlike the sum rule (linear attention), it can overwrite the
    value stored under a repeated key.
    """
    where = "delta_rule"
    check_kind(key_kind, "key_kind", where, 1)
    check_kind(value_kind, "value_kind", where, 1)
    phi, _ = F.feature_map(feature, nu, where)
    state = fast_weights_kind(key_kind, value_kind, feature, nu, heads)

    def fn(p, x, ctx):
        new, y = F.delta_rule_step(
            x["state_in"], x["q"], x["k"], x["v"], x["beta"], phi=phi, write=x["write"] if gated else 1.0, heads=heads
        )
        return {"out": y, "state": new}

    inputs = {"q": key_kind, "k": key_kind, "v": value_kind, "beta": beta_kind(heads), **({"write": NUMBER} if gated else {})}
    inputs["state_in"] = state
    return make_type(inputs, {"out": value_kind, "state": state}, fn=fn)


@neuron_type("delta_matrix_attention")
def delta_matrix_attention(q_kind: Kind, v_kind: Kind, feature: str = "elu1", nu: int = 1, heads: int = 1):
    """The delta rule over a whole sequence on matrix streams (causal by construction): row t of the output is
    what `delta_rule` outputs at token t, starting from zero fast weights,

        v̄_t = W_{t-1} k̂_t,   W_t = W_{t-1} + σ(β_t) (v_t - v̄_t) ⊗ k̂_t,   out_t = W_t q̂_t,   W_0 = 0

    with k̂ = φ(k)/Σφ(k), q̂ = φ(q)/Σφ(q), per head (H = `heads`), computed by a `lax.scan` over the rows.

    Inputs `q`, `k` (`q_kind`, (L, d_k)), `v` (`v_kind`, (L, d_v)), `beta` (`beta_kind(H, L)` = (L, H): row t
    holds the heads' learning-rate logits); output `out` (`v_kind`).
    """
    where = "delta_matrix_attention"
    length, dk, dv = _matrix_pair(q_kind, v_kind, where)
    check_heads(heads, {"d_k": dk, "d_v": dv}, where)
    phi, _ = F.feature_map(feature, nu, where)

    def fn(p, x, ctx):
        _, y = F.delta_rule_sequence(x["q"], x["k"], x["v"], x["beta"], phi=phi, heads=heads)
        return {"out": y}

    inputs = {"q": q_kind, "k": q_kind, "v": v_kind, "beta": beta_kind(heads, length)}
    return make_type(inputs, {"out": v_kind}, fn=fn)


def _srwm_shape(d_in: int, d_out: int, rates: int, heads: int, where: str) -> tuple[int, int]:
    if rates not in (1, 4):
        raise ProgramError(f"{where}: rates must be 1 or 4, not {rates!r}")
    check_heads(heads, {"d_in": d_in, "d_out": d_out}, where)
    dh = d_in // heads
    return heads * (d_out // heads + 2 * dh + rates), dh


def srwm_kind(in_kind: Kind, out_kind: Kind, rates: int = 4, heads: int = 1) -> Kind:
    """The state kind of `srwm` (and the shape of its W_0): the heads' matrices stacked,
    (H·(d_out/H + 2·d_in/H + rates), d_in/H); (d_out + 2·d_in + rates, d_in) for one head. Vector kinds (the
    token form) or (L, d) matrix kinds (`srwm_matrix`: the widths are the last axis)."""
    where = "srwm"
    widths = []
    for kind, what in ((in_kind, "in_kind"), (out_kind, "out_kind")):
        shape = check_kind(kind, what, where).shape
        if len(shape) not in (1, 2):
            raise ProgramError(f"{where}: {what} {kind!r} must be a vector kind (d,) or a matrix kind (L, d)")
        widths.append(shape[-1])
    rows, cols = _srwm_shape(*widths, rates, heads, where)
    return Kind(f"srwm_{rows}x{cols}", (rows, cols))


def srwm_init(in_kind: Kind, out_kind: Kind, rates: int = 4, heads: int = 1, *, key: jax.Array) -> np.ndarray:
    """W_0 ~ N(0, 1/d_h), d_h = d_in/H (the official initialisation), shape `srwm_kind(...)`, float64 NumPy."""
    shape = srwm_kind(in_kind, out_kind, rates, heads).shape
    return np.asarray(jax.random.normal(key, shape), np.float64) / np.sqrt(shape[1])


@neuron_type("srwm")
def srwm_type(in_kind: Kind, out_kind: Kind, rates: int = 4, heads: int = 1, gated: bool = False):
    """Modern self-referential weight matrix (Irie+ 2022), one token per cycle.

    Input `x` (`in_kind`, (d,)) and `state_in` (ΔW, `srwm_kind`); outputs `y` (`out_kind`) and `state`. The
    weight matrix in force is W_{t-1} = W_0 + ΔW_{t-1}, W_0 the trainable parameter `w0`; it generates its own
    update from its own outputs:

        (y, q, k, β) = W_{t-1} x,   v = W_{t-1} softmax(q),   v̄ = W_{t-1} softmax(k),
        ΔW_t = ΔW_{t-1} + σ(β) (v - v̄) ⊗ softmax(k)

    with one learning rate (`rates` = 1) or one per row block y, q, k, β (`rates` = 4, the official code). With
    H = `heads` (the official multi-head layer), head h has its own matrix reading the h-th d/H columns of x and
    writing the h-th d_out/H of y; W_0 and ΔW stack the heads' matrices.

    With `gated`, a NUMBER input `write` g scales the update: ΔW_t = ΔW_{t-1} + g · (the update above), so a cycle
    with g = 0 (no token) leaves the matrix as it is (y is still read with W_{t-1}).
    """
    where = "srwm"
    check_kind(in_kind, "in_kind", where, 1)
    check_kind(out_kind, "out_kind", where, 1)
    state = srwm_kind(in_kind, out_kind, rates, heads)

    def fn(p, x, ctx):
        w = p["w0"] + x["state_in"]
        new, y = F.srwm_step(w, x["x"], d_out=out_kind.size, rates=rates, heads=heads)
        if gated:
            return {"y": y, "state": x["state_in"] + x["write"] * (new - w)}
        return {"y": y, "state": new - p["w0"]}

    inputs = {"x": in_kind, **({"write": NUMBER} if gated else {}), "state_in": state}
    return make_type(
        inputs, {"y": out_kind, "state": state}, fn=fn, defaults={"w0": np.zeros(state.shape)}, trainable=("w0",),
    )


@neuron_type("srwm_matrix")
def srwm_matrix(in_kind: Kind, out_kind: Kind, rates: int = 4, heads: int = 1):
    """The SRWM over a whole sequence on matrix streams (causal by construction): row t of the output is what
    `srwm` outputs at token t, starting from ΔW = 0 (W = W_0, the trainable parameter `w0`, the same shape as
    the token form's, `srwm_kind`), computed by a `lax.scan` over the rows of the token form's update.

    Input `x` (`in_kind`, (L, d)); output `y` (`out_kind`, (L, d_out)); `rates` and `heads` as `srwm`.
    """
    where = "srwm_matrix"
    _, _, d_out = _matrix_pair(in_kind, out_kind, where, ("in_kind", "out_kind"))
    shape = srwm_kind(in_kind, out_kind, rates, heads).shape

    def fn(p, x, ctx):
        _, y = F.srwm_sequence(p["w0"], x["x"], d_out=d_out, rates=rates, heads=heads)
        return {"y": y}

    return make_type({"x": in_kind}, {"y": out_kind}, fn=fn, defaults={"w0": np.zeros(shape)}, trainable=("w0",))


def srwm(
    in_kind: Kind, out_kind: Kind, rates: int = 4, *, heads: int = 1, w0=None, key: jax.Array | None = None
) -> Neuron:
    """An SRWM neuron (token form). `w0` gives the initial matrix W_0; otherwise `key` draws it (`srwm_init`:
    N(0, 1/d_h), the official initialisation); with neither, W_0 = 0."""
    t = srwm_type(in_kind, out_kind, rates, heads)
    if w0 is None and key is not None:
        w0 = srwm_init(in_kind, out_kind, rates, heads, key=key)
    return Neuron(t, {} if w0 is None else {"w0": np.asarray(w0, np.float64)})
