"""Version-1 files (what dmm wrote before the single-file formats) keep loading, through the hardened readers, and a
new save over them replaces them cleanly. The writers below are the version-1 writers, kept here verbatim in
substance so the tests can make such files."""

from __future__ import annotations

import hashlib
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import dmm.files
import programs


def npz_bytes(arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _encode(value):
    if isinstance(value, dmm.Kind):
        return {"$kind": value.to_json()}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def save_program_v1(program: dmm.Program, stem) -> None:
    """The version-1 program writer: NAME.json + NAME.npz (the .npz's SHA-256 in the JSON)."""
    arrays = {"weights": np.array([l.weight for l in program.links], np.float64)}
    neurons = []
    for i, (name, neuron) in enumerate(program.neurons.items()):
        params = {}
        for k, v in neuron.params.items():
            if isinstance(v, tuple):
                params[k] = {"entries": [list(e) for e in v]}
            else:
                arrays[f"p{i}.{k}"] = v
                params[k] = f"p{i}.{k}"
        neurons.append({"name": name, "type": neuron.type.name,
                        "config": [[k, _encode(v)] for k, v in neuron.type.config], "params": params})
    initial = {}
    for i, (stream, v) in enumerate(program.initial.items()):
        if isinstance(v, tuple):
            initial[stream] = {"entries": [list(e) for e in v]}
        else:
            arrays[f"y{i}"] = v
            initial[stream] = f"y{i}"
    data = npz_bytes(arrays)
    meta = {"format": "dmm-program", "version": 1, "npz": f"{stem.name}.npz",
            "npz_sha256": hashlib.sha256(data).hexdigest(), "neurons": neurons,
            "links": [[l.src, l.dst, l.trainable] for l in program.links], "initial": initial}
    stem.with_name(stem.name + ".npz").write_bytes(data)
    stem.with_name(stem.name + ".json").write_text(json.dumps(meta, indent=1) + "\n")


def save_trace_v1(trace: dmm.Trace, path) -> None:
    """The version-1 trace writer: one .npz with a ``__meta__`` string member."""
    meta = {"format": "dmm-trace", "version": 1, "first_cycle": int(trace.first_cycle),
            "streams": [{"name": n, "kind": trace.kinds[n].to_json()} for n in trace.names]}
    arrays = {f"s{i}": np.asarray(trace[n]) for i, n in enumerate(trace.names)}
    path.write_bytes(npz_bytes({"__meta__": np.array(json.dumps(meta)), **arrays}))


def save_checkpoint_v1(stem, state, meta=None) -> None:
    """The version-1 checkpoint writer: NAME.json + NAME.npz."""
    arrays, leaves, key_impl = {}, [], None
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    for i, (path, leaf) in enumerate(flat):
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            key_impl = str(jax.random.key_impl(leaf))
            value, kind = np.asarray(jax.random.key_data(leaf)), "key"
        else:
            value, kind = np.asarray(leaf), "array"
        arrays[f"a{i}"] = value
        leaves.append({"path": jax.tree_util.keystr(path), "shape": list(value.shape), "dtype": value.dtype.str,
                       "kind": kind})
    data = npz_bytes(arrays)
    header = {"format": "dmm-checkpoint", "version": 1, "npz": f"{stem.name}.npz",
              "npz_sha256": hashlib.sha256(data).hexdigest(), "step": int(np.asarray(getattr(state, "step", 0))),
              "key_impl": key_impl, "leaves": leaves, "meta": meta or {}}
    stem.with_name(stem.name + ".npz").write_bytes(data)
    stem.with_name(stem.name + ".json").write_text(json.dumps(header, indent=1) + "\n")


def small_state():
    return {"w": jnp.arange(6.0).reshape(2, 3), "n": jnp.int32(4), "key": jax.random.key(3)}


def same_state(a, b) -> bool:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        if not np.array_equal(np.asarray(x), np.asarray(y)) or np.asarray(x).dtype != np.asarray(y).dtype:
            return False
    return True


def test_version_1_program_pairs_load(tmp_path):
    from test_files import rich_program

    p = rich_program()
    save_program_v1(p, tmp_path / "old")
    assert dmm.files.load_program(tmp_path / "old.json") == p
    # a new save replaces the pair by one file
    dmm.files.save_program(p, tmp_path / "old")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["old.json"]
    assert dmm.files.load_program(tmp_path / "old") == p


def test_version_1_pair_with_a_torn_save_is_reported(tmp_path):
    save_program_v1(programs.duplicate_detector(), tmp_path / "p")
    save_program_v1(programs.duplicate_detector(text="abc."), tmp_path / "q")
    (tmp_path / "p.npz").write_bytes((tmp_path / "q.npz").read_bytes())  # the old two-rename tear
    with pytest.raises(dmm.FileFormatError, match="p.npz: does not match p.json"):
        dmm.files.load_program(tmp_path / "p")


def test_version_1_pickled_arrays_are_refused(tmp_path):
    save_program_v1(programs.duplicate_detector(), tmp_path / "p")
    with np.load(tmp_path / "p.npz") as z:
        arrays = dict(z)
    arrays["weights"] = np.array([object()] * 11, dtype=object)
    data = npz_bytes(arrays)
    (tmp_path / "p.npz").write_bytes(data)
    meta = json.loads((tmp_path / "p.json").read_text())
    meta["npz_sha256"] = hashlib.sha256(data).hexdigest()
    (tmp_path / "p.json").write_text(json.dumps(meta))
    with pytest.raises(dmm.FileFormatError, match=r"p.npz: field member weights.npy: dtype \|O is not allowed"):
        dmm.files.load_program(tmp_path / "p")


def test_version_1_traces_load(tmp_path):
    t = dmm.compile(programs.duplicate_detector()).run(20)
    save_trace_v1(t, tmp_path / "t.npz")
    u = dmm.files.load_trace(tmp_path / "t.npz")
    assert u.names == t.names and u.kinds == t.kinds and u.first_cycle == t.first_cycle
    for s in t:
        np.testing.assert_array_equal(u[s], t[s])


def test_version_1_checkpoints_load_and_are_replaced(tmp_path):
    st = small_state()
    save_checkpoint_v1(tmp_path / "ck", st, {"note": "old"})
    assert dmm.files.read_checkpoint_meta(tmp_path / "ck") == {"note": "old", "step": 0}
    assert same_state(dmm.files.load_checkpoint(tmp_path / "ck.json", st), st)
    st2 = {**st, "n": jnp.int32(5)}
    dmm.files.save_checkpoint(tmp_path / "ck", st2, {"note": "new"})
    assert sorted(f.name for f in tmp_path.iterdir()) == ["ck.npz"]  # the stale v1 header is gone
    assert same_state(dmm.files.load_checkpoint(tmp_path / "ck", st), st2)
    assert dmm.files.read_checkpoint_meta(tmp_path / "ck")["note"] == "new"


def test_version_1_checkpoint_uint64_key_data_is_refused(tmp_path):
    """Key data of another dtype used to be silently truncated to uint32 ([2**40+7, 2**33+5] loaded as [7, 5])."""
    st = {"key": jax.random.key(0)}
    save_checkpoint_v1(tmp_path / "ck", st)
    data = npz_bytes({"a0": np.array([2**40 + 7, 2**33 + 5], np.uint64)})
    (tmp_path / "ck.npz").write_bytes(data)
    h = json.loads((tmp_path / "ck.json").read_text())
    h["npz_sha256"] = hashlib.sha256(data).hexdigest()
    (tmp_path / "ck.json").write_text(json.dumps(h))
    with pytest.raises(dmm.FileFormatError, match=r"ck.npz: member a0.npy \(\['key'\]\) has shape \(2,\) and dtype uint64"):
        dmm.files.load_checkpoint(tmp_path / "ck", st)
