"""Trace files: one ``.npz`` holding every recorded stream (``s0``, ``s1``, ...) and a JSON header ``__meta__``
(format, version, first cycle, each stream's name and kind). Written atomically, read without pickle."""

from __future__ import annotations

import json
import os

import numpy as np

from dmm import FileFormatError, Kind, Trace
from .atomic import atomic_write_npz, open_npz


FORMAT = "dmm-trace"
VERSION = 1


def save_trace(trace: Trace, path: str | os.PathLike) -> None:
    """Write `trace` to `path` (.npz) atomically: its arrays plus a JSON header (kinds, first cycle)."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "first_cycle": int(trace.first_cycle),
        "streams": [{"name": n, "kind": trace.kinds[n].to_json()} for n in trace.names],
    }
    arrays = {f"s{i}": np.asarray(trace[n]) for i, n in enumerate(trace.names)}
    atomic_write_npz(path, {"__meta__": np.array(json.dumps(meta)), **arrays})


def load_trace(path: str | os.PathLike) -> Trace:
    """Read a trace written by `save_trace`; a malformed or truncated file raises `FileFormatError` naming it."""
    with open_npz(path) as z:
        try:
            meta = json.loads(str(z["__meta__"]))
            if meta.get("format") != FORMAT:
                raise FileFormatError(f"{path}: not a dmm trace file (format {meta.get('format')!r})")
            if meta.get("version") != VERSION:
                raise FileFormatError(f"{path}: trace format version {meta.get('version')} is not supported")
            records, kinds = {}, {}
            for i, s in enumerate(meta["streams"]):
                kind = Kind.from_json(s["kind"])
                arr = z[f"s{i}"]
                if arr.shape[1:] != kind.shape:
                    raise FileFormatError(f"{path}: stream {s['name']!r} has shape {arr.shape[1:]}, kind says {kind.shape}")
                records[s["name"]] = arr
                kinds[s["name"]] = kind
            lengths = {a.shape[0] for a in records.values()}
            if len(lengths) > 1:
                raise FileFormatError(f"{path}: streams have different lengths {sorted(lengths)}")
            return Trace(records, kinds, int(meta["first_cycle"]))
        except FileFormatError:
            raise
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
            raise FileFormatError(f"{path}: malformed trace file ({type(e).__name__}: {e})") from None
