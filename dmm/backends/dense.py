"""The dense backend: W_K stored as its full M x N matrix, X = W·Y one matmul."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .base import Backend, Block, accumulation_dtype, register_backend


class Dense(Backend):
    """Every entry stored; the values array is the matrix itself (rows = input ports, columns = output ports)."""

    name = "dense"

    def layout(self, rows, cols, shape):
        return Block(self, shape, (rows, cols))

    def store(self, block, values, fill=0):
        values = np.asarray(values)
        out = np.full(block.shape, fill, dtype=values.dtype if values.size else np.asarray(fill).dtype)
        out[block.links] = values
        return out

    def entries(self, block):
        return tuple(np.indices(block.shape))

    def product(self, values, tables, y, precision):
        acc = accumulation_dtype(y.dtype)
        return jnp.matmul(values, y, precision=precision, preferred_element_type=acc).astype(y.dtype)

    def position(self, block, i, j):
        m, n = block.shape
        return (i, j) if 0 <= i < m and 0 <= j < n else None

    def dense(self, values, block):
        return values


DENSE = register_backend(Dense())
