"""Program files and the atomic, pickle-free file primitives shared by traces and checkpoints.

A program is saved as two files side by side: ``NAME.json`` (format, version, kinds, neurons with their registered
type names and configurations, links, the names of the arrays) and ``NAME.npz`` (link weights, initial values,
neuron parameters). The JSON holds the SHA-256 of the .npz, so a pair that does not belong together is detected.
Every file is written to a temporary file in the same folder and renamed into place, so a crash never leaves a
half-written file under the real name. Loading parses JSON and NumPy arrays only (``allow_pickle=False``), looks
neuron types up in the registry by name, and rebuilds the program through the ordinary `Program` methods, so a
loaded program is validated exactly like a written one. Any problem raises `FileFormatError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DMMError, FileFormatError
from .kinds import Kind


FORMAT = "dmm-program"
VERSION = 1


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def atomic_write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> bytes:
    """Write arrays to a .npz atomically; returns the bytes written."""
    data = npz_bytes(arrays)
    atomic_write_bytes(path, data)
    return data


@contextlib.contextmanager
def open_npz(path: str | os.PathLike, data: bytes | None = None) -> Iterator[Any]:
    """Open a .npz without pickle, turning every read failure into `FileFormatError` naming `path`."""
    try:
        if data is None:
            data = Path(path).read_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            yield z
    except DMMError:
        raise
    except FileNotFoundError:
        raise FileFormatError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise FileFormatError(f"{path}: unreadable or truncated .npz ({type(e).__name__}: {e})") from None


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


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".json", ".npz"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".npz")


def read_header(jpath: Path, fmt: str, version: int, what: str) -> dict:
    """The JSON header of a file pair, checked for its format and version."""
    try:
        header = json.loads(jpath.read_text())
    except FileNotFoundError:
        raise FileFormatError(f"{jpath}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FileFormatError(f"{jpath}: not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise FileFormatError(f"{jpath}: not a dmm {what} file")
    if header.get("version") != version:
        raise FileFormatError(f"{jpath}: {what} format version {header.get('version')!r} is not supported")
    return header


def read_arrays(npath: Path, jpath: Path, header: dict) -> bytes:
    """The bytes of the .npz of a file pair, checked against the SHA-256 its header records."""
    try:
        data = npath.read_bytes()
    except OSError:
        raise FileFormatError(f"{npath}: missing (the arrays of {jpath.name})") from None
    if hashlib.sha256(data).hexdigest() != header.get("npz_sha256"):
        raise FileFormatError(f"{npath}: does not match {jpath.name} (checksum differs: truncated or replaced)")
    return data


def save_program(program: Any, path: str | os.PathLike) -> tuple[Path, Path]:
    """Save `program` as ``NAME.json`` + ``NAME.npz`` (`path` may name either, or the stem). Returns both paths."""
    jpath, npath = _paths(path)
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


def load_program(path: str | os.PathLike) -> Any:
    """Load a program saved by `save_program`. Never executes code from the files; raises `FileFormatError`."""
    from .neuron import Neuron, lookup
    from .program import Program

    jpath, npath = _paths(path)
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
