"""Property-based fuzzing of the three file formats (programs, traces, checkpoints): truncation, byte flips and
insertions, wrong types and hostile values in any header field, huge and non-finite numbers, deep nesting, wrong
and pickled members. Every case must end in a valid load or a `dmm.DMMError` naming the file, nothing else, and a
pickle payload must never run (it would leave a marker file).

The default run makes FUZZ_EXAMPLES examples per test (about 20 s in all); ``-m slow`` runs the larger suite
(SLOW_EXAMPLES per test). ``DMM_FUZZ_EXAMPLES`` overrides both."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmm
import dmm.files
import programs
from dmm.files.atomic import canonical_sha256
from test_files import rich_program
from test_files_legacy import small_state

FUZZ_EXAMPLES = int(os.environ.get("DMM_FUZZ_EXAMPLES", 150))
SLOW_EXAMPLES = int(os.environ.get("DMM_FUZZ_EXAMPLES", 1500))
FORMATS = ("program", "trace", "checkpoint")
COUNTS: dict[tuple[str, str], int] = {}


class Payload:
    """Unpickling this creates the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A valid file of each format (bytes) and a scratch folder."""
    d = tmp_path_factory.mktemp("fuzz")
    dmm.files.save_program(rich_program(), d / "p.json")
    dmm.files.save_trace(dmm.compile(programs.duplicate_detector()).run(6), d / "t.npz")
    dmm.files.save_checkpoint(d / "ck.npz", small_state(), {"note": "x"})
    return {"dir": d, "program": (d / "p.json").read_bytes(), "trace": (d / "t.npz").read_bytes(),
            "checkpoint": (d / "ck.npz").read_bytes(), "marker": d / "PWNED"}


def load(fmt: str, path: Path):
    if fmt == "program":
        return dmm.files.load_program(path)
    if fmt == "trace":
        return dmm.files.load_trace(path)
    dmm.files.read_checkpoint_meta(path)
    return dmm.files.load_checkpoint(path, small_state())


def check(base, fmt: str, data: bytes, what: str) -> None:
    """Write `data` as a file of `fmt` and load it: a valid load, or a dmm error naming the file."""
    COUNTS[fmt, what] = COUNTS.get((fmt, what), 0) + 1
    folder = base["dir"] / fmt  # one folder per format: a checkpoint falls back to a version-1 NAME.json beside it
    folder.mkdir(exist_ok=True)
    path = folder / {"program": "case.json", "trace": "case.npz", "checkpoint": "case.npz"}[fmt]
    path.write_bytes(data)
    try:
        load(fmt, path)
    except dmm.DMMError as e:
        assert str(path) in str(e), e
    assert not base["marker"].exists(), "a pickle payload ran"


# ------------------------------------------------------------------------------------------------ strategies

hostile = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**18, max_value=10**60)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["<f4", "|O", "<c16", "V8", "network", "", "a0", "header", "s0", "weights"]),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)


def paths(value, prefix=()):
    """Every path to a value inside a JSON document."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, prefix + (i,))


def replaced(doc, path, new):
    if not path:
        return new
    doc = json.loads(json.dumps(doc))
    obj = doc
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = new
    return doc


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def zipped(m: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for k, v in m.items():
            zf.writestr(k, v)
    return buf.getvalue()


def header_of(base, fmt):
    if fmt == "program":
        return json.loads(base["program"])
    return json.loads(members(base[fmt])["header.json"])


def with_header(base, fmt, doc) -> bytes:
    """The file of `fmt` with header `doc`, resealed (programs get a fresh checksum) so the edit reaches every
    check behind the checksum."""
    if fmt == "program":
        if isinstance(doc, dict):
            doc = {**doc, "sha256": canonical_sha256({k: v for k, v in doc.items()
                                                      if k not in ("format", "version", "sha256")})}
        return json.dumps(doc).encode()
    m = members(base[fmt])
    m["header.json"] = json.dumps(doc).encode()
    return zipped(m)


def npy(a, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def body_cases(draw_settings):
    return settings(max_examples=draw_settings, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------------- the tests


def _bytes_case(base, fmt, data):
    raw = base[fmt]
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "zero-run"]))
    if kind == "truncate":
        out = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "flip":
        b = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        out = bytes(b)
    elif kind == "insert":
        i = data.draw(st.integers(0, len(raw)))
        out = raw[:i] + data.draw(st.binary(min_size=1, max_size=16)) + raw[i:]
    else:
        i = data.draw(st.integers(0, len(raw) - 1))
        out = raw[:i] + b"\0" * data.draw(st.integers(1, 64)) + raw[i + 64:]
    check(base, fmt, out, "bytes")


def _field_case(base, fmt, data):
    doc = header_of(base, fmt)
    path = data.draw(st.sampled_from(list(paths(doc))))
    value = data.draw(hostile | st.sampled_from(["[" * 200, {"$kind": {"name": "k", "shape": [8192, 8192]}},
                                                   {"$kind": {"name": "k", "shape": [1e300]}}, 2**63, -1]))
    check(base, fmt, with_header(base, fmt, replaced(doc, path, value)), "fields")


def _text_case(base, fmt, data):
    """Hostile JSON text in the header: deep nesting, long numbers, constants, duplicate keys."""
    doc = header_of(base, fmt)
    text = json.dumps(doc)
    inject = data.draw(st.sampled_from(["[" * 5000, "9" * 5000, "1e400", "-1e400", "NaN", "Infinity",
                                        '{"a": 1, "a": 2}', '"\\ud800"', "0." + "1" * 200]))
    key = data.draw(st.sampled_from(["version", "first_cycle", "step", "links", "streams", "leaves", "meta"]))
    if f'"{key}": ' in text:
        i = text.index(f'"{key}": ') + len(key) + 4
        text = text[:i] + inject + ("" if inject.startswith("[") else ", \"_x\": ") + text[i:]
    else:
        text = text[:-1] + f', "{key}": {inject}}}'
    if fmt == "program":
        out = text.encode()
    else:
        m = members(base[fmt])
        m["header.json"] = text.encode()
        out = zipped(m)
    check(base, fmt, out, "json text")


def _member_case(base, fmt, data):
    """Wrong, missing, extra, duplicated or pickled array members (programs: the arrays object)."""
    marker = str(base["marker"])
    bad = data.draw(st.sampled_from([
        np.array([Payload(marker)], dtype=object), np.zeros(3, "V4"), np.zeros(3, "S2"), np.zeros(3, "U2"),
        np.zeros(3, "M8[s]"), np.zeros(3, np.complex64), np.float32(2.0), np.zeros((2, 3), np.float64),
        np.zeros((0,), np.uint64), np.zeros((6, 1), np.float32), np.zeros((6, 3), bool)]))
    if fmt == "program":
        doc = header_of(base, fmt)
        name = data.draw(st.sampled_from(sorted(doc["arrays"])))
        a = np.asarray(bad)
        if a.dtype.kind in "biuf":
            import base64
            doc["arrays"][name] = {"dtype": a.dtype.str, "shape": list(a.shape),
                                   "data": base64.b64encode(a.tobytes()).decode()}
        else:
            doc["arrays"][name] = {"dtype": a.dtype.str, "shape": list(a.shape), "data": ""}
        check(base, fmt, with_header(base, fmt, doc), "members")
        return
    m = members(base[fmt])
    names = [k for k in m if k != "header.json"]
    action = data.draw(st.sampled_from(["replace", "drop", "rename", "pickle-all"]))
    name = data.draw(st.sampled_from(names))
    if action == "replace":
        m[name] = npy(bad, allow_pickle=True)
    elif action == "drop":
        del m[name]
    elif action == "rename":
        m[name.replace(".npy", "x.npy")] = m.pop(name)
    else:
        for k in names:
            m[k] = npy(np.array([Payload(marker)], dtype=object), allow_pickle=True)
    check(base, fmt, zipped(m), "members")


CASES = {"bytes": _bytes_case, "fields": _field_case, "json text": _text_case, "members": _member_case}


def run_case(base, fmt, kind, n):
    @body_cases(n)
    @given(data=st.data())
    def inner(data):
        CASES[kind](base, fmt, data)

    inner()


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz(base, fmt, kind):
    run_case(base, fmt, kind, FUZZ_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_fuzz_large(base, fmt, kind):
    run_case(base, fmt, kind, SLOW_EXAMPLES)


def test_report_counts(base):
    """Runs last in this module: prints how many cases each format got (pytest -s shows it)."""
    for fmt in FORMATS:
        total = sum(n for (f, _), n in COUNTS.items() if f == fmt)
        print(f"fuzz {fmt}: {total} cases " + ", ".join(f"{k} {n}" for (f, k), n in sorted(COUNTS.items()) if f == fmt))


@pytest.mark.slow
def test_report_counts_large(base):
    """The same report for the ``-m slow`` run."""
    test_report_counts(base)
