"""Trace files: one uncompressed ``.npz`` (format ``dmm-trace``, version 2) whose first member ``header.json`` holds
the format, version, first cycle and each stream's name, kind and member, followed by one ``.npy`` member per
stream (``s0.npy``, ``s1.npy``, ...; numeric dtypes only). Written as one atomic commit, read without pickle, every
header field and every array checked (see `dmm.files.atomic`). Version-1 traces (a ``__meta__`` string member)
still load."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dmm import DMMError, Kind, Trace
from .atomic import (DEFAULT_LIMITS, HEADER, Archive, Limits, atomic_write, check_header, fail, get,
                     parse_json, short, want_dict, want_int, want_list, want_str, write_npz)


FORMAT = "dmm-trace"
VERSION = 2


def save_trace(trace: Trace, path: str | os.PathLike) -> Path:
    """Write `trace` to `path` (.npz) as one atomic commit: its arrays plus a JSON header (kinds, first cycle).
    Returns the path."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "first_cycle": int(trace.first_cycle),
        "streams": [{"name": n, "kind": trace.kinds[n].to_json(), "member": f"s{i}"}
                    for i, n in enumerate(trace.names)],
    }
    arrays = {f"s{i}": np.asarray(trace[n]) for i, n in enumerate(trace.names)}
    return atomic_write(path, lambda f: write_npz(f, header, arrays))


def load_trace(path: str | os.PathLike, *, limits: Limits | None = None) -> Trace:
    """Read a trace written by `save_trace`; a malformed, truncated or hostile file raises `FileFormatError`
    naming it and the field. `limits` (a `dmm.files.Limits`) bounds what the file may declare."""
    limits = limits or DEFAULT_LIMITS
    z = Archive(path, limits=limits)
    names = z.names()
    if HEADER in names:
        meta = parse_json(z.raw(HEADER), path, "the header", limits)
    elif "__meta__.npy" in names:  # version 1: the header is a 0-d string array
        text = z.array("__meta__", kinds="U")
        if text.ndim != 0:
            raise fail(path, "member __meta__ is not a single string")
        meta = parse_json(str(text), path, "the header (__meta__)", limits)
    else:
        raise fail(path, "not a dmm trace file (no header member)")
    check_header(meta, path, FORMAT, (1, VERSION), "trace")
    first = want_int(get(meta, "first_cycle", path), path, "'first_cycle'", lo=-(1 << 62), hi=1 << 62)
    streams = want_list(get(meta, "streams", path), path, "'streams'")
    records, kinds = {}, {}
    for i, s in enumerate(streams):
        f = f"'streams'[{i}]"
        s = want_dict(s, path, f)
        name = want_str(get(s, "name", path, f), path, f"{f}['name']")
        if name in records:
            raise fail(path, f"field {f}['name']: stream {short(name)} appears twice")
        try:
            kind = Kind.from_json(get(s, "kind", path, f))
        except DMMError as e:
            raise fail(path, f"field {f}['kind']: {e}") from None
        if kind.shape is None:
            raise fail(path, f"field {f}['kind']: a recorded stream has a resolved shape, not NETWORK")
        member = get(s, "member", path, f, optional=True, default=f"s{i}")
        if meta["version"] == 1 and member != f"s{i}":
            raise fail(path, f"field {f}['member'] is not part of format version 1")
        member = want_str(member, path, f"{f}['member']")
        if member == "__meta__" or member + ".npy" not in names:
            raise fail(path, f"field {f}['member']: member {short(member)}.npy is missing")
        arr = z.array(member)
        if arr.ndim < 1 or arr.shape[1:] != kind.shape:
            raise fail(path, f"stream {name!r} (member {member}.npy) has shape {arr.shape}; its kind needs "
                             f"(steps, *{kind.shape})")
        records[name] = arr
        kinds[name] = kind
    lengths = {a.shape[0] for a in records.values()}
    if len(lengths) > 1:
        raise fail(path, f"streams have different lengths {sorted(lengths)}")
    try:
        return Trace(records, kinds, first)
    except DMMError as e:
        raise fail(path, str(e)) from None
