"""Parameters by name: `Machine.param_path` / `param` / `set_param`, `Machine.mask`, stable group ids
(`dmm.layout.group_id`), `Program(links_trainable=...)`, and `Machine.to_program` (a trained machine written back as a
program, through a program file and compiled again)."""

from __future__ import annotations

import functools
import hashlib
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmm
import neurons
from dmm.files import load_program, save_program
from dmm.layout import build_layout, group_id

V3 = dmm.Kind("v3", (3,))
V2 = dmm.Kind("v2", (2,))


def mixed() -> dmm.Program:
    """Neurons with parameters of several types, two `dense` groups (same type name, different configs)."""
    rng = np.random.default_rng(7)
    p = dmm.Program()
    p.add("x", neurons.const([1.0, -2.0, 0.5], V3))
    p.add("one", neurons.const(1.0))
    p.add("d1", neurons.dense(V3, V2, weight=rng.normal(size=(3, 2)), bias=[0.5, -0.25]))
    p.add("d2", neurons.dense(V2, V3, weight=rng.normal(size=(2, 3)), use_bias=False))
    p.add("d3", neurons.dense(V3, V2, weight=rng.normal(size=(3, 2))))
    p.add("lin", neurons.linear(matrix=[[0.5]], bias=[0.25]))
    p.add("cnt", neurons.accumulator())
    p.add("out", neurons.sink({"y": V3, "z": dmm.NUMBER}))
    p.link("x.out", "d1.in", 1.0)
    p.link("d1.out", "d2.in", 0.5)
    p.link("d2.out", "d3.in", 1.0, trainable=False)
    p.link("d2.out", "out.y", 1.0)
    p.link("one.out", "lin.in", 2.0)
    p.link("lin.out", "cnt.delta", 1.0)
    p.link("cnt.out", "cnt.accum", 0.75)
    p.link("cnt.out", "out.z", 1.0, trainable=False)
    return p


@functools.lru_cache(maxsize=None)
def compiled(backend: str = "dense") -> dmm.Machine:
    """`mixed()` compiled once per backend (machines are not changed by the tests)."""
    return dmm.compile(mixed(), backend=backend)


def leaves(tree) -> dict:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_trees_equal(a, b) -> None:
    la, lb = leaves(a), leaves(b)
    assert la.keys() == lb.keys()
    for k in la:
        assert la[k].dtype == lb[k].dtype, k
        np.testing.assert_array_equal(la[k], lb[k], err_msg=k)


# ------------------------------------------------------------------------------------------ get / set by name
def test_param_reads_the_programs_values_and_set_param_writes_one_neuron():
    p, m = mixed(), compiled()
    rng = np.random.default_rng(0)
    params = m.params
    for n, neuron in p.neurons.items():
        for name, value in neuron.params.items():
            path = m.param_path(n, name)
            assert path[0] == "neurons" and path[2] == name
            got = m.param(n, name)
            assert got.shape == neuron.type.defaults[name].shape
            np.testing.assert_array_equal(got, np.asarray(value, np.float32))
            np.testing.assert_array_equal(m.params[path[0]][path[1]][path[2]][path[3]], got)
            new = rng.normal(size=value.shape)
            before = leaves(params)
            params = m.set_param(n, name, new, params)
            np.testing.assert_array_equal(m.param(n, name, params), new.astype(np.float32))
            after = leaves(params)
            key = jax.tree_util.keystr(tuple(jax.tree_util.DictKey(k) for k in path[:3]))
            for k in before:  # nothing else changed, not even the other neurons of the group
                if k != key:
                    np.testing.assert_array_equal(after[k], before[k], err_msg=k)
                else:
                    keep = np.arange(len(before[k])) != path[3]
                    np.testing.assert_array_equal(after[k][keep], before[k][keep])
    np.testing.assert_array_equal(m.param("d1", "bias"), [0.5, -0.25])  # self.params is untouched


def test_param_and_set_param_errors_name_the_neuron_and_parameter():
    m = compiled()
    with pytest.raises(dmm.ProgramError, match="unknown neuron 'nope'"):
        m.param_path("nope", "weight")
    with pytest.raises(dmm.ProgramError, match=r"neuron 'd2' .* has no parameter 'bias'; its parameters: \['weight'\]"):
        m.param("d2", "bias")
    with pytest.raises(dmm.ProgramError, match=r"neuron 'cnt' .* no parameter 'value'; its parameters: \[\]"):
        m.set_param("cnt", "value", 1.0)
    with pytest.raises(dmm.ProgramError, match=r"neuron 'd1', parameter 'weight' has shape \(3, 2\), not \(2, 3\)"):
        m.set_param("d1", "weight", np.zeros((2, 3)))
    with pytest.raises(dmm.ProgramError, match="neuron 'lin', parameter 'bias'.* not finite"):
        m.set_param("lin", "bias", [np.nan])
    with pytest.raises(dmm.ProgramError, match="not this machine's params"):
        m.param("lin", "bias", {"W": {}, "neurons": {}})


def test_set_param_is_differentiable():
    m = compiled()

    def f(b):
        params = m.set_param("lin", "bias", b)
        return jnp.sum(m.param("lin", "bias", params) ** 2) + jnp.sum(m.param("d1", "bias", params))

    b = jnp.asarray([0.75], jnp.float32)
    np.testing.assert_array_equal(jax.grad(f)(b), 2 * b)
    np.testing.assert_array_equal(jax.jit(f)(b), f(b))


# ------------------------------------------------------------------------------------------------- masks
def expected_neuron_mask(m: dmm.Machine, p: dmm.Program, selected) -> dict:
    """{group id: {param: bool (n, *shape)}} from the program's neuron list: True where selected(neuron, param)."""
    out = {}
    for g in m.layout.groups:
        out[g.id] = {}
        for name, d in g.type.defaults.items():
            rows = [np.full(d.shape, bool(selected(n, name))) for n in g.members]
            out[g.id][name] = np.stack(rows) if rows else np.zeros((0, *d.shape), bool)
    return out


def expected_w_mask(m: dmm.Machine, p: dmm.Program, selected) -> dict:
    """{kind: stored bool layout} with True at the program links (src, dst) where selected(src, dst)."""
    out = {k: np.zeros(np.shape(w), bool) for k, w in m.params["W"].items()}
    for link in p.links:
        if selected(link.src, link.dst):
            k, pos = m.entry(link.src, link.dst)
            out[k][pos] = True
    return out


@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_mask_by_globs_and_predicates(backend):
    p, m = mixed(), compiled(backend)
    got = m.mask(["d*.weight", "lin.*"], ["*->out.*", "one.out->lin.in"])
    want = {
        "W": expected_w_mask(m, p, lambda s, d: d.startswith("out.") or (s, d) == ("one.out", "lin.in")),
        "neurons": expected_neuron_mask(m, p, lambda n, q: (n[0] == "d" and q == "weight") or n == "lin"),
    }
    assert_trees_equal(got, want)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(m.trainable)

    by_pred = m.mask(links=lambda s, d: s.startswith("d2."), where=lambda n, q, neuron: neuron.type.name == "dense" and q == "bias")
    want = {
        "W": expected_w_mask(m, p, lambda s, d: s == "d2.out"),
        "neurons": expected_neuron_mask(m, p, lambda n, q: n in ("d1", "d3") and q == "bias"),
    }
    assert_trees_equal(by_pred, want)

    # composes with the program's trainable flags: the hard links d2.out->d3.in and cnt.out->out.z drop out
    both = jax.tree.map(operator.and_, m.trainable, m.mask("*", "*"))
    assert_trees_equal(both, m.trainable)
    train_d2 = jax.tree.map(operator.and_, m.trainable, m.mask(links="d2.out->*"))
    assert_trees_equal(train_d2["W"], expected_w_mask(m, p, lambda s, d: (s, d) == ("d2.out", "out.y")))


def test_mask_patterns_that_match_nothing_raise():
    m = compiled()
    with pytest.raises(dmm.ProgramError, match=r"parameter pattern 'd9\.\*' matches no"):
        m.mask(["d1.*", "d9.*"])
    with pytest.raises(dmm.ProgramError, match=r"link pattern 'x.out -> d1.in' matches no link"):
        m.mask(links="x.out -> d1.in")
    with pytest.raises(dmm.ProgramError, match="patterns must be strings"):
        m.mask([3])
    with pytest.raises(dmm.ProgramError, match="where must be a function"):
        m.mask(where=True)
    empty = m.mask(where=lambda n, q, neuron: False)  # a predicate may select nothing
    assert not any(bool(np.any(v)) for v in jax.tree_util.tree_leaves(empty))


# -------------------------------------------------------------------------------------- stable group ids
def test_group_id_is_a_function_of_the_type():
    t = neurons.dense(V3, V2).type
    digest = hashlib.sha256(repr(t.config).encode()).hexdigest()
    assert group_id(t) == f"dense_{digest[:8]}"
    assert group_id(neurons.self_matrix()) == "self"  # a type without configuration: its name
    assert group_id(neurons.dense(V3, V2, weight=np.ones((3, 2))).type) == group_id(t)  # parameters do not count
    assert group_id(neurons.dense(V3, V2, use_bias=False).type) != group_id(t)


def test_group_ids_survive_unrelated_neurons_added_earlier():
    base, m = mixed(), compiled()
    grown = dmm.Program()
    grown.add("early_acc", neurons.accumulator(V2))  # another type, same name as cnt's (other config)
    grown.add("early_dense", neurons.dense(V2, V2))  # same type name as d1..d3, other config
    grown.add("early_tanh", neurons.tanh())  # another type name
    for n, neuron in base.neurons.items():
        grown.add(n, neuron)
    g = dmm.compile(grown)
    for n, neuron in base.neurons.items():
        for name in neuron.params:
            assert g.param_path(n, name) == m.param_path(n, name)
    assert set(m.params["neurons"]) < set(g.params["neurons"])


def test_short_id_collisions_use_the_whole_digest(monkeypatch):
    import dmm.layout as layout

    real = layout.group_id
    monkeypatch.setattr(layout, "group_id", lambda t, chars=8: real(t, chars) if chars > 8 else f"{t.name}_same")
    p = dmm.Program()
    p.add("a", neurons.dense(V3, V2))
    p.add("b", neurons.dense(V2, V3))
    p.add("c", neurons.tanh())
    ids = [gr.id for gr in build_layout(p).groups]
    assert ids == [real(neurons.dense(V3, V2).type, 64), real(neurons.dense(V2, V3).type, 64), "tanh_same"]
    monkeypatch.setattr(layout, "group_id", lambda t, chars=8: "clash")
    with pytest.raises(dmm.ProgramError, match="have the same group id 'clash'"):
        build_layout(p)


POOL = [
    lambda: neurons.accumulator(),
    lambda: neurons.accumulator(V3),
    lambda: neurons.dense(V3, V3),
    lambda: neurons.dense(V2, V3, use_bias=False),
    lambda: neurons.linear(V2, dmm.NUMBER),
    lambda: neurons.const(0.5),
    lambda: neurons.const([0.0, 1.0], V2),
    lambda: neurons.tanh(),
]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, len(POOL) - 1), max_size=5), st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=4))
def test_group_ids_depend_only_on_the_type(before, mine):
    """The group of each of `mine`'s neurons has the same id whatever neurons come before it."""
    alone, crowded = dmm.Program(), dmm.Program()
    for i, f in enumerate(before):
        crowded.add(f"u{i}", POOL[f]())
    for i, f in enumerate(mine):
        alone.add(f"n{i}", POOL[f]())
        crowded.add(f"n{i}", POOL[f]())

    def ids(p):
        return {n: gr.id for gr in build_layout(p).groups for n in gr.members}

    a, c = ids(alone), ids(crowded)
    assert {n: c[n] for n in a} == a
    assert len(set(c.values())) == len({crowded.neurons[n].type for n in crowded.neurons})


# ------------------------------------------------------------------------------------- links_trainable
def test_links_trainable_sets_the_default_flag():
    p = dmm.Program(links_trainable=False)
    assert p.links_trainable is False and p.copy().links_trainable is False
    p.add("one", neurons.const(1.0))
    p.add("lin", neurons.linear())
    p.add("cnt", neurons.accumulator())
    p.link("one.out", "lin.in", 2.0)
    p.link_many(["lin.out", "cnt.out"], ["cnt.delta", "cnt.accum"], [1.0, 1.0])
    m = dmm.compile(p)
    assert not any(bool(np.any(v)) for v in jax.tree_util.tree_leaves(m.trainable["W"]))
    assert bool(m.param("lin", "matrix", m.trainable).all())  # neuron parameters still train
    back = m.to_program()
    assert back == m.program and back.links_trainable is False  # exact values (float32-representable) come back
    p.link("one.out", "cnt.delta", 1.0, trainable=True)  # an explicit flag wins
    p.link_many(["cnt.out"], ["lin.in"], trainable=[True])
    assert [link.trainable for link in p.links] == [False, False, False, True, True]
    assert all(link.trainable for link in p.copy().links[3:])
    assert dmm.Program().links_trainable is True
    with pytest.raises(dmm.ProgramError, match="links_trainable must be a bool"):
        dmm.Program(links_trainable="no")


# ------------------------------------------------------------------------------------------- to_program
def randomised(m: dmm.Machine, seed: int):
    """m.params with every stored W value and every float neuron parameter drawn at random (dense blocks get
    nonzero values at entries that are not links too)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda v: jnp.asarray(rng.normal(size=v.shape), v.dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v,
                        m.params)


@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_to_program_round_trip_through_a_file(backend, tmp_path):
    p, m = mixed(), compiled(backend)
    params = randomised(m, 1)
    q = m.to_program(params)
    assert list(q.neurons) == list(p.neurons) and [n.type for n in q.neurons.values()] == [n.type for n in p.neurons.values()]
    links = {(link.src, link.dst): link for link in q.links}
    for link in p.links:  # the program's links keep their order and flags, with the new weights
        assert links[(link.src, link.dst)].trainable == link.trainable
        assert links[(link.src, link.dst)].weight == float(m.weight(link.src, link.dst, params))
    assert [(link.src, link.dst) for link in q.links[: len(p.links)]] == [(link.src, link.dst) for link in p.links]
    extra = q.links[len(p.links):]
    if backend == "sparse":  # a sparse block stores only its links
        assert not extra
    else:  # every other nonzero entry of a dense block became a hard link
        dense = {k: np.asarray(w) for k, w in m.matrices(params).items()}
        nonzero = sum(int(np.count_nonzero(w)) for w in dense.values())
        assert len(extra) == nonzero - len(p.links) > 0 and not any(link.trainable for link in extra)
    for n, neuron in q.neurons.items():
        for name, value in neuron.params.items():
            np.testing.assert_array_equal(value, np.asarray(m.param(n, name, params), np.float64))

    path = save_program(q, tmp_path / "trained.dmm.json")
    m2 = dmm.compile(load_program(path), backend=backend)
    assert_trees_equal(m2.params, params)
    assert_trees_equal(m2.trainable, m.trainable)
    t1, t2 = m.run(4, params=params, record="all"), m2.run(4, record="all")
    for s in m.record_names("all"):
        np.testing.assert_array_equal(t2[s], t1[s], err_msg=s)


@pytest.mark.slow
def test_to_program_after_training_steps():
    p = mixed()
    m = dmm.compile(p)

    def loss(params):
        t = m.run(4, params=params, record=["out.y", "out.z"])
        return jnp.sum((t["out.y"] - 1.0) ** 2) + jnp.sum((t["out.z"] - 2.0) ** 2)

    params = m.params
    for _ in range(3):
        g = jax.grad(loss)(params)
        params = jax.tree.map(lambda w, gw, t: w - 0.05 * jnp.where(t, gw, 0), params, g, m.trainable)
    m2 = dmm.compile(m.to_program(params))
    assert_trees_equal(m2.params, params)
    assert float(loss(m2.params)) == float(loss(params))


def test_to_program_of_a_self_machine_takes_the_running_matrix(tmp_path):
    """With Self, W comes from the state; entries Self wrote become hard links; NETWORK-kind parameters become
    matrix entries again."""
    p = dmm.Program()
    neurons.add_self(p)
    p.add("ticker", neurons.const(1.0))
    p.add("cnt", neurons.accumulator())
    p.add("upd", neurons.constant_matrix({("ticker.out", "cnt.accum"): 0.5, ("cnt.out", "cnt.accum"): -0.125}))
    p.link("cnt.out", "cnt.accum", 1.0)
    p.link("ticker.out", "cnt.delta", 1.0)
    p.link("upd.out", "self.delta", 1.0)
    m = dmm.compile(p)
    value = {("cnt.out", "cnt.accum"): -0.25, ("ticker.out", "cnt.delta"): 0.5, ("ticker.out", "cnt.accum"): 0.25}
    params = m.set_param("upd", "value", value)
    np.testing.assert_array_equal(m.param("upd", "value", params), m.delta(value))
    state = m.run(3, params=params, record=[]).state
    q = m.to_program(params, state)
    # the original entries first (in their order, with their new values), then the new one
    assert q.neurons["upd"].params["value"] == (
        ("ticker.out", "cnt.accum", 0.25), ("cnt.out", "cnt.accum", -0.25), ("ticker.out", "cnt.delta", 0.5))
    # upd.out is 0 at c = 0 and U from c = 1, so W_3 = W_0 + 2·U: W[cnt.accum, ticker.out] = 2 · 0.25, not a link
    # of the program, is one now, a hard one
    assert q.links[len(p.links):] == (dmm.Link("ticker.out", "cnt.accum", 0.5, False),)
    assert q.links[0] == dmm.Link("self.out", "self.accum", 1.0, False)
    assert q.links[1] == dmm.Link("cnt.out", "cnt.accum", 1.0 - 2 * 0.25, True)
    running = {k: np.asarray(w) for k, w in m.matrices(params, state).items()}
    m2 = dmm.compile(load_program(save_program(q, tmp_path / "self.dmm.json")))
    for k, w in running.items():
        np.testing.assert_array_equal(np.asarray(m2.params["W"][k]), w)
    assert_trees_equal(m2.params["neurons"], params["neurons"])
    assert_trees_equal(m2.trainable, m.trainable)
    # without a state: the initial matrix W_0 (params["W"]), so the program's own links only
    assert [(link.src, link.dst) for link in m.to_program(params).links] == [(link.src, link.dst) for link in p.links]
