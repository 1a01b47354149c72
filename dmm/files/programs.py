"""Program files.

A program is saved as one JSON file, ``NAME.json`` (format ``dmm-program``, version 2): its neurons with their
registered type names and configurations, its links, its initial values and an ``arrays`` object holding every
array (link weights, neuron parameters, initial values) as dtype, shape and the base64 of its little-endian bytes,
plus the SHA-256 of the canonical JSON of all of it (so a changed byte anywhere is detected). The file is written as
one atomic commit (a temporary file in the same folder, fsync, `os.replace`), so a save killed at any moment leaves
the previous version or the new one. Loading parses bounded JSON only, checks the type of every field and the size
of every array and kind before allocating it, looks neuron types up in the registry by name and rebuilds the
program through the ordinary `Program` methods, so a loaded program is validated exactly like a written one. Any
problem raises `FileFormatError` naming the file and the field. Version-1 files (``NAME.json`` + ``NAME.npz``)
still load.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dmm import DMMError, FileFormatError, Kind, Neuron, Program, lookup
from .atomic import (DEFAULT_LIMITS, Limits, atomic_write, canonical_sha256, check_header, decode_array,
                     encode_array, fail, get, pair_paths, parse_json, read_file, read_pair_arrays, short, want,
                     want_bool, want_dict, want_list, want_str)


FORMAT = "dmm-program"
VERSION = 2


def _encode(value: Any) -> Any:
    if isinstance(value, Kind):
        return {"$kind": value.to_json()}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any, path: Any, field: str, limits: Limits) -> Any:
    """A configuration value: JSON scalars, lists (tuples) and ``{"$kind": ...}``; kinds bounded by the limits.
    The depth is bounded by the JSON parser's depth limit."""
    if isinstance(value, dict):
        if set(value) != {"$kind"}:
            raise fail(path, f"field {field}: unexpected object {short(value)} in a neuron configuration")
        try:
            kind = Kind.from_json(value["$kind"])
        except DMMError as e:
            raise fail(path, f"field {field}: {e}") from None
        if kind.shape is not None and kind.size > limits.max_elements:
            raise fail(path, f"field {field}: kind {kind.name!r} of shape {kind.shape} has {kind.size} elements, "
                             f"more than the limit max_elements={limits.max_elements}")
        return kind
    if isinstance(value, list):
        return tuple(_decode(v, path, f"{field}[{i}]", limits) for i, v in enumerate(value))
    return value


def _entries(stored: Any, path: Any, field: str) -> tuple:
    """Matrix entries as stored in JSON: {"entries": [[src, dst, value], ...]}."""
    stored = want_dict(stored, path, field)
    want(set(stored) == {"entries"}, path, field, 'an object {"entries": [...]}', stored)
    rows = want_list(stored["entries"], path, f"{field}['entries']")
    out = []
    for i, e in enumerate(rows):
        want(isinstance(e, list) and all(isinstance(c, (str, int, float)) for c in e), path,
             f"{field}['entries'][{i}]", "a list of strings and numbers", e)
        out.append(tuple(e))
    return tuple(out)


def _body(program: Program) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON description of `program` and its arrays (by name)."""
    arrays: dict[str, np.ndarray] = {"weights": np.array([l.weight for l in program.links], np.float64)}
    neurons = []
    for i, (name, neuron) in enumerate(program.neurons.items()):
        params: dict[str, Any] = {}
        for k, v in neuron.params.items():
            if isinstance(v, tuple):  # matrix entries of a NETWORK-kind parameter
                params[k] = {"entries": [list(e) for e in v]}
            else:
                arrays[f"p{i}.{k}"] = np.asarray(v)
                params[k] = f"p{i}.{k}"
        neurons.append({"name": name, "type": neuron.type.name,
                        "config": [[k, _encode(v)] for k, v in neuron.type.config], "params": params})
    initial = {}
    for i, (stream, v) in enumerate(program.initial.items()):
        if isinstance(v, tuple):  # NETWORK-kind entries
            initial[stream] = {"entries": [list(e) for e in v]}
        else:
            arrays[f"y{i}"] = np.asarray(v)
            initial[stream] = f"y{i}"
    body = {"neurons": neurons, "links": [[l.src, l.dst, l.trainable] for l in program.links], "initial": initial}
    if not program.links_trainable:  # written only when it is not the default, so older files read the same
        body["links_trainable"] = False
    return body, arrays


def save_program(program: Program, path: str | os.PathLike) -> Path:
    """Save `program` as one file ``NAME.json`` (`path` may name ``NAME.json``, ``NAME.npz`` or the stem), as one
    atomic commit, and return its path. A version-1 ``NAME.npz`` that the old ``NAME.json`` pointed to is removed
    after the commit."""
    jpath, npath = pair_paths(path)
    body, arrays = _body(program)
    body["arrays"] = {k: encode_array(v) for k, v in arrays.items()}
    doc = {"format": FORMAT, "version": VERSION, "sha256": canonical_sha256(body), **body}
    old_pair = _old_pair_npz(jpath)
    text = (json.dumps(doc, indent=1) + "\n").encode()
    atomic_write(jpath, lambda f: f.write(text))
    if old_pair is not None:
        with contextlib.suppress(OSError):
            os.unlink(old_pair)
    return jpath


def _old_pair_npz(jpath: Path) -> Path | None:
    """The ``.npz`` of a version-1 program pair at `jpath`, if that is what is there now."""
    with contextlib.suppress(Exception):  # whatever is there now is being replaced; only a clean v1 pair counts
        head = json.loads(jpath.read_bytes()[: 1 << 20])
        if head.get("format") == FORMAT and head.get("version") == 1 and isinstance(head.get("npz"), str):
            npz = jpath.with_name(head["npz"])
            if npz.parent == jpath.parent and npz.suffix == ".npz":
                return npz
    return None


def load_program(path: str | os.PathLike, *, limits: Limits | None = None) -> Program:
    """Load a program saved by `save_program` (`path` may name ``NAME.json`` or the stem). Never executes code from
    the file; every problem raises `FileFormatError` naming the file and the field. `limits` (a
    `dmm.files.Limits`) bounds what the file may declare; version-1 pairs (``NAME.json`` + ``NAME.npz``) load too."""
    limits = limits or DEFAULT_LIMITS
    jpath, npath = pair_paths(path)
    data = read_file(jpath)
    if data[:4] == b"PK\x03\x04" or data[:6] == b"\x93NUMPY":
        raise fail(jpath, "is a .npz or .npy file, not a dmm program file (JSON)")
    doc = check_header(parse_json(data, jpath, "the program file", limits), jpath, FORMAT, (1, VERSION), "program")
    if doc["version"] == 1:
        archive = read_pair_arrays(npath, jpath, doc, limits)
        with_arrays: Callable[[str, str], np.ndarray] = lambda name, field: archive.array(name)
        names = set(n.removesuffix(".npy") for n in archive.names())
    else:
        body = {k: v for k, v in doc.items() if k not in ("format", "version", "sha256")}
        if doc.get("sha256") != canonical_sha256(body):
            raise fail(jpath, "checksum differs (field 'sha256'): the file was changed or damaged after saving")
        stored = want_dict(get(doc, "arrays", jpath), jpath, "'arrays'")
        arrays = {}
        total = 0
        for k, v in stored.items():
            arrays[k] = decode_array(v, jpath, f"'arrays'[{k!r}]", limits)
            total += arrays[k].nbytes
            if total > limits.max_bytes:
                raise fail(jpath, f"field 'arrays' holds more than the limit max_bytes={limits.max_bytes}")
        with_arrays = lambda name, field: arrays[name]
        names = set(arrays)
    return _build(doc, jpath, names, with_arrays, limits)


def _build(doc: dict, jpath: Path, names: set[str], array: Callable[[str, str], np.ndarray],
           limits: Limits) -> Program:
    """The program a checked document describes, built through the ordinary `Program` methods."""

    def ref(a: Any, field: str) -> Any:
        if isinstance(a, dict):
            return _entries(a, jpath, field)
        want_str(a, jpath, field)
        if a not in names:
            raise fail(jpath, f"field {field}: array {short(a)} is missing")
        return array(a, field)

    def step(field: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except FileFormatError:
            raise
        except DMMError as e:
            raise fail(jpath, f"field {field}: {e}") from None
        except Exception as e:  # neuron factories are extension code: any error they raise is the file's fault
            raise fail(jpath, f"field {field}: rejected ({type(e).__name__}: {short(str(e), 200)})") from None

    p = Program(want_bool(doc.get("links_trainable", True), jpath, "'links_trainable'"))
    neurons = want_list(get(doc, "neurons", jpath), jpath, "'neurons'")
    for i, n in enumerate(neurons):
        f = f"'neurons'[{i}]"
        n = want_dict(n, jpath, f)
        name = want_str(get(n, "name", jpath, f), jpath, f"{f}['name']")
        tname = want_str(get(n, "type", jpath, f), jpath, f"{f}['type']")
        config = want_list(get(n, "config", jpath, f), jpath, f"{f}['config']")
        kwargs = {}
        for j, kv in enumerate(config):
            want(isinstance(kv, list) and len(kv) == 2 and isinstance(kv[0], str), jpath, f"{f}['config'][{j}]",
                 "a [name, value] pair", kv)
            kwargs[kv[0]] = _decode(kv[1], jpath, f"{f}['config'][{j}]", limits)
        params_in = want_dict(get(n, "params", jpath, f), jpath, f"{f}['params']")
        params = {k: ref(a, f"{f}['params'][{k!r}]") for k, a in params_in.items()}
        factory = step(f"{f}['type']", lambda: lookup(tname))
        ntype = step(f"{f}['config']", lambda: factory(**kwargs))
        step(f, lambda: p.add(name, Neuron(ntype, params)))
    links = want_list(get(doc, "links", jpath), jpath, "'links'")
    if "weights" not in names:
        raise fail(jpath, "array 'weights' is missing")
    weights = array("weights", "'arrays'['weights']")
    if weights.dtype.kind != "f" or weights.ndim != 1:
        raise fail(jpath, f"array 'weights' must be a vector of floats, not {weights.dtype} of shape {weights.shape}")
    if len(weights) != len(links):
        raise fail(jpath, f"{len(weights)} weights for {len(links)} links (field 'links')")
    for i, (l, w) in enumerate(zip(links, weights)):
        f = f"'links'[{i}]"
        want(isinstance(l, list) and len(l) == 3 and isinstance(l[0], str) and isinstance(l[1], str), jpath, f,
             "[source, destination, trainable]", l)
        trainable = want_bool(l[2], jpath, f"{f}[2] (trainable)")
        step(f, lambda: p.link(l[0], l[1], float(w), trainable=trainable))
    initial = want_dict(get(doc, "initial", jpath), jpath, "'initial'")
    for stream, a in initial.items():
        f = f"'initial'[{stream!r}]"
        value = ref(a, f)
        step(f, lambda: p.set_initial(stream, value))
    return p
