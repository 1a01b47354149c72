"""The down-movement backend protocol: how one kind's block W_K of the network matrix is stored and multiplied.

A block is the M x N matrix routing the N output ports of a kind to its M input ports. A backend stores it as a
*values* array (``params["W"][kind]``, what training updates) together with *tables* (a pytree of integer arrays,
passed to the jitted run as arguments so they are not baked into the compiled program), and computes the product
X = W·Y from them. Every stored value sits at one matrix entry: `Block.rows` and `Block.cols` are integer arrays
shaped like the values array giving that entry's row and column.

A new backend is one module defining a `Backend` subclass, registered with `register_backend` (or through the
``dmm.backends`` entry-point group), after which ``dmm.compile(program, backend=NAME)`` uses it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ProgramError


def accumulation_dtype(dtype: Any) -> Any:
    """The dtype the down movement sums in for streams of `dtype`: float32 for the 16-bit floats (bfloat16,
    float16), the dtype itself for float32 and float64. Each product is then rounded once to the stream dtype."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


class Block:
    """One kind's block as a backend laid it out.

    **Attributes:** `backend` (the `Backend`), `shape` ((M, N)), `links` ((rows, cols): the program's links of the
    kind, int arrays in program order), `tables` (the backend's pytree of index arrays passed to `product`, or None).
    """

    def __init__(self, backend: Backend, shape: tuple[int, int], links: tuple[np.ndarray, np.ndarray], tables: Any = None):
        self.backend = backend
        self.shape = (int(shape[0]), int(shape[1]))
        self.links = (np.asarray(links[0], np.int64), np.asarray(links[1], np.int64))
        self.tables = tables

    @functools.cached_property
    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols): int arrays shaped like the values array, the matrix entry of each stored value."""
        return self.backend.entries(self)

    @functools.cached_property
    def index(self) -> dict[tuple[int, int], Any]:
        """{(row, col): index into the values array} of every stored entry (built on first use)."""
        rows, cols = self.entries
        return {(int(rows[p]), int(cols[p])): (p if len(p) > 1 else p[0]) for p in np.ndindex(rows.shape)}

    def position(self, i: int, j: int) -> Any:
        """The index into the values array of entry (i, j), or None when the block does not store it."""
        return self.backend.position(self, i, j)

    def __repr__(self) -> str:
        return f"Block({self.backend.name!r}, shape={self.shape}, links={len(self.links[0])})"


class Backend:
    """The protocol. Subclasses set `name` and implement `layout` and `product`; the rest has defaults.

    - `checkpoint_cycles`: True when ``remat="auto"`` should checkpoint every cycle for machines using this backend
      (its backward pass keeps large residuals otherwise).
    """

    name: str = "?"
    checkpoint_cycles: bool = False

    def layout(self, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> Block:
        """The block of an M x N pattern whose links run from column cols[e] to row rows[e] (program order)."""
        raise NotImplementedError

    def store(self, block: Block, values: np.ndarray, fill: Any = 0) -> np.ndarray:
        """The values array (NumPy) holding ``values[e]`` (one per link of `block`, in its order) at each link's
        entry and `fill` at every other stored entry."""
        raise NotImplementedError

    def entries(self, block: Block) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) shaped like the values array: the entry of each stored value."""
        raise NotImplementedError

    def product(self, values: jax.Array, tables: Any, y: jax.Array, precision: Any) -> jax.Array:
        """X = W·Y for W given by `values` and the block's `tables`; y of shape (N, F), X of shape (M, F) in y's
        dtype, summed in `accumulation_dtype` (float32 for 16-bit streams)."""
        raise NotImplementedError

    def prefers(self, shape: tuple[int, int], links: int) -> bool:
        """Whether ``backend="auto"`` should choose this backend for a block of this shape and number of links."""
        return False

    def position(self, block: Block, i: int, j: int) -> Any:
        """The index into the values array of entry (i, j), or None (default: `Block.index`)."""
        return block.index.get((i, j))

    def dense(self, values: jax.Array, block: Block) -> jax.Array:
        """The dense M x N matrix of `values`."""
        rows, cols = block.entries
        return jnp.zeros(block.shape, values.dtype).at[rows, cols].set(values)

    def __repr__(self) -> str:
        return f"<dmm backend {self.name!r}>"


_BACKENDS: dict[str, Backend] = {}
_LOADED_ENTRY_POINTS = False


def register_backend(backend: Backend) -> Backend:
    """Make `backend` available by its name to ``dmm.compile(..., backend=NAME)``; returns it."""
    if not isinstance(backend, Backend):
        raise ProgramError(f"register_backend takes a dmm.backends.Backend, not {type(backend).__name__}")
    other = _BACKENDS.get(backend.name)
    if other is not None and type(other) is not type(backend):
        raise ProgramError(f"backend name {backend.name!r} is already registered by {type(other).__qualname__}")
    _BACKENDS[backend.name] = backend
    return backend


def registered_backends() -> Mapping[str, Backend]:
    """Every registered backend by name (built-ins and the ``dmm.backends`` entry points)."""
    global _LOADED_ENTRY_POINTS
    if not _LOADED_ENTRY_POINTS:
        _LOADED_ENTRY_POINTS = True
        from importlib.metadata import entry_points

        for ep in entry_points(group="dmm.backends"):
            try:
                ep.load()
            except Exception as e:  # a broken plug-in names itself
                raise ProgramError(f"entry point {ep.name!r} of group dmm.backends failed to load: {e}") from e
    return dict(_BACKENDS)


def resolve_backend(spec: str | Backend) -> Backend | None:
    """The backend named by `spec` (or `spec` itself); None for ``"auto"``; an unknown name raises `ProgramError`."""
    if isinstance(spec, Backend):
        return spec
    if spec == "auto":
        return None
    backends = registered_backends()
    if isinstance(spec, str) and spec in backends:
        return backends[spec]
    raise ProgramError(f"backend must be one of {(*backends, 'auto')} or a dmm.backends.Backend, not {spec!r}")
