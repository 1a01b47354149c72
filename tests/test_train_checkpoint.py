"""Tests of training checkpoints (dmm.checkpoint): exact resume, atomic pickle-free files, clear errors."""

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
    assert dmm.files.read_checkpoint_meta(tmp_path / "ck.json") == {"note": "after 3", "step": 3}
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
    # the arrays are plain .npz data (no pickled objects) and the header is JSON
    with np.load(tmp_path / "run.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    header = json.loads((tmp_path / "run.json").read_text())
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
    # a truncated or replaced .npz is detected by its checksum
    data = (tmp_path / "ck.npz").read_bytes()
    (tmp_path / "ck.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(dmm.FileFormatError, match="checksum"):
        dmm.files.load_checkpoint(tmp_path / "ck", st)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(dmm.FileFormatError, match="JSON"):
        dmm.files.load_checkpoint(tmp_path / "bad", st)
    # no temporary files are left behind by the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "ck.json", "ck.npz"]


def test_dotted_names_keep_their_stem(tmp_path):
    st = trainer(machine()).init()
    jpath, npath = dmm.files.save_checkpoint(tmp_path / "run_0.5_lr", st)
    assert (jpath.name, npath.name) == ("run_0.5_lr.json", "run_0.5_lr.npz")
