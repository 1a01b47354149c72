"""Program files.

A program is saved as two files side by side: ``NAME.json`` (format, version, kinds, neurons with their registered
type names and configurations, links, the names of the arrays) and ``NAME.npz`` (link weights, initial values,
neuron parameters). The JSON holds the SHA-256 of the .npz, so a pair that does not belong together is detected.
Every file is written to a temporary file in the same folder and renamed into place, so a crash never leaves a
half-written file under the real name. Loading parses JSON and NumPy arrays only (``allow_pickle=False``), looks
neuron types up in the registry by name, and rebuilds the program through the ordinary `Program` methods, so a
loaded program is validated exactly like a written one. Any problem raises `FileFormatError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from dmm import DMMError, FileFormatError, Kind, Neuron, Program, lookup
from .atomic import atomic_write_bytes, npz_bytes, open_npz, pair_paths, read_arrays, read_header


FORMAT = "dmm-program"
VERSION = 1


def _encode(value: Any) -> Any:
    if isinstance(value, Kind):
        return {"$kind": value.to_json()}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) != {"$kind"}:
            raise FileFormatError(f"unexpected object {value!r} in a neuron configuration")
        return Kind.from_json(value["$kind"])
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def _entries(stored: dict) -> tuple:
    """Matrix entries as stored in JSON: {"entries": [[src, dst, value], ...]}."""
    return tuple(tuple(e) for e in stored["entries"])


def save_program(program: Program, path: str | os.PathLike) -> tuple[Path, Path]:
    """Save `program` as ``NAME.json`` + ``NAME.npz`` (`path` may name either, or the stem). Returns both paths."""
    jpath, npath = pair_paths(path)
    arrays: dict[str, np.ndarray] = {"weights": np.array([l.weight for l in program.links], np.float64)}
    neurons = []
    for i, (name, neuron) in enumerate(program.neurons.items()):
        params: dict[str, Any] = {}
        for k, v in neuron.params.items():
            if isinstance(v, tuple):  # matrix entries of a NETWORK-kind parameter
                params[k] = {"entries": [list(e) for e in v]}
            else:
                arrays[f"p{i}.{k}"] = v
                params[k] = f"p{i}.{k}"
        neurons.append({"name": name, "type": neuron.type.name,
                        "config": [[k, _encode(v)] for k, v in neuron.type.config], "params": params})
    initial = {}
    for i, (stream, v) in enumerate(program.initial.items()):
        if isinstance(v, tuple):  # NETWORK-kind entries
            initial[stream] = {"entries": [list(e) for e in v]}
        else:
            arrays[f"y{i}"] = v
            initial[stream] = f"y{i}"
    data = npz_bytes(arrays)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "npz": npath.name,
        "npz_sha256": hashlib.sha256(data).hexdigest(),
        "neurons": neurons,
        "links": [[l.src, l.dst, l.trainable] for l in program.links],
        "initial": initial,
    }
    atomic_write_bytes(npath, data)
    atomic_write_bytes(jpath, (json.dumps(meta, indent=1) + "\n").encode())
    return jpath, npath


def load_program(path: str | os.PathLike) -> Program:
    """Load a program saved by `save_program`. Never executes code from the files; raises `FileFormatError`."""
    jpath, npath = pair_paths(path)
    meta = read_header(jpath, FORMAT, VERSION, "program")
    data = read_arrays(npath, jpath, meta)
    with open_npz(npath, data) as z:
        try:
            p = Program()
            for n in meta["neurons"]:
                factory = lookup(n["type"])
                ntype = factory(**{k: _decode(v) for k, v in n["config"]})
                params = {k: _entries(a) if isinstance(a, dict) else z[a] for k, a in n["params"].items()}
                p.add(n["name"], Neuron(ntype, params))
            weights = z["weights"]
            if len(weights) != len(meta["links"]):
                raise FileFormatError(f"{npath}: {len(weights)} weights for {len(meta['links'])} links")
            for (src, dst, trainable), w in zip(meta["links"], weights):
                p.link(src, dst, float(w), trainable=bool(trainable))
            for stream, a in meta["initial"].items():
                if isinstance(a, dict):
                    p.set_initial(stream, _entries(a))
                else:
                    p.set_initial(stream, z[a])
        except FileFormatError:
            raise
        except DMMError as e:
            raise FileFormatError(f"{jpath}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise FileFormatError(f"{jpath}: malformed program file ({type(e).__name__}: {e})") from None
    return p
