"""Each failure measured when program files, traces and checkpoints were attacked (see the issue), reproduced: every
one now ends in a `dmm.FileFormatError` naming the file and the field, and the file modes follow the umask."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zipfile

import numpy as np
import pytest

import dmm
import dmm.files
import programs
from test_files_legacy import save_checkpoint_v1, save_program_v1, small_state


def trace():
    return dmm.compile(programs.duplicate_detector()).run(10)


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def rewrite(path, header=None, **arrays) -> None:
    """Rewrite a dmm .npz with a new header (a JSON value, or raw text) and/or members (arrays or raw bytes)."""
    m = members(path)
    if header is not None:
        m["header.json"] = (header if isinstance(header, str) else json.dumps(header)).encode()
    for name, a in arrays.items():
        if isinstance(a, bytes):
            m[name + ".npy"] = a
        else:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(a), allow_pickle=True)
            m[name + ".npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for k, v in m.items():
            zf.writestr(k, v)


def header(path) -> dict:
    return json.loads(members(path)["header.json"])


def refused(load, path, match):
    with pytest.raises(dmm.FileFormatError, match=match) as e:
        load(path)
    assert str(path) in str(e.value)


@pytest.fixture
def tpath(tmp_path):
    path = tmp_path / "t.npz"
    dmm.files.save_trace(trace(), path)
    return path


@pytest.fixture
def cpath(tmp_path):
    path = tmp_path / "ck.npz"
    dmm.files.save_checkpoint(path, small_state())
    return path


def load_ck(path):
    return dmm.files.load_checkpoint(path, small_state())


# ------------------------------------------------------------------------------------------------------ headers


def test_deep_nesting_and_long_numbers(tmp_path, tpath):
    (tmp_path / "p.json").write_text("[" * 100000)
    refused(dmm.files.load_program, tmp_path / "p.json", "nested 100000 levels deep, more than the limit max_depth")
    rewrite(tpath, "[" * 100000)
    refused(dmm.files.load_trace, tpath, "nested 100000 levels deep")
    (tmp_path / "q.json").write_text('{"format": "dmm-program", "version": ' + "9" * 5000 + "}")
    refused(dmm.files.load_program, tmp_path / "q.json", "a number of 5000 characters, more than the limit max_digits")
    # a configuration nested 700 deep (it used to reach a RecursionError in _decode)
    dmm.files.save_program(programs.duplicate_detector(), tmp_path / "d")
    text = (tmp_path / "d.json").read_text().replace('"config": [', '"config": [["x", ' + "[" * 700 + "]" * 700 + "], ", 1)
    (tmp_path / "d.json").write_text(text)
    refused(dmm.files.load_program, tmp_path / "d.json", "nested 70[0-9] levels deep")
    # the limits are options
    with pytest.raises(dmm.FileFormatError, match="max_depth=2"):
        dmm.files.load_trace(tpath, limits=dmm.files.Limits(max_depth=2))


@pytest.mark.parametrize("meta", [[1, 2], 5, None, "x"])
def test_trace_header_that_is_not_an_object(tpath, meta):
    rewrite(tpath, json.dumps(meta))
    refused(dmm.files.load_trace, tpath, "not a dmm trace file")


@pytest.mark.parametrize("edit, match", [
    (lambda h: h.update(first_cycle=float("inf")), "'first_cycle' must be an integer, not inf"),
    (lambda h: h.update(first_cycle=2.0), "'first_cycle' must be an integer"),
    (lambda h: h.update(version=True), "version True is not supported"),
    (lambda h: h["streams"][0]["kind"].update(shape=[1e400]), "'shape' must be a list of at most 32 integers"),
    (lambda h: h["streams"][0]["kind"].update(shape=[2.7]), "'shape' must be a list of at most 32 integers"),
    (lambda h: h["streams"][0].update(name=7), r"'streams'\[0\]\['name'\] must be a string"),
    (lambda h: h["streams"][1].update(name=h["streams"][0]["name"]), "appears twice"),
    (lambda h: h["streams"][0].update(member="__meta__"), "missing"),
    (lambda h: h.update(streams={}), "'streams' must be a list"),
])
def test_trace_header_fields(tpath, edit, match):
    h = header(tpath)
    edit(h)
    rewrite(tpath, json.dumps(h))
    refused(dmm.files.load_trace, tpath, match)


# ------------------------------------------------------------------------------------------------------- arrays


def test_zero_d_stream_and_bad_dtypes(tpath):
    first = header(tpath)["streams"][0]["member"]
    rewrite(tpath, **{first: np.float32(1.0)})
    refused(dmm.files.load_trace, tpath, "has shape ()")
    for bad in [np.zeros((10, 1), "V4"), np.zeros((10, 1), "S3"), np.zeros((10, 1), "U3"),
                np.zeros((10, 1), "M8[s]"), np.zeros((10, 1), np.complex64), np.array([[object()]] * 10)]:
        rewrite(tpath, **{first: bad})
        refused(dmm.files.load_trace, tpath, f"dtype {re.escape(bad.dtype.str)} is not allowed")


def test_npy_passed_off_as_npz(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw)
    refused(dmm.files.load_trace, tmp_path / "t.npz", "is a single .npy array")
    (tmp_path / "ck.npz").write_bytes(raw)
    refused(load_ck, tmp_path / "ck.npz", "is a single .npy array")
    (tmp_path / "p.json").write_bytes(raw)
    refused(dmm.files.load_program, tmp_path / "p.json", "is a .npz or .npy file")
    # and as the arrays of a version-1 pair (checksum made to match)
    save_program_v1(programs.duplicate_detector(), tmp_path / "v1")
    (tmp_path / "v1.npz").write_bytes(raw)
    meta = json.loads((tmp_path / "v1.json").read_text())
    import hashlib
    meta["npz_sha256"] = hashlib.sha256(raw).hexdigest()
    (tmp_path / "v1.json").write_text(json.dumps(meta))
    refused(dmm.files.load_program, tmp_path / "v1.npz", "is a single .npy array")


def patch_zip(data: bytes, local_off: int, central_off: int, value: int, width: int = 2) -> bytes:
    """Set a field of every local (PK\\3\\4) and central (PK\\1\\2) header."""
    b = bytearray(data)
    for sig, off in ((b"PK\x03\x04", local_off), (b"PK\x01\x02", central_off)):
        if off is None:
            continue
        i = b.find(sig)
        while i >= 0:
            b[i + off:i + off + width] = value.to_bytes(width, "little")
            i = b.find(sig, i + 4)
    return bytes(b)


@pytest.mark.parametrize("what, local, central, value, match", [
    ("method 99", 8, 10, 99, "compression method 99"),
    ("method 1", 8, 10, 1, "compression method 1;"),
    ("deflate", 8, 10, 8, "compression method 8"),
    ("encrypted", 6, 8, 1, "is encrypted"),
    ("huge size", None, 24, 0x7FFFFFFF, "members declare .* bytes, more than the"),
])
def test_zip_features_are_refused(tpath, cpath, what, local, central, value, match):
    for path, load in ((tpath, dmm.files.load_trace), (cpath, load_ck)):
        path.write_bytes(patch_zip(path.read_bytes(), local, central, value, 4 if central == 24 else 2))
        refused(load, path, match)


def test_declared_sizes_are_bounded_before_allocating(tpath):
    first = header(tpath)["streams"][0]["member"]
    text = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }".ljust(117) + b"\n"
    fake = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    rewrite(tpath, **{first: fake})
    refused(dmm.files.load_trace, tpath, "has 1000000000000 elements, more than the limit max_elements")
    fake = fake.replace(b"(1000000000000,)", b"(3, 4)           ")
    rewrite(tpath, **{first: fake})
    refused(dmm.files.load_trace, tpath, r"data bytes; shape \(3, 4\) of <f8 needs 96")


# ---------------------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("edit, match", [
    *[(lambda h, v=v: h.update(leaves=v), "'leaves' must be a list") for v in ["abc", {}, None, 5]],
    (lambda h: h.update(leaves=[]), "structure of the template"),
    (lambda h: h.update(leaves=[5, 6, 7]), r"'leaves'\[0\] must be an object"),
    *[(lambda h, v=v: h.update(meta=v), "'meta' must be an object") for v in [[1], None, 5]],
    *[(lambda h, v=v: h["leaves"][0].update(key_impl=v), "key_impl") for v in [None, 5, "rbg", "nope", ["x"]]],
    (lambda h: h["leaves"][2].update(shape=[3, 2]), r"shape \(3, 2\) and dtype <f4; the template has \(2, 3\)"),
    (lambda h: h["leaves"][2].update(dtype="<f8"), "dtype <f8; the template has"),
    (lambda h: h["leaves"][2].update(dtype=7), r"\['dtype'\] must be a string"),
    (lambda h: h.update(step=float("nan")), "'step' must be an integer"),
])
def test_checkpoint_header_fields(cpath, edit, match):
    h = header(cpath)
    assert [l["path"] for l in h["leaves"]] == ["['key']", "['n']", "['w']"]
    edit(h)
    rewrite(cpath, json.dumps(h))
    refused(load_ck, cpath, match)


@pytest.mark.parametrize("data", [np.array([2**40 + 7, 2**33 + 5], np.uint64), np.array([1.5, 2.5], np.float32),
                                  np.array([1, 2], np.int32), np.zeros(3, np.uint32)])
def test_checkpoint_key_data(cpath, data):
    h = header(cpath)
    member = next(l["member"] for l in h["leaves"] if l["kind"] == "key")
    rewrite(cpath, **{member: data})
    refused(load_ck, cpath, "the template has")


def test_checkpoint_modes_retention_and_temp_cleanup(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "ck.npz"
        (tmp_path / f".ck.npz.{2**22 + 12345}.deadbeef.tmp").write_bytes(b"left by a killed save")
        dmm.files.save_checkpoint(path, small_state())
        assert path.stat().st_mode & 0o777 == 0o644
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]  # the dead process's temp file is gone
        os.chmod(path, 0o600)
        dmm.files.save_checkpoint(path, small_state(), keep=3)  # re-save: the umask's mode again
        assert path.stat().st_mode & 0o777 == 0o644
        (tmp_path / f".ck.step-000000007.npz.{2**22 + 12345}.beef.tmp").write_bytes(b"left by a killed keep= save")
        dmm.files.save_checkpoint(path, small_state())
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    finally:
        os.umask(old)


def test_trace_resave_keeps_the_umask_mode(tpath):
    old = os.umask(0o022)
    try:
        os.chmod(tpath, 0o644)
        dmm.files.save_trace(trace(), tpath)
        assert tpath.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_version_1_checkpoint_header_fields(tmp_path):
    st = small_state()
    save_checkpoint_v1(tmp_path / "ck", st)
    h = json.loads((tmp_path / "ck.json").read_text())
    for bad in [5, ["x"], "nope"]:
        h["key_impl"] = bad
        (tmp_path / "ck.json").write_text(json.dumps(h))
        with pytest.raises(dmm.FileFormatError, match="ck.json"):
            dmm.files.load_checkpoint(tmp_path / "ck", st)
