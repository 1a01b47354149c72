"""Atomic, pickle-free, bounded file primitives shared by program files, traces and checkpoints.

Writing: every file is written to a temporary file ``.NAME.<pid>.<random>.tmp`` in the same folder, flushed and
fsynced, given the mode the umask asks for (``0o666 & ~umask``), renamed over the real name with `os.replace` (one
atomic commit) and the folder is fsynced. A save killed at any moment leaves the previous file or the new one under
the real name, never a mixture; its temporary file is removed on failure and, if the process died, by the next save
to the same name.

Reading: JSON is parsed with a bounded depth and bounded numbers, zip archives are accepted only with stored
(uncompressed, unencrypted) members whose declared sizes add up to no more than the file, and ``.npy`` members only
with numeric dtypes and with shapes whose size is checked before anything is allocated. Every failure is a
`FileFormatError` naming the file and the field.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import re
import struct
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from dmm import FileFormatError


# ------------------------------------------------------------------------------------------------------- limits


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds a loader enforces before it allocates anything (pass ``limits=Limits(...)`` to a loader).

    - `max_bytes`: the most bytes of array data one file may declare (all arrays together).
    - `max_elements`: the most elements one array or one kind (a neuron's declared shape) may have.
    - `max_json_bytes`: the largest JSON text (a program file, a header) that is parsed.
    - `max_depth`: the deepest nesting of JSON arrays and objects.
    - `max_digits`: the longest number (in characters) in JSON.
    """

    max_bytes: int = 4 << 30
    max_elements: int = 1 << 24
    max_json_bytes: int = 256 << 20
    max_depth: int = 64
    max_digits: int = 64


DEFAULT_LIMITS = Limits()


def fail(path: Any, message: str) -> FileFormatError:
    """The `FileFormatError` for `path` (the message names the field)."""
    return FileFormatError(f"{path}: {message}")


def short(value: Any, n: int = 60) -> str:
    """A repr of `value` cut to `n` characters (for error messages about hostile input)."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails must not hide the error being reported
        text = f"<{type(value).__name__}>"
    return text if len(text) <= n else text[: n - 3] + "..."


# ------------------------------------------------------------------------------------------------------- writing


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc: read it the classic way (and put it back at once)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a newly created file gets under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not every platform can open or fsync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_temps(path: str | os.PathLike, stale_after: float = 3600.0) -> list[Path]:
    """Remove the temporary files that killed saves to `path` left behind; returns what it removed.

    A temporary file of ours (``.NAME.<pid>.<random>.tmp``) is removed when its process is gone; an older one
    without a pid (``.NAME.<random>.tmp``, from earlier versions) when it is older than `stale_after` seconds.
    Temporary files of live processes (saves in progress) are left alone.
    """
    path = Path(path)
    folder = path.parent
    removed = []
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            m = _TEMP.match(name)
            if m and m["name"] == path.name:
                stale = int(m["pid"]) != os.getpid() and not _alive(int(m["pid"]))
            else:
                with contextlib.suppress(OSError):
                    stale = time.time() - entry.stat().st_mtime > stale_after
            if stale:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file through `write(f)` as one atomic commit: temporary file in the same folder, fsync, the umask's
    mode, `os.replace`, fsync of the folder. Leftovers of killed saves to the same name are removed first."""
    path = Path(path)
    folder = path.parent
    clean_temps(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with contextlib.suppress(AttributeError, OSError):
                os.fchmod(f.fileno(), file_mode())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` as one atomic commit (see `atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_link(src: Path, dst: Path) -> None:
    """Make `dst` name the same file as `src` in one atomic step (a hard link renamed into place; a copy written
    atomically where hard links are not available)."""
    clean_temps(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        atomic_write_bytes(dst, src.read_bytes())
        return
    try:
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(dst.parent)


# ---------------------------------------------------------------------------------------------------------- JSON


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON `text` (strings skipped), without recursion."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    return max(itertools.accumulate(1 if c in "[{" else -1 for c in brackets))


def parse_json(data: bytes | str, path: Any, what: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse JSON with bounded size, depth and numbers; duplicate keys are refused."""
    if len(data) > limits.max_json_bytes:
        raise fail(path, f"{what} is {len(data)} bytes, more than the limit max_json_bytes={limits.max_json_bytes}")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise fail(path, f"{what} is not UTF-8 ({e})") from None
    else:
        text = data
    depth = json_depth(text)
    if depth > limits.max_depth:
        raise fail(path, f"{what} is nested {depth} levels deep, more than the limit max_depth={limits.max_depth}")

    def number(s: str, kind: Callable[[str], Any]) -> Any:
        if len(s) > limits.max_digits:
            raise fail(path, f"{what} has a number of {len(s)} characters, more than the limit "
                             f"max_digits={limits.max_digits}")
        return kind(s)

    def pairs(items: list[tuple[str, Any]]) -> dict:
        out = dict(items)
        if len(out) != len(items):
            dup = next(k for i, (k, _) in enumerate(items) if k in dict(items[:i]))
            raise fail(path, f"{what} has the key {short(dup)} twice in one object")
        return out

    try:
        return json.loads(text, parse_int=lambda s: number(s, int), parse_float=lambda s: number(s, float),
                          object_pairs_hook=pairs)
    except FileFormatError:
        raise
    except (ValueError, RecursionError, MemoryError) as e:  # JSONDecodeError is a ValueError
        raise fail(path, f"not valid JSON ({what}; {type(e).__name__}: {e})") from None


def canonical_sha256(value: Any) -> str:
    """SHA-256 of the canonical JSON text of `value` (sorted keys, no spaces): the same before saving and after
    parsing, since JSON numbers and strings round-trip exactly."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------- field checks


def where(ctx: str, key: Any) -> str:
    return f"{ctx}[{key!r}]" if ctx else repr(key)


def get(obj: Mapping, key: str, path: Any, ctx: str = "", optional: bool = False, default: Any = None) -> Any:
    """``obj[key]``, or a `FileFormatError` naming the field when it is missing."""
    if key not in obj:
        if optional:
            return default
        raise fail(path, f"field {where(ctx, key)} is missing")
    return obj[key]


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def want(ok: bool, path: Any, field: str, expected: str, value: Any) -> None:
    if not ok:
        raise fail(path, f"field {field} must be {expected}, not {short(value)}")


def want_dict(x: Any, path: Any, field: str) -> dict:
    want(isinstance(x, dict), path, field, "an object", x)
    return x


def want_list(x: Any, path: Any, field: str) -> list:
    want(isinstance(x, list), path, field, "a list", x)
    return x


def want_str(x: Any, path: Any, field: str) -> str:
    want(isinstance(x, str), path, field, "a string", x)
    return x


def want_int(x: Any, path: Any, field: str, lo: int | None = None, hi: int | None = None) -> int:
    want(is_int(x), path, field, "an integer", x)
    if lo is not None and x < lo or hi is not None and x > hi:
        raise fail(path, f"field {field} = {short(x)} is out of range [{lo}, {hi}]")
    return x


def want_bool(x: Any, path: Any, field: str) -> bool:
    want(isinstance(x, bool), path, field, "true or false", x)
    return x


def check_header(header: Any, path: Any, fmt: str, versions: tuple[int, ...], what: str) -> dict:
    """A header that is an object of format `fmt` and a supported integer version."""
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise fail(path, f"not a dmm {what} file (field 'format' is not {fmt!r})")
    version = header.get("version")
    if not is_int(version) or version not in versions:
        raise fail(path, f"{what} format version {short(version)} is not supported (field 'version'; this dmm "
                         f"reads versions {', '.join(map(str, versions))})")
    return header


# ------------------------------------------------------------------------------------------------------ arrays

NUMERIC = "biuf"  # bool, signed and unsigned integers, floats: the only dtypes a dmm file stores


def check_dtype(dtype: Any, path: Any, field: str, kinds: str = NUMERIC) -> np.dtype:
    """A plain (non-structured, non-object) dtype of one of `kinds`."""
    try:
        dt = np.dtype(dtype)
    except Exception:  # np.dtype raises TypeError, ValueError, ... for hostile descriptions
        raise fail(path, f"field {field}: {short(dtype)} is not a dtype") from None
    if dt.kind not in kinds or dt.fields is not None or dt.subdtype is not None or dt.hasobject:
        raise fail(path, f"field {field}: dtype {dt.str} is not allowed (only {describe_kinds(kinds)})")
    return dt


def describe_kinds(kinds: str) -> str:
    names = {"b": "bool", "i": "signed integers", "u": "unsigned integers", "f": "floats", "U": "strings"}
    return ", ".join(names[k] for k in kinds)


def check_shape(shape: Any, path: Any, field: str, limits: Limits, itemsize: int = 1) -> tuple[int, ...]:
    """A shape (list or tuple of non-negative ints) whose size is within the limits; checked before allocating."""
    want(isinstance(shape, (list, tuple)) and all(is_int(d) and d >= 0 for d in shape), path, field,
         "a list of non-negative integers", shape)
    n = math.prod(shape)
    if n > limits.max_elements:
        raise fail(path, f"field {field}: shape {short(tuple(shape))} has {n} elements, more than the limit "
                         f"max_elements={limits.max_elements}")
    if n * itemsize > limits.max_bytes:
        raise fail(path, f"field {field}: shape {short(tuple(shape))} needs {n * itemsize} bytes, more than the "
                         f"limit max_bytes={limits.max_bytes}")
    return tuple(shape)


def encode_array(a: np.ndarray) -> dict:
    """An array as JSON: dtype, shape and the base64 of its little-endian C-order bytes."""
    a = np.asarray(a)
    if a.dtype.kind not in NUMERIC:
        raise FileFormatError(f"cannot save an array of dtype {a.dtype} (only {describe_kinds(NUMERIC)})")
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)  # (np.ascontiguousarray would make a 0-d array 1-d)
    return {"dtype": a.dtype.str, "shape": list(a.shape),
            "data": base64.b64encode(a.tobytes(order="C")).decode("ascii")}


def decode_array(obj: Any, path: Any, field: str, limits: Limits, kinds: str = NUMERIC) -> np.ndarray:
    """The inverse of `encode_array`, every field checked and the size bounded before decoding."""
    obj = want_dict(obj, path, field)
    dt = check_dtype(want_str(get(obj, "dtype", path, field), path, f"{field}['dtype']"), path,
                     f"{field}['dtype']", kinds)
    shape = check_shape(get(obj, "shape", path, field), path, f"{field}['shape']", limits, dt.itemsize)
    data = want_str(get(obj, "data", path, field), path, f"{field}['data']")
    nbytes = math.prod(shape) * dt.itemsize
    if len(data) != 4 * ((nbytes + 2) // 3):
        raise fail(path, f"field {field}['data'] holds {len(data)} base64 characters; shape {shape} of "
                         f"{dt.str} needs {4 * ((nbytes + 2) // 3)}")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError as e:
        raise fail(path, f"field {field}['data'] is not base64 ({e})") from None
    if len(raw) != nbytes:
        raise fail(path, f"field {field}['data'] decodes to {len(raw)} bytes, not {nbytes}")
    return np.frombuffer(raw, dt).reshape(shape).astype(dt.newbyteorder("="))


# ------------------------------------------------------------------------------------------------- zip / npz

HEADER = "header.json"  # the JSON member of a dmm .npz (traces and checkpoints, format version 2)


def write_npz(f: BinaryIO, header: dict, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an uncompressed .npz to `f`: the JSON `header` as the first member ``header.json``, then one ``.npy``
    member per array (numeric dtypes only). `np.load` reads it."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(HEADER, json.dumps(header, indent=1) + "\n")
        for name, a in arrays.items():
            a = np.asarray(a)
            if a.dtype.kind not in NUMERIC or a.dtype.fields is not None:
                raise FileFormatError(f"cannot save {name}: dtype {a.dtype} (only {describe_kinds(NUMERIC)})")
            with zf.open(name + ".npy", "w", force_zip64=True) as m:
                np.lib.format.write_array(m, a, allow_pickle=False)


_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError,
               RuntimeError, struct.error, KeyError, IndexError, OverflowError, UnicodeDecodeError, MemoryError,
               TypeError)


class Archive:
    """A .npz (zip) archive opened for checked reading: stored members only, no encryption, unique names, declared
    sizes within the file and the limits; members are read on demand, ``.npy`` members parsed without pickle."""

    def __init__(self, path: Any, data: bytes | None = None, limits: Limits = DEFAULT_LIMITS):
        self.path, self.limits = path, limits
        try:
            self.data = Path(path).read_bytes() if data is None else data
        except FileNotFoundError:
            raise fail(path, "no such file") from None
        except IsADirectoryError:
            raise fail(path, "is a folder, not a file") from None
        except OSError as e:
            raise fail(path, f"cannot be read ({e})") from None
        head = self.data[:6]
        if head == b"\x93NUMPY":
            raise fail(path, "is a single .npy array, not a dmm .npz file")
        if head[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise fail(path, "unreadable or truncated .npz (it does not start as a zip file)")
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(self.data))
            infos = self.zf.infolist()
        except _ZIP_ERRORS as e:
            raise fail(path, f"unreadable or truncated .npz ({type(e).__name__}: {e})") from None
        self.infos: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = info.filename
            if info.flag_bits & 0x1:
                raise fail(path, f"member {short(name)} is encrypted (dmm files are never encrypted)")
            if info.compress_type != zipfile.ZIP_STORED:
                raise fail(path, f"member {short(name)} uses zip compression method {info.compress_type}; dmm "
                                 f"files are stored uncompressed (method 0)")
            if name in self.infos:
                raise fail(path, f"member {short(name)} appears twice")
            self.infos[name] = info
            total += info.file_size
        if total > len(self.data):  # stored members cannot hold more than the file: overlapping entries
            raise fail(path, f"members declare {total} bytes, more than the {len(self.data)} bytes of the file")
        if total > limits.max_bytes:
            raise fail(path, f"members declare {total} bytes, more than the limit max_bytes={limits.max_bytes}")

    def names(self) -> list[str]:
        return list(self.infos)

    def raw(self, name: str) -> bytes:
        """The bytes of member `name` (CRC checked)."""
        if name not in self.infos:
            raise fail(self.path, f"member {short(name)} is missing")
        try:
            data = self.zf.read(self.infos[name])
        except _ZIP_ERRORS as e:
            raise fail(self.path, f"member {short(name)} is unreadable ({type(e).__name__}: {e})") from None
        if len(data) != self.infos[name].file_size:
            raise fail(self.path, f"member {short(name)} is truncated")
        return data

    def array(self, name: str, kinds: str = NUMERIC) -> np.ndarray:
        """The ``.npy`` member `name` (without its ``.npy``), dtype of `kinds` and size checked before allocating."""
        member = name + ".npy"
        raw = self.raw(member)
        field = f"member {member}"
        f = io.BytesIO(raw)
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=4096)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=4096)
            else:
                raise ValueError(f".npy format version {version} is not supported")
        except (ValueError, SyntaxError, RecursionError, MemoryError, TypeError, OverflowError, KeyError,
                struct.error, EOFError, UnicodeDecodeError) as e:
            raise fail(self.path, f"{field} is not a valid .npy array ({type(e).__name__}: {e})") from None
        dt = check_dtype(dtype, self.path, field, kinds)
        if dt.kind == "O" or dt.hasobject:  # unreachable through check_dtype; kept as the pickle guard
            raise fail(self.path, f"{field} holds pickled objects (refused: dmm files never contain pickle)")
        shape = check_shape(shape, self.path, f"{field} shape", self.limits, dt.itemsize)
        offset = f.tell()
        nbytes = math.prod(shape) * dt.itemsize
        if len(raw) - offset != nbytes:
            raise fail(self.path, f"{field} has {len(raw) - offset} data bytes; shape {shape} of {dt.str} needs "
                                  f"{nbytes}")
        a = np.frombuffer(raw, dt, count=math.prod(shape), offset=offset)
        return a.reshape(shape, order="F" if fortran else "C").astype(dt.newbyteorder("="), order="C")


def read_file(path: Path) -> bytes:
    """The bytes of `path`, or a `FileFormatError` naming it (missing, unreadable)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise fail(path, "no such file") from None
    except OSError as e:
        raise fail(path, f"cannot be read ({e})") from None


def read_pair_header(jpath: Path, limits: Limits) -> Any:
    """The parsed JSON of a version-1 file pair's ``NAME.json`` (or a `FileFormatError`)."""
    return parse_json(read_file(jpath), jpath, "the header", limits)


def read_pair_arrays(npath: Path, jpath: Path, header: dict, limits: Limits) -> Archive:
    """The .npz of a version-1 file pair, checked against the SHA-256 its header records."""
    try:
        data = npath.read_bytes()
    except OSError:
        raise fail(npath, f"missing (the arrays of {jpath.name})") from None
    if hashlib.sha256(data).hexdigest() != header.get("npz_sha256"):
        raise fail(npath, f"does not match {jpath.name} (checksum differs: truncated or replaced)")
    return Archive(npath, data, limits)


def pair_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The ``(NAME.json, NAME.npz)`` pair of a name; `path` may name either file or the stem."""
    p = Path(path)
    if p.suffix in (".json", ".npz"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".npz")
