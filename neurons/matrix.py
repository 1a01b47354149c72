"""Matrix-stream neurons: (A, X, Y) ↦ F(A×X + Y) on rectangular matrices, optionally with softmax-normalised
factors (the hook for attention-style neurons; `anhinga/2020-notes: attention-based-models/matrix-mult-machines.md`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dmm import Kind, ProgramError, make_type, neuron_type


ACTIVATIONS = {
    "identity": lambda z: z,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "sin": jnp.sin,
}
NORMALIZATIONS = ("none", "softmax")


def matrix_kind(m: int, n: int) -> Kind:
    """The kind of an m×n matrix stream, named ``"matrix{m}x{n}"`` (one kind per shape)."""
    return Kind(f"matrix{int(m)}x{int(n)}", (int(m), int(n)))


@neuron_type("matrix")
def matrix_neuron(
    m: int, k: int, n: int, activation: str = "identity", left: str = "none", right: str = "none",
    include_identity: bool = False,
):
    """The matrix neuron: y.out = F(L(A)·R(X) + Y) with A = x.a (m×k), X = x.x (k×n), Y = x.y (m×n), out m×n.

    - `activation` F, elementwise: "identity", "relu", "tanh", "sigmoid" or "sin" (F = sin is the matrix form of
      the audio neuron sin(a·x + b)).
    - `left` L normalises each row of the left factor, `right` R each column of the right factor: "none" or
      "softmax" (max-subtracted, over the contracted index), so L(A)·R(X) mixes the rows of X with convex weights.
    - `include_identity`: concatenate a unit matrix to the left factor and Y to the right one, y.out =
      F(L([A | I_m])·R([X ; Y])). Without normalisation this is exactly F(A·X + Y); normalised, the skip term Y
      joins the convex mixture (row i of the output also "attends to" row i of Y).

    Inputs and output have the kinds `matrix_kind(m, k)`, `matrix_kind(k, n)`, `matrix_kind(m, n)`.
    """
    if activation not in ACTIVATIONS:
        raise ProgramError(f"matrix neuron: activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
    for side, v in (("left", left), ("right", right)):
        if v not in NORMALIZATIONS:
            raise ProgramError(f"matrix neuron: {side} normalisation must be one of {NORMALIZATIONS}, not {v!r}")
    f = ACTIVATIONS[activation]
    norm_l = (lambda a: jax.nn.softmax(a, axis=1)) if left == "softmax" else (lambda a: a)
    norm_r = (lambda b: jax.nn.softmax(b, axis=0)) if right == "softmax" else (lambda b: b)

    def fn(p, x, ctx):
        a, xx, y = x["a"], x["x"], x["y"]
        if include_identity:
            a = jnp.concatenate([a, jnp.eye(m, dtype=a.dtype)], axis=1)
            xx = jnp.concatenate([xx, y], axis=0)
            z = jnp.matmul(norm_l(a), norm_r(xx))
        else:
            z = jnp.matmul(norm_l(a), norm_r(xx)) + y
        return {"out": f(z)}

    return make_type(
        {"a": matrix_kind(m, k), "x": matrix_kind(k, n), "y": matrix_kind(m, n)}, {"out": matrix_kind(m, n)}, fn=fn
    )
