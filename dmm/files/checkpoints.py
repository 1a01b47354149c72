"""Training checkpoints: a `TrainState` (parameters, optimizer state, mask, step, key, penalties, running state) saved
as one file ``NAME.npz`` (format ``dmm-checkpoint``, version 2), as one atomic commit and without pickle, and
restored exactly.

The file is an uncompressed .npz: its first member ``header.json`` holds the format, the step, the list of leaves
(pytree path, kind ``array`` or ``key``, shape, dtype and, for PRNG keys, the key implementation) and the caller's
metadata; then one ``.npy`` member per leaf (``a0.npy``, ``a1.npy``, ...; PRNG keys as their raw key data).
Restoring needs a *template*: a state of the same structure (``trainer.init()``), whose leaves are replaced by the
saved arrays after checking that every path, shape, dtype and key implementation matches, in the header and in the
arrays. With ``keep=N`` the last N checkpoints are kept as ``NAME.step-000000042.npz`` files and ``NAME.npz`` always
names the latest one (a hard link, renamed into place). Version-1 checkpoints (``NAME.json`` + ``NAME.npz``) still
load.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .atomic import (DEFAULT_LIMITS, HEADER, Archive, Limits, atomic_link, atomic_write, check_header, clean_temps,
                     fail, get,
                     pair_paths, parse_json, read_pair_arrays, read_pair_header, short, want, want_dict, want_int,
                     want_list, want_str, write_npz)

FORMAT = "dmm-checkpoint"
VERSION = 2
_STEP_FILE = re.compile(r"^(?P<stem>.+)\.step-(?P<step>\d+)\.npz$")


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def _stem(path: str | os.PathLike) -> Path:
    return pair_paths(path)[1].with_suffix("")


def checkpoint_path(path: str | os.PathLike) -> Path:
    """The file a checkpoint name stands for: ``NAME.npz`` (`path` may name ``NAME.npz``, ``NAME.json`` or the
    stem)."""
    return pair_paths(path)[1]


def save_checkpoint(path: str | os.PathLike, state: Any, meta: dict | None = None, *,
                    keep: int | None = None) -> Path:
    """Save a training state (any pytree of arrays, typically a `dmm.TrainState`) to ``NAME.npz``, as one atomic
    commit: killed at any moment, the previous checkpoint or the new one loads.

    `path` may name ``NAME.npz``, ``NAME.json`` or the stem; `meta` is a JSON-serialisable dict of extra
    information (returned by `read_checkpoint_meta`). `keep`: None keeps only ``NAME.npz``; an int N ≥ 1 also keeps
    the last N saves as ``NAME.step-<step>.npz`` (older ones are deleted) with ``NAME.npz`` naming the latest.
    Returns the path of ``NAME.npz``.
    """
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"save_checkpoint: meta must be a dict, not {type(meta).__name__}")
    if keep is not None and (not isinstance(keep, int) or isinstance(keep, bool) or keep < 1):
        raise ValueError(f"save_checkpoint: keep must be None or an int >= 1, not {keep!r}")
    target = checkpoint_path(path)
    arrays: dict[str, np.ndarray] = {}
    leaves = []
    for i, (name, leaf) in enumerate(_leaves(state)):
        entry: dict[str, Any] = {"path": name, "member": f"a{i}"}
        if _is_key(leaf):
            entry["kind"], entry["key_impl"] = "key", str(jax.random.key_impl(leaf))
            value = np.asarray(jax.random.key_data(leaf))
        else:
            entry["kind"] = "array"
            value = np.asarray(leaf)
        entry.update(shape=list(value.shape), dtype=value.dtype.str)
        arrays[f"a{i}"] = value
        leaves.append(entry)
    step = int(np.asarray(getattr(state, "step", 0)))
    header = {"format": FORMAT, "version": VERSION, "step": step, "leaves": leaves, "meta": meta or {}}
    json.dumps(header)  # fail before touching any file when meta is not JSON-serialisable
    old_pair = _old_pair_json(target)
    _clean_step_temps(target)
    if keep is None:
        atomic_write(target, lambda f: write_npz(f, header, arrays))
    else:
        step_file = target.with_name(f"{_stem(target).name}.step-{step:09d}.npz")
        atomic_write(step_file, lambda f: write_npz(f, header, arrays))
        atomic_link(step_file, target)
        for old in list_checkpoints(target)[:-keep]:
            with contextlib.suppress(OSError):
                os.unlink(old)
    if old_pair is not None:  # the version-1 header of the arrays just replaced
        with contextlib.suppress(OSError):
            os.unlink(old_pair)
    return target


def _clean_step_temps(target: Path) -> None:
    """Remove what killed saves left behind for the step files of `target` (``.NAME.step-N.npz.<pid>.*.tmp``)."""
    prefix = f".{_stem(target).name}.step-"
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                step_name = entry.name[1:].split(".npz.", 1)[0] + ".npz"
                clean_temps(target.with_name(step_name))


def list_checkpoints(path: str | os.PathLike) -> list[Path]:
    """The retained checkpoints ``NAME.step-<step>.npz`` of a name (see ``keep``), oldest save first."""
    target = checkpoint_path(path)
    stem = _stem(target).name
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            m = _STEP_FILE.match(entry.name)
            if m and m["stem"] == stem:
                with contextlib.suppress(OSError):
                    found.append((entry.stat().st_mtime_ns, int(m["step"]), Path(entry.path)))
    return [p for _, _, p in sorted(found)]


def _old_pair_json(target: Path) -> Path | None:
    jpath = target.with_suffix(".json")
    with contextlib.suppress(Exception):  # only a clean version-1 checkpoint header counts
        head = json.loads(jpath.read_bytes()[: 1 << 24])
        if head.get("format") == FORMAT and head.get("version") == 1:
            return jpath
    return None


def _read(path: str | os.PathLike, limits: Limits) -> tuple[Path, dict, Archive | None, Path]:
    """(file named in errors, checked header, archive or None for a version-1 pair not yet opened, npz path)."""
    target = checkpoint_path(path)
    jpath = target.with_suffix(".json")
    if target.exists() or not jpath.exists():
        z = Archive(target, limits=limits)
        if HEADER in z.names():
            header = parse_json(z.raw(HEADER), target, "the header", limits)
            return target, _check(header, target, (VERSION,)), z, target
        if not jpath.exists():
            raise fail(target, "not a dmm checkpoint (no header member, and no version-1 header "
                               f"{jpath.name} beside it)")
    header = _check(read_pair_header(jpath, limits), jpath, (1,))
    return jpath, header, None, target


def _check(header: Any, path: Path, versions: tuple[int, ...]) -> dict:
    header = check_header(header, path, FORMAT, versions, "checkpoint")
    want_int(get(header, "step", path), path, "'step'", lo=-(1 << 62), hi=1 << 62)
    want_dict(get(header, "meta", path, optional=True, default={}), path, "'meta'")
    leaves = want_list(get(header, "leaves", path), path, "'leaves'")
    for i, s in enumerate(leaves):
        f = f"'leaves'[{i}]"
        want_dict(s, path, f)
        want_str(get(s, "path", path, f), path, f"{f}['path']")
        want(get(s, "kind", path, f) in ("array", "key"), path, f"{f}['kind']", '"array" or "key"', s["kind"])
        shape = want_list(get(s, "shape", path, f), path, f"{f}['shape']")
        for j, d in enumerate(shape):
            want_int(d, path, f"{f}['shape'][{j}]", lo=0, hi=1 << 62)
        want_str(get(s, "dtype", path, f), path, f"{f}['dtype']")
        if "member" in s:
            want_str(s["member"], path, f"{f}['member']")
        if "key_impl" in s:
            want_str(s["key_impl"], path, f"{f}['key_impl']")
    if header["version"] == 1:
        impl = get(header, "key_impl", path, optional=True)
        want(impl is None or isinstance(impl, str), path, "'key_impl'", "a string or null", impl)
    return header


def read_checkpoint_meta(path: str | os.PathLike, *, limits: Limits | None = None) -> dict:
    """The `meta` dict saved with a checkpoint (plus ``"step"``), without loading the arrays."""
    _, header, _, _ = _read(path, limits or DEFAULT_LIMITS)
    return {**header.get("meta", {}), "step": header["step"]}


def load_checkpoint(path: str | os.PathLike, like: Any, *, limits: Limits | None = None) -> Any:
    """Restore a checkpoint into the structure of `like` (e.g. ``trainer.init()``).

    Every leaf path, shape, dtype and key implementation must match, in the header and in the arrays; otherwise
    (or for a missing, truncated, hostile or mismatched file) `FileFormatError` names the file and the field. Never
    executes code from the file. `limits` (a `dmm.files.Limits`) bounds what the file may declare.
    """
    limits = limits or DEFAULT_LIMITS
    hpath, header, z, npath = _read(path, limits)
    if z is None:  # version 1: the .npz beside the header, checked against the header's checksum
        z = read_pair_arrays(npath, hpath, header, limits)
    template = _leaves(like)
    saved = header["leaves"]
    if [n for n, _ in template] != [s["path"] for s in saved]:
        names = {s["path"] for s in saved}
        diff = next((n for n, _ in template if n not in names), None) or next(
            (s["path"] for s in saved if s["path"] not in {n for n, _ in template}), "leaf order")
        raise fail(hpath, f"the checkpoint does not have the structure of the template (field 'leaves'; first "
                          f"difference: {short(diff)})")
    out = []
    for i, ((name, leaf), s) in enumerate(zip(template, saved)):
        f = f"'leaves'[{i}] ({name})"
        member = s.get("member", f"a{i}")
        if member + ".npy" not in z.names() or member == "header":
            raise fail(npath, f"array for {name} (member {short(member)}.npy) is missing")
        if _is_key(leaf):
            want_data = np.asarray(jax.random.key_data(leaf))
            impl = str(jax.random.key_impl(leaf))
            saved_impl = s.get("key_impl", header.get("key_impl"))
            if s["kind"] != "key":
                raise fail(hpath, f"field {f}['kind']: the template has a PRNG key here")
            if saved_impl != impl:
                raise fail(hpath, f"field {f}['key_impl']: {short(saved_impl)}, the template's key is {impl!r}")
        else:
            want_data = np.asarray(leaf)
            if s["kind"] != "array":
                raise fail(hpath, f"field {f}['kind']: the template has an array here, not a PRNG key")
        want_shape, want_dtype = tuple(want_data.shape), want_data.dtype
        if tuple(s["shape"]) != want_shape or s["dtype"] != want_dtype.str:
            raise fail(hpath, f"field {f}: shape {tuple(s['shape'])} and dtype {s['dtype'][:40]}; the template has "
                              f"{want_shape} and {want_dtype.str}")
        value = z.array(member)
        if value.shape != want_shape or value.dtype != want_dtype:
            raise fail(npath, f"member {member}.npy ({name}) has shape {value.shape} and dtype {value.dtype}; the "
                              f"template has {want_shape} and {want_dtype}")
        if _is_key(leaf):
            try:
                out.append(jax.random.wrap_key_data(jnp.asarray(value), impl=jax.random.key_impl(leaf)))
            except (TypeError, ValueError) as e:
                raise fail(npath, f"member {member}.npy ({name}) is not valid key data ({e})") from None
        else:
            out.append(jnp.asarray(value))
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), out)
