"""Program files: exact round trips, one file written as one atomic commit, no code execution, clear errors for bad
files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import dmm
import dmm.files
import neurons
import programs
from dmm.files.atomic import canonical_sha256


def rich_program() -> dmm.Program:
    """Keyed kinds, matrix kinds, parameters, hard links, initial values, a Self neuron with NETWORK entries."""
    chars = neurons.chars_kind("ab.")
    mat = dmm.Kind("mat", (2, 2))
    p = dmm.Program()
    neurons.add_self(p)
    p.add("t", neurons.timer())
    p.add("in", neurons.text_input("ab.", 3, chars))
    p.add("acc", neurons.accumulator(chars), initial={"out": [0.5, 0.0, -1.25]})
    p.add("m", neurons.const(np.array([[1.0, 2.0], [3.0, 4.0]]) / 3, mat))
    p.add("lin", neurons.linear(chars, dmm.NUMBER, matrix=np.array([[0.1, -0.2, 1 / 3]]), bias=[0.25]))
    p.add("dot", neurons.dot(chars, clip=4.0))
    p.add("upd", neurons.constant_matrix({("acc.out", "acc.accum"): -0.125}),
          initial={"out": {("acc.out", "acc.accum"): -0.125}})
    p.add("sink", neurons.sink({"y": dmm.NUMBER, "z": mat}))
    p.link("t.out", "t.in", 1.0, trainable=False)
    p.link("t.out", "in.timer", 1.0, trainable=False)
    p.link("acc.out", "acc.accum", 1.0)
    p.link("in.out", "acc.delta", 0.1)
    p.link("acc.out", "lin.in", 1 / 7)
    p.link("lin.out", "sink.y", -2.5)
    p.link("m.out", "sink.z", 1.0)
    p.link("acc.out", "dot.x", 1.0)
    p.link("upd.out", "self.delta", 1.0)
    return p


def test_round_trip_is_exact(tmp_path):
    p = rich_program()
    jpath = dmm.files.save_program(p, tmp_path / "prog")
    assert jpath.name == "prog.json"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["prog.json"]  # one file
    q = dmm.files.load_program(tmp_path / "prog.json")
    assert q == p
    a, b = dmm.compile(p).run(12, record="all"), dmm.compile(q).run(12, record="all")
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])


def test_round_trip_of_canonical_program(tmp_path):
    p = programs.duplicate_detector()
    dmm.files.save_program(p, tmp_path / "det.npz")  # either file name, or the stem, names the file
    assert dmm.files.load_program(tmp_path / "det") == p


def test_the_default_trainability_of_links_round_trips(tmp_path):
    p = dmm.Program(links_trainable=False)
    p.add("one", neurons.const(1.0))
    p.add("acc", neurons.accumulator())
    p.link("one.out", "acc.delta")
    dmm.files.save_program(p, tmp_path / "fixed")
    q = dmm.files.load_program(tmp_path / "fixed")
    assert q == p and q.links_trainable is False and not q.links[0].trainable
    q.link("acc.out", "acc.accum")  # a link made after loading takes the saved default
    assert not q.links[1].trainable
    dmm.files.save_program(rich_program(), tmp_path / "default")
    assert "links_trainable" not in json.loads((tmp_path / "default.json").read_text())
    assert dmm.files.load_program(tmp_path / "default").links_trainable is True


def test_file_is_plain_json(tmp_path):
    dmm.files.save_program(rich_program(), tmp_path / "p")
    meta = json.loads((tmp_path / "p.json").read_text())
    assert meta["format"] == "dmm-program" and meta["version"] == 2 and meta["neurons"][0]["type"] == "self"
    assert meta["arrays"]["weights"]["dtype"] == "<f8" and meta["arrays"]["weights"]["shape"] == [10]


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    dmm.files.save_program(programs.duplicate_detector(), tmp_path / "p")
    before = (tmp_path / "p.json").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        dmm.files.save_program(rich_program(), tmp_path / "p")
    monkeypatch.undo()
    assert (tmp_path / "p.json").read_bytes() == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["p.json"]  # no temporary files left behind


def test_file_modes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        dmm.files.save_program(programs.duplicate_detector(), tmp_path / "p")
        assert (tmp_path / "p.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        dmm.files.save_program(programs.duplicate_detector(), tmp_path / "p")  # a re-save takes the umask again
        assert (tmp_path / "p.json").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def corrupt(tmp_path, edit, reseal=True):
    """Save the rich program, apply `edit` to its JSON, and (unless `reseal` is false) recompute the checksum so
    the edit reaches the checks behind it."""
    dmm.files.save_program(rich_program(), tmp_path / "p")
    meta = json.loads((tmp_path / "p.json").read_text())
    edit(meta)
    if reseal:
        meta["sha256"] = canonical_sha256({k: v for k, v in meta.items() if k not in ("format", "version", "sha256")})
    (tmp_path / "p.json").write_text(json.dumps(meta))
    return tmp_path / "p.json"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format="other"), "not a dmm program file"),
        (lambda m: m.update(version=99), "version 99 is not supported"),
        (lambda m: m.update(version=True), "version True is not supported"),
        (lambda m: m["neurons"][1].update(type="os.system"), "unknown neuron type 'os.system'"),
        (lambda m: m["neurons"][1].update(config=[["bogus", 1]]), "unexpected keyword argument 'bogus'"),
        (lambda m: m["links"].append(["t.out", "in.timer", True]), "10 weights for 11 links"),
        (lambda m: m["links"].__setitem__(0, ["t.out", "nobody.in", True]), "unknown neuron 'nobody'"),
        (lambda m: m["links"][2].__setitem__(2, float("nan")), r"field 'links'\[2\]\[2\] \(trainable\) must be true or false, not nan"),
        (lambda m: m["neurons"][2]["config"][2].__setitem__(1, {"$code": "print(1)"}), "unexpected object"),
        (lambda m: m["neurons"][4]["config"][0][1]["$kind"].update(shape=[2.7, 2]), "'shape' must be a list of at most 32 integers"),
        (lambda m: m["neurons"][4]["config"][0][1]["$kind"].update(shape=[8192, 8192]), "67108864 elements, more than the limit max_elements"),
        (lambda m: m.pop("links"), "field 'links' is missing"),
        (lambda m: m["arrays"]["weights"].update(dtype="<c16"), r"dtype <c16 is not allowed"),
        (lambda m: m["arrays"]["weights"].update(shape=[10**12]), "more than the limit max_elements"),
        (lambda m: m["arrays"].pop("weights"), "array 'weights' is missing"),
    ],
)
def test_malformed_files(tmp_path, edit, message):
    path = corrupt(tmp_path, edit)
    with pytest.raises(dmm.FileFormatError, match=message) as e:
        dmm.files.load_program(path)
    assert str(e.value).startswith(str(path))


def test_changed_bytes_are_detected_by_the_checksum(tmp_path):
    path = corrupt(tmp_path, lambda m: m["links"][3].__setitem__(1, "lin.in"), reseal=False)
    with pytest.raises(dmm.FileFormatError, match="p.json: checksum differs"):
        dmm.files.load_program(path)


def test_truncated_and_missing_files(tmp_path):
    dmm.files.save_program(rich_program(), tmp_path / "p")
    text = (tmp_path / "p.json").read_text()
    (tmp_path / "p.json").write_text(text[: len(text) // 2])
    with pytest.raises(dmm.FileFormatError, match="p.json: not valid JSON"):
        dmm.files.load_program(tmp_path / "p")
    with pytest.raises(dmm.FileFormatError, match="nothing.json: no such file"):
        dmm.files.load_program(tmp_path / "nothing")


def test_failed_load_leaves_callers_objects_untouched(tmp_path):
    p = rich_program()
    snapshot = p.copy()
    path = corrupt(tmp_path, lambda m: m["links"].append(["t.out", "nobody.in", True]))
    with pytest.raises(dmm.FileFormatError):
        p = dmm.files.load_program(path)
    assert p == snapshot
