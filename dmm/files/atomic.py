"""Atomic, pickle-free file primitives shared by program files, traces and checkpoints.

Every file is written to a temporary file in the same folder and renamed into place, so a crash never leaves a
half-written file under the real name. Arrays are read with ``allow_pickle=False`` and every read failure becomes a
`FileFormatError` naming the file.
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

from dmm import DMMError, FileFormatError


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
    """The bytes of an uncompressed .npz holding `arrays`."""
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


def pair_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The ``(NAME.json, NAME.npz)`` pair of a two-file format; `path` may name either file or the stem."""
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
