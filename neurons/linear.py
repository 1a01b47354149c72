"""Linear map with a trainable matrix."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from dmm import NUMBER, Kind, Neuron, make_type, neuron_type


@neuron_type("linear")
def linear_type(in_kind: Kind = NUMBER, out_kind: Kind = NUMBER):
    """y.out = A·x.in + b, with A of shape (out size, in size) and b of shape (out size,) trainable parameters
    (values are flattened to vectors and reshaped back to the kinds' shapes)."""

    def fn(p, x, ctx):
        return {"out": (p["matrix"] @ x["in"].reshape(-1) + p["bias"]).reshape(out_kind.shape)}

    return make_type(
        {"in": in_kind},
        {"out": out_kind},
        fn=fn,
        defaults={"matrix": np.zeros((out_kind.size, in_kind.size)), "bias": np.zeros(out_kind.size)},
        trainable=("matrix", "bias"),
    )


def linear(
    in_kind: Kind = NUMBER, out_kind: Kind = NUMBER, *, matrix: Any = None, bias: Any = None, key: jax.Array | None = None
) -> Neuron:
    """A linear neuron. `matrix` and `bias` give the parameters; otherwise `key` draws A ~ N(0, 1/in size) (and
    b = 0); with neither, A = 0."""
    t = linear_type(in_kind, out_kind)
    params = {}
    if matrix is not None:
        params["matrix"] = np.asarray(matrix, np.float64)
    elif key is not None:
        params["matrix"] = np.asarray(jax.random.normal(key, (out_kind.size, in_kind.size))) / np.sqrt(in_kind.size)
    if bias is not None:
        params["bias"] = np.asarray(bias, np.float64)
    return Neuron(t, params)
