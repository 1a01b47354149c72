"""Pure attention functions on arrays (one sample, no batch axis), used by the neurons and by the tests.

- `dot_product_attention`: scaled dot-product attention, multi-head, optional causal mask, any weight mechanism.
- Feature maps φ for linear attention and fast weights: `elu1` (Katharopoulos+ 2020), `dpfp` (Schlag+ 2021),
  `identity`.
- `linear_attention` (parallel form) and `linear_attention_step` (causal recurrent form).
- `delta_rule_step` (Schlag+ 2021 fast-weight programmer) and `srwm_step` (modern self-referential weight matrix,
  Irie+ 2022), and their whole-sequence forms `delta_rule_sequence` and `srwm_sequence` (a `lax.scan` of the step).

Every function takes ``heads=H``: head h uses the h-th of H equal column blocks of each of q, k, v (and x) and its
own block of the state, the formula is applied per head (φ per head too), and the heads' outputs are concatenated.
A multi-head state stacks the heads' states along its first axis (head-major), so with H = 1 it is the single-head
state itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dmm import ProgramError

Array = jax.Array


def _check_heads(d: int, heads: int, what: str) -> int:
    if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1 or d % heads:
        raise ProgramError(f"{what}: width {d} is not divisible into {heads!r} heads")
    return d // heads


def split_heads(x: Array, heads: int, what: str = "split_heads") -> Array:
    """(..., d) -> (..., H, d/H): head h is columns h·d/H : (h+1)·d/H. Raises `dmm.ProgramError` naming `what`
    when H does not divide d."""
    dh = _check_heads(x.shape[-1], heads, what)
    return x.reshape(*x.shape[:-1], heads, dh)


def _head_state(state: Array, heads: int, what: str) -> Array:
    """A head-major stacked state (H·m, n) -> (H, m, n)."""
    m = _check_heads(state.shape[0], heads, what)
    return state.reshape(heads, m, *state.shape[1:])


def dot_product_attention(
    q: Array,
    k: Array,
    v: Array,
    *,
    heads: int = 1,
    causal: bool = False,
    scale: float | None = None,
    weights: Callable[[Array, Array | None], Array] | None = None,
) -> Array:
    """Y = softmax(Q Kᵀ · scale) V per head, row-wise, in the max-subtracted form.

    Head h uses columns h·d_h : (h+1)·d_h of Q, K (d_h = d_k / heads) and of V (d_v / heads); the heads' outputs
    are concatenated. With `causal`, query i attends to keys j ≤ i (top-left aligned, as `jax.nn.dot_product_attention`).
    `weights(logits, mask) -> weights` replaces softmax by another mechanism (see `attention.mechanisms`); with the
    default, the normalisation is applied after the value product (one division per output entry).

    **Arguments:** `q` (L_q, d_k), `k` (L_k, d_k), `v` (L_k, d_v), float; `scale` defaults to 1/√d_h.
    **Returns:** (L_q, d_v), the dtype of `q`.
    """
    lq, dk = q.shape
    lk, dv = v.shape
    dh = _check_heads(dk, heads, "dot_product_attention (keys)")
    dvh = _check_heads(dv, heads, "dot_product_attention (values)")
    scale = dh**-0.5 if scale is None else scale
    # head-major layout (H, L, d_h) and batched matmuls: the fastest of the layouts tried on CPU
    qh = (q * scale).reshape(lq, heads, dh).transpose(1, 0, 2)
    kh = k.reshape(lk, heads, dh).transpose(1, 2, 0)
    vh = v.reshape(lk, heads, dvh).transpose(1, 0, 2)
    logits = jnp.matmul(qh, kh)
    mask = jnp.tril(jnp.ones((lq, lk), bool)) if causal else None
    if weights is not None:
        out = jnp.matmul(weights(logits, mask), vh)
    else:
        if mask is not None:
            logits = jnp.where(mask, logits, -jnp.inf)
        e = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
        out = jnp.matmul(e, vh) / jnp.sum(e, axis=-1, keepdims=True)
    return out.transpose(1, 0, 2).reshape(lq, dv)


# ------------------------------------------------------------------------------------------------ feature maps
def elu1(x: Array) -> Array:
    """φ(x) = elu(x) + 1 (positive; Katharopoulos+ 2020). (d,) -> (d,)."""
    return jax.nn.elu(x) + 1.0


def dpfp(x: Array, nu: int = 1) -> Array:
    """DPFP_ν (Schlag+ 2021): x̃ = [relu(x), relu(-x)], φ(x) = concat_{j=1..ν} x̃ ⊙ roll(x̃, j). (d,) -> (2dν,)."""
    xt = jnp.concatenate([jax.nn.relu(x), jax.nn.relu(-x)], axis=-1)
    return jnp.concatenate([xt * jnp.roll(xt, j, axis=-1) for j in range(1, nu + 1)], axis=-1)


FEATURES = ("elu1", "dpfp", "identity")


def feature_map(name: str, nu: int = 1, where: str = "feature map") -> tuple[Callable[[Array], Array], Callable[[int], int]]:
    """The feature map φ called `name` and the function d -> dim φ."""
    if name == "elu1":
        return elu1, lambda d: d
    if name == "identity":
        return (lambda x: x), lambda d: d
    if name == "dpfp":
        if not isinstance(nu, int) or nu < 1:
            raise ProgramError(f"{where}: dpfp needs nu >= 1, not {nu!r}")
        return (lambda x: dpfp(x, nu)), lambda d: 2 * d * nu
    raise ProgramError(f"{where}: unknown feature map {name!r}; known: {list(FEATURES)}")


# ------------------------------------------------------------------------------------------- linear attention
def linear_attention(
    q: Array,
    k: Array,
    v: Array,
    *,
    phi: Callable[[Array], Array] = elu1,
    causal: bool = True,
    eps: float = 1e-6,
    heads: int = 1,
) -> Array:
    """Parallel linear attention: y_i = Σ_j a_ij v_j / (Σ_j a_ij + eps), a_ij = φ(q_i)·φ(k_j), j ≤ i if causal;
    per head with `heads` > 1 (φ applied to each head's d_k/H columns), heads concatenated.

    **Arguments:** `q` (L, d_k), `k` (L_k, d_k), `v` (L_k, d_v), float; H = `heads` divides d_k and d_v.
    **Returns:** (L, d_v).
    """
    if heads != 1:
        qh, kh = split_heads(q, heads, "linear_attention (keys)"), split_heads(k, heads, "linear_attention (keys)")
        vh = split_heads(v, heads, "linear_attention (values)")
        one = functools.partial(linear_attention, phi=phi, causal=causal, eps=eps)
        return jax.vmap(one, in_axes=1, out_axes=1)(qh, kh, vh).reshape(q.shape[0], v.shape[-1])
    a = phi(q) @ phi(k).T
    if causal:
        a = jnp.tril(a)
    return (a @ v) / (jnp.sum(a, axis=-1, keepdims=True) + eps)


def linear_attention_step(
    state: Array,
    q: Array,
    k: Array,
    v: Array,
    *,
    phi: Callable[[Array], Array] = elu1,
    eps: float = 1e-6,
    write: Array | float = 1.0,
    heads: int = 1,
) -> tuple[Array, Array]:
    """Causal recurrent linear attention (Katharopoulos+ 2020), one token.

    The state packs S (d_φ, d_v) and z (d_φ,) as [S | z], shape (d_φ, d_v + 1). With g = `write`,
    S ← S + g φ(k) vᵀ, z ← z + g φ(k), y = Sᵀφ(q) / (zᵀφ(q) + eps) (read after the write). With H = `heads`,
    per head on the h-th column blocks of q, k, v, the state stacking the heads' [S_h | z_h]:
    (H·d_φh, d_v/H + 1), d_φh = dim φ(d_k/H).

    **Arguments:** `state` as above; `q`, `k` (d_k,); `v` (d_v,); `write` a scalar.
    **Returns:** `(new state, y (d_v,))`.
    """
    if heads != 1:
        one = functools.partial(linear_attention_step, phi=phi, eps=eps, write=write)
        new, y = jax.vmap(one)(
            _head_state(state, heads, "linear_attention_step (state)"),
            split_heads(q, heads, "linear_attention_step (keys)"),
            split_heads(k, heads, "linear_attention_step (keys)"),
            split_heads(v, heads, "linear_attention_step (values)"),
        )
        return new.reshape(state.shape), y.reshape(v.shape)
    fk, fq = phi(k), phi(q)
    state = state + write * jnp.outer(fk, jnp.concatenate([v, jnp.ones((1,), v.dtype)]))
    num = fq @ state
    return state, num[:-1] / (num[-1] + eps)


def _sum_normalise(x: Array) -> Array:
    s = jnp.sum(x)
    return x / jnp.where(s != 0, s, 1.0)


def delta_rule_step(
    fast: Array,
    q: Array,
    k: Array,
    v: Array,
    beta: Array,
    *,
    phi: Callable[[Array], Array] = elu1,
    write: Array | float = 1.0,
    heads: int = 1,
) -> tuple[Array, Array]:
    """Delta-rule fast-weight programmer (Schlag, Irie & Schmidhuber 2021), one token.

    k̂ = φ(k)/Σφ(k), q̂ = φ(q)/Σφ(q); v̄ = W k̂; W ← W + g σ(β) (v - v̄) ⊗ k̂; y = W q̂ (after the update),
    with g = `write` and β the pre-sigmoid learning-rate logit. The update replaces the value stored under k̂
    instead of adding to it (the sum rule's failure on key updates). With H = `heads`, per head on the h-th
    column blocks of q, k, v with its own β_h and W_h (d_v/H, d_φh), d_φh = dim φ(d_k/H); `fast` stacks the W_h.

    **Arguments:** `fast` W (d_v, d_φh); `q`, `k` (d_k,); `v` (d_v,); `beta` scalar, or (H,) (one logit per head);
    `write` a scalar. **Returns:** `(W, y (d_v,))`.
    """
    if heads != 1 or jnp.ndim(beta):
        one = functools.partial(delta_rule_step, phi=phi, write=write)
        new, y = jax.vmap(one)(
            _head_state(fast, heads, "delta_rule_step (fast weights)"),
            split_heads(q, heads, "delta_rule_step (keys)"),
            split_heads(k, heads, "delta_rule_step (keys)"),
            split_heads(v, heads, "delta_rule_step (values)"),
            jnp.reshape(beta, (heads,)),
        )
        return new.reshape(fast.shape), y.reshape(v.shape)
    kh, qh = _sum_normalise(phi(k)), _sum_normalise(phi(q))
    fast = fast + write * jax.nn.sigmoid(beta) * jnp.outer(v - fast @ kh, kh)
    return fast, fast @ qh


def srwm_step(
    w: Array, x: Array, *, d_out: int, rates: int = 1, phi_x: Callable[[Array], Array] = lambda x: x, heads: int = 1
) -> tuple[Array, Array]:
    """Modern self-referential weight matrix (Irie, Schlag, Csordás & Schmidhuber 2022), one token.

    W has rows [y (d_out) | q (d) | k (d) | β (`rates`)] and d = dim x columns:

        (y, q, k, β) = W φ_x(x);  v = W softmax(q);  v̄ = W softmax(k);
        W ← W + σ(β) ⊙_rows (v - v̄) ⊗ softmax(k)

    where with `rates` = 4 each of the four row blocks (y, q, k, β) has its own learning rate σ(β_i) (the
    official code), and with `rates` = 1 one rate for all rows (the paper's equation). The output y is read with
    W_{t-1}. `phi_x` is applied to the input (identity in the official code). With H = `heads` (the official
    multi-head layer), head h has its own matrix W_h (d_out/H + 2d/H + rates, d/H) that reads the h-th column
    block of x and writes the h-th block of y; `w` stacks the W_h (head-major rows).

    **Arguments:** `w` (H·(d_out/H + 2d/H + rates), d/H); `x` (d,); `d_out` the total output width.
    **Returns:** `(new W, y (d_out,))`.
    """
    if heads != 1:
        doh = _check_heads(d_out, heads, "srwm_step (outputs)")
        one = functools.partial(srwm_step, d_out=doh, rates=rates, phi_x=phi_x)
        new, y = jax.vmap(one)(_head_state(w, heads, "srwm_step (weights)"), split_heads(x, heads, "srwm_step (inputs)"))
        return new.reshape(w.shape), y.reshape(d_out)
    d = x.shape[-1]
    out = w @ phi_x(x)
    y, q, k, b = out[:d_out], out[d_out : d_out + d], out[d_out + d : d_out + 2 * d], out[d_out + 2 * d :]
    sk = jax.nn.softmax(k)
    v, vbar = w @ jax.nn.softmax(q), w @ sk
    lr = jax.nn.sigmoid(b)
    if rates == 4:
        lr = jnp.repeat(lr, np.array([d_out, d, d, rates]), total_repeat_length=w.shape[0])
    else:
        lr = jnp.broadcast_to(lr, (w.shape[0],))
    return w + lr[:, None] * jnp.outer(v - vbar, sk), y


# ---------------------------------------------------------------------------------- whole-sequence (scan) forms
def delta_rule_sequence(
    q: Array,
    k: Array,
    v: Array,
    beta: Array,
    *,
    phi: Callable[[Array], Array] = elu1,
    heads: int = 1,
    fast: Array | None = None,
) -> tuple[Array, Array]:
    """The delta rule over a whole sequence: `delta_rule_step` applied to rows t = 1..L in order (a `lax.scan`),
    so row t of the output is y_t = W_t q̂_t, W_t the fast weights after token t (causal by construction).

    **Arguments:** `q`, `k` (L, d_k); `v` (L, d_v); `beta` (L, H) or (L,) the learning-rate logits; `fast` the
    initial fast weights (d_v, d_φh) (default zeros, d_φh = dim φ(d_k/H)).
    **Returns:** `(fast weights after row L, Y (L, d_v))`.
    """
    if fast is None:
        dphi = phi(split_heads(q[0], heads, "delta_rule_sequence (keys)")).shape[-1]
        fast = jnp.zeros((v.shape[-1], dphi), v.dtype)
    beta = jnp.reshape(beta, (q.shape[0], heads))

    def step(w, row):
        return delta_rule_step(w, *row, phi=phi, heads=heads)

    return jax.lax.scan(step, fast, (q, k, v, beta))


def srwm_sequence(
    w: Array,
    x: Array,
    *,
    d_out: int,
    rates: int = 1,
    phi_x: Callable[[Array], Array] = lambda x: x,
    heads: int = 1,
) -> tuple[Array, Array]:
    """The SRWM over a whole sequence: `srwm_step` applied to rows t = 1..L in order (a `lax.scan`), so row t of
    the output is y_t = (W_{t-1} x_t)[:d_out] per head, W_{t-1} the matrix after rows 1..t-1 (causal).

    **Arguments:** `w` the initial matrix W_0 (H·(d_out/H + 2d/H + rates), d/H); `x` (L, d).
    **Returns:** `(W_L, Y (L, d_out))`.
    """

    def step(m, row):
        return srwm_step(m, row, d_out=d_out, rates=rates, phi_x=phi_x, heads=heads)

    return jax.lax.scan(step, w, x)
