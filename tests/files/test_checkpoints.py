"""Tests of training checkpoints (dmm.files): exact resume, one atomic pickle-free file, retention, clear errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dmm
import dmm.files
import dmm.train
import neurons


def machine():
    p = dmm.Program()
    p.add("x", neurons.external())
    p.add("acc", neurons.accumulator())
    p.add("h", neurons.tanh())
    p.add("lin", neurons.linear(matrix=[[0.3]], bias=[0.1]))
    p.add("out", neurons.sink(["y"]))
    p.link("acc.out", "acc.accum", 0.8)
    p.link("x.out", "acc.delta", 0.5)
    p.link("acc.out", "h.in", 0.9)
    p.link("h.out", "lin.in", 1.1)
    p.link("lin.out", "out.y", 1.0, trainable=False)
    return dmm.compile(p)


def trainer(m):
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(optax.exponential_decay(3e-2, 5, 0.5)))
    loss = lambda t, d: jnp.sum((t["out.y"] - d[: t.steps]) ** 2)
    return dmm.train.Trainer(m, loss, opt, 8, record=["out.y"], l1=1e-3,
                       curriculum=((0, 4), (3, 8)))


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    m = machine()
    xs = np.sin(np.arange(8, dtype=np.float32))
    target = np.linspace(-0.5, 0.5, 8).astype(np.float32)
    tr = trainer(m)
    full, hist = tr.fit(tr.init(key=jax.random.key(7)), 8, {"x.out": xs}, target, progress=False)

    first, h1 = tr.fit(tr.init(key=jax.random.key(7)), 3, {"x.out": xs}, target, progress=False)
    dmm.files.save_checkpoint(tmp_path / "ck", first, {"note": "after 3"})
    assert dmm.files.read_checkpoint_meta(tmp_path / "ck.npz") == {"note": "after 3", "step": 3}
    # a fresh trainer (as after a restart) restores into its own template
    tr2 = trainer(machine())
    resumed = dmm.files.load_checkpoint(tmp_path / "ck", tr2.init())
    assert int(resumed.step) == 3
    rest, h2 = tr2.fit(resumed, 5, {"x.out": xs}, target, progress=False)
    assert np.array_equal(np.concatenate([h1["loss"], h2["loss"]]), hist["loss"])
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(rest)):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_fit_writes_checkpoints(tmp_path):
    m = machine()
    tr = trainer(m)
    xs = {"x.out": np.ones(8, np.float32)}
    st, _ = tr.fit(tr.init(), 5, xs, np.zeros(8, np.float32), checkpoint=tmp_path / "run", checkpoint_every=2, progress=False)
    back = dmm.files.load_checkpoint(tmp_path / "run.npz", tr.init())
    assert int(back.step) == 5
    np.testing.assert_array_equal(np.asarray(back.params["W"]["number"]), np.asarray(st.params["W"]["number"]))
    # one file: a plain .npz (no pickled objects) whose first member is the JSON header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]
    with np.load(tmp_path / "run.npz", allow_pickle=False) as z:
        assert z.files[0] == "header.json"
        assert all(z[k].dtype.kind in "biuf" for k in z.files[1:])
        header = json.loads(z["header.json"])
    assert header["format"] == "dmm-checkpoint" and header["step"] == 5
    assert any(l["path"] == ".mask['W']['number']" for l in header["leaves"])


def test_bad_checkpoints_raise_file_format_errors(tmp_path):
    m = machine()
    tr = trainer(m)
    st = tr.init()
    dmm.files.save_checkpoint(tmp_path / "ck", st)
    with pytest.raises(dmm.FileFormatError, match="no such file"):
        dmm.files.load_checkpoint(tmp_path / "missing", st)
    # a template of another structure (a different optimizer) is refused, naming the first difference
    other = dmm.train.Trainer(m, tr.loss, optax.sgd(0.1), 8).init()
    with pytest.raises(dmm.FileFormatError, match="structure"):
        dmm.files.load_checkpoint(tmp_path / "ck", other)
    # a truncated file is detected (zip structure and CRC-32 of every member)
    data = (tmp_path / "ck.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(dmm.FileFormatError, match="trunc.npz: unreadable or truncated"):
        dmm.files.load_checkpoint(tmp_path / "trunc", st)
    (tmp_path / "bad.json").write_text("{not json")  # (a version-1 header without its arrays)
    with pytest.raises(dmm.FileFormatError, match="bad.json: not valid JSON"):
        dmm.files.load_checkpoint(tmp_path / "bad", st)
    # no temporary files are left behind by the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "ck.npz", "trunc.npz"]


def test_dotted_names_keep_their_stem(tmp_path):
    st = trainer(machine()).init()
    path = dmm.files.save_checkpoint(tmp_path / "run_0.5_lr", st)
    assert path.name == "run_0.5_lr.npz" and path.exists()


def test_retention_keeps_the_last_n_and_latest_always_loads(tmp_path):
    tr = trainer(machine())
    xs = {"x.out": np.ones(8, np.float32)}
    st = tr.init()
    for i in range(5):
        st, _ = tr.fit(st, 1, xs, np.zeros(8, np.float32), progress=False)
        dmm.files.save_checkpoint(tmp_path / "run", st, {"i": i}, keep=2)
        back = dmm.files.load_checkpoint(tmp_path / "run", tr.init())
        assert int(back.step) == i + 1
    kept = dmm.files.list_checkpoints(tmp_path / "run")
    assert [p.name for p in kept] == ["run.step-000000004.npz", "run.step-000000005.npz"]
    assert dmm.files.read_checkpoint_meta(kept[0]) == {"i": 3, "step": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz", *[p.name for p in kept]]
    with pytest.raises(ValueError, match="keep"):
        dmm.files.save_checkpoint(tmp_path / "run", st, keep=0)
