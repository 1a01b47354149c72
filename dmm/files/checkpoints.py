"""Training checkpoints: a `TrainState` (parameters, optimizer state, mask, step, key, penalties, running state) saved
as ``NAME.json`` + ``NAME.npz``, atomically and without pickle, and restored exactly.

The .npz holds one array per leaf of the state, named by its pytree path (``params['W']['v']``,
``opt_state[0].mu['W']['v']``, ...); PRNG keys are stored as their raw key data. The JSON holds the format, the
step, the list of leaves (path, shape, dtype), the key implementation, the SHA-256 of the .npz (so a pair that does
not belong together is detected) and any metadata the caller adds. Restoring needs a *template*: a state of the same
structure (``trainer.init()``), whose leaves are replaced by the saved arrays after checking that every path, shape
and dtype matches. Both files are written through a temporary file and an atomic rename (the .npz first), so a
crash leaves either the old checkpoint or a pair whose checksum mismatch `load_checkpoint` reports.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dmm import FileFormatError
from .atomic import atomic_write_bytes, npz_bytes, open_npz, pair_paths, read_arrays, read_header

FORMAT = "dmm-checkpoint"
VERSION = 1


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def save_checkpoint(path: str | os.PathLike, state: Any, meta: dict | None = None) -> tuple[Path, Path]:
    """Save a training state (any pytree of arrays, typically a `dmm.TrainState`) to ``NAME.json`` + ``NAME.npz``.

    `path` may name either file or the stem; `meta` is JSON-serialisable extra information (returned by
    `read_checkpoint_meta`). Returns both paths.
    """
    jpath, npath = pair_paths(path)
    arrays: dict[str, np.ndarray] = {}
    leaves = []
    key_impl = None
    for i, (name, leaf) in enumerate(_leaves(state)):
        if _is_key(leaf):
            key_impl = str(jax.random.key_impl(leaf))
            value = np.asarray(jax.random.key_data(leaf))
            kind = "key"
        else:
            value = np.asarray(leaf)
            kind = "array"
        arrays[f"a{i}"] = value
        leaves.append({"path": name, "shape": list(value.shape), "dtype": value.dtype.str, "kind": kind})
    data = npz_bytes(arrays)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "npz": npath.name,
        "npz_sha256": hashlib.sha256(data).hexdigest(),
        "step": int(np.asarray(getattr(state, "step", 0))),
        "key_impl": key_impl,
        "leaves": leaves,
        "meta": meta or {},
    }
    atomic_write_bytes(npath, data)
    atomic_write_bytes(jpath, (json.dumps(header, indent=1) + "\n").encode())
    return jpath, npath


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The `meta` dict saved with a checkpoint (plus ``"step"``), without loading the arrays."""
    header = read_header(pair_paths(path)[0], FORMAT, VERSION, "checkpoint")
    return {**header.get("meta", {}), "step": header.get("step")}


def load_checkpoint(path: str | os.PathLike, like: Any) -> Any:
    """Restore a checkpoint into the structure of `like` (e.g. ``trainer.init()``).

    Every leaf path, shape and dtype must match; otherwise (or for a missing, truncated or mismatched pair of files)
    `FileFormatError` names the file and the first difference. Never executes code from the files.
    """
    jpath, npath = pair_paths(path)
    header = read_header(jpath, FORMAT, VERSION, "checkpoint")
    data = read_arrays(npath, jpath, header)
    template = _leaves(like)
    saved = header.get("leaves", [])
    if [n for n, _ in template] != [s.get("path") for s in saved]:
        names = {s.get("path") for s in saved}
        diff = next((n for n, _ in template if n not in names), None) or next(
            (s.get("path") for s in saved if s.get("path") not in {n for n, _ in template}), "leaf order")
        raise FileFormatError(f"{jpath}: the checkpoint does not have the structure of the template (first difference: {diff})")
    out = []
    with open_npz(npath, data) as z:
        for i, ((name, leaf), s) in enumerate(zip(template, saved)):
            try:
                value = z[f"a{i}"]
            except KeyError:
                raise FileFormatError(f"{npath}: array for {name} is missing") from None
            if _is_key(leaf):
                want_shape = tuple(np.asarray(jax.random.key_data(leaf)).shape)
                if s.get("kind") != "key" or value.shape != want_shape:
                    raise FileFormatError(f"{jpath}: {name} should be a PRNG key of data shape {want_shape}")
                out.append(jax.random.wrap_key_data(jnp.asarray(value), impl=header.get("key_impl")))
                continue
            want = np.asarray(leaf)
            if value.shape != want.shape or value.dtype != want.dtype:
                raise FileFormatError(
                    f"{jpath}: {name} has shape {value.shape} and dtype {value.dtype}; the template has "
                    f"{want.shape} and {want.dtype}"
                )
            out.append(jnp.asarray(value))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), out)
