"""The compiled machine: runs, records, inputs, continuation, gradients, transformations, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import dmm.files
import neurons
from helpers import counter
import programs
from reference import run_reference


VEC = dmm.Kind("vec", (2,))


def test_readme_contract():
    m = dmm.compile(counter())
    trace = m.run(steps=10)
    assert isinstance(trace["cnt.out"], np.ndarray)
    assert trace["cnt.out"].tolist() == list(range(10))
    assert trace.cycles.tolist() == list(range(1, 11))


def recurrent(seed=0, n=5, backend="dense", dtype=jnp.float32) -> dmm.Machine:
    rng = np.random.default_rng(seed)
    p = dmm.Program()
    p.add("src", neurons.external(VEC))
    for i in range(n):
        p.add(f"h{i}", neurons.tanh(VEC))
    p.add("out", neurons.sink({"y": VEC}))
    for i in range(n):
        p.link("src.out", f"h{i}.in", float(rng.normal()))
        for j in range(n):
            if rng.random() < 0.6:
                p.link(f"h{j}.out", f"h{i}.in", float(rng.normal(scale=0.7)))
        p.link(f"h{i}.out", "out.y", float(rng.normal()))
    return dmm.compile(p, backend=backend, dtype=dtype)


def loss_fn(m, xs, remat="auto"):
    def loss(params):
        return jnp.sum(m.run(12, params=params, inputs={"src.out": xs}, record=["out.y"], remat=remat)["out.y"] ** 2)

    return loss


@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_gradient_matches_central_differences(backend, x64):
    m = recurrent(backend=backend, dtype=jnp.float64)
    xs = np.random.default_rng(1).normal(size=(12, 2))
    loss = loss_fn(m, xs)
    W = np.asarray(m.params["W"]["vec"])
    g = np.asarray(jax.grad(loss)(m.params)["W"]["vec"])
    h = 1e-6
    rng = np.random.default_rng(2)
    for idx in [tuple(rng.integers(0, s) for s in W.shape) for _ in range(8)]:
        e = np.zeros_like(W)
        e[idx] = h
        plus = loss({**m.params, "W": {"vec": W + e}})
        minus = loss({**m.params, "W": {"vec": W - e}})
        fd = (plus - minus) / (2 * h)
        assert abs(fd - g[idx]) <= 1e-6 * max(1.0, abs(fd)), (idx, fd, g[idx])


def test_dense_and_sparse_agree_on_values_and_gradients(x64):
    md, ms = recurrent(backend="dense", dtype=jnp.float64), recurrent(backend="sparse", dtype=jnp.float64)
    xs = np.random.default_rng(1).normal(size=(12, 2))
    assert ms.backend["vec"] == "sparse" and md.backend["vec"] == "dense"
    np.testing.assert_allclose(
        ms.run(12, inputs={"src.out": xs})["out.y"], md.run(12, inputs={"src.out": xs})["out.y"], rtol=1e-12
    )
    gd = jax.grad(loss_fn(md, xs))(md.params)["W"]["vec"]
    gs = jax.grad(loss_fn(ms, xs))(ms.params)["W"]["vec"]
    rows, cols = ms.blocks["vec"].entries
    np.testing.assert_allclose(gs, gd[rows, cols], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("remat", ["none", "step", "nested"])
def test_remat_changes_nothing_but_memory(remat, x64):
    m = recurrent(dtype=jnp.float64)
    xs = np.random.default_rng(3).normal(size=(12, 2))
    ref = jax.grad(loss_fn(m, xs, "none"))(m.params)
    got = jax.grad(loss_fn(m, xs, remat))(m.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), ref, got)
    t = m.run(13, inputs={"src.out": np.ones((13, 2))}, remat=remat)  # 13 = 4*3 + 1 exercises the nested tail
    np.testing.assert_array_equal(t["out.y"], m.run(13, inputs={"src.out": np.ones((13, 2))}, remat="none")["out.y"])


def test_vmap_and_jit_compose():
    m = recurrent()
    xs = np.random.default_rng(4).normal(size=(3, 12, 2)).astype(np.float32)
    batched = jax.vmap(lambda x: m.run(12, inputs={"src.out": x}, record=["out.y"])["out.y"])(xs)
    for b in range(3):
        np.testing.assert_allclose(batched[b], m.run(12, inputs={"src.out": xs[b]})["out.y"], rtol=1e-5, atol=1e-6)
    jitted = jax.jit(lambda params: m.run(12, params=params, inputs={"src.out": xs[0]}).state.outputs)(m.params)
    np.testing.assert_allclose(jitted["vec"], m.run(12, inputs={"src.out": xs[0]}).state.outputs["vec"], rtol=1e-5, atol=1e-6)
    tr = jax.vmap(lambda x: m.run(12, inputs={"src.out": x}))(xs)  # a Trace is a pytree
    assert tr["out.y"].shape == (3, 12, 2)


def test_continuing_a_run_equals_one_long_run():
    m = dmm.compile(programs.duplicate_detector())
    whole = m.run(150)
    first = m.run(60)
    second = m.run(90, state=first.state)
    assert second.first_cycle == 60 and second.cycles[0] == 61
    for s in ("output.dict-1", "output.dict-2", "accum.out"):
        np.testing.assert_array_equal(np.concatenate([first[s], second[s]]), whole[s])
    assert second.at("output.dict-2", 144) == 4.0


def test_step_equals_run():
    m = recurrent()
    xs = np.random.default_rng(5).normal(size=(4, 2)).astype(np.float32)
    state = m.init_state()
    step = jax.jit(m.step)
    for c in range(4):
        state, X = step(m.params, state, {"src.out": xs[c]})
    tr = m.run(4, inputs={"src.out": xs}, record="all")
    np.testing.assert_allclose(state.outputs["vec"], tr.state.outputs["vec"], rtol=1e-6)
    _, k, i = m.layout.locate("out.y")
    np.testing.assert_allclose(X[k][i], tr["out.y"][-1], rtol=1e-6)
    assert int(state.cycle) == 4


def test_record_selection_and_errors():
    m = dmm.compile(programs.duplicate_detector())
    t = m.run(5)  # default: every output, plus the inputs of sinks
    assert "output.dict-1" in t and "accum.out" in t and "accum.accum" not in t
    with pytest.raises(dmm.UnknownStreamError, match="'accum.accum' was not recorded"):
        t["accum.accum"]
    t = m.run(5, record=["accum", "dot.out"])
    assert t.names == ["accum.accum", "accum.delta", "accum.out", "dot.out"]
    assert set(m.run(2, record="all").names) == set(m.streams)
    with pytest.raises(dmm.UnknownStreamError, match="unknown stream 'accum.nope'"):
        m.run(5, record=["accum.nope"])
    with pytest.raises(dmm.UnknownStreamError, match="unknown neuron 'nobody'"):
        m.run(5, record=["nobody"])
    assert t.labeled("accum.out")[1]["t"] == 1.0
    with pytest.raises(dmm.UnknownStreamError, match="no key table"):
        t.labeled("dot.out")


def test_run_argument_errors():
    m = recurrent()
    with pytest.raises(dmm.ProgramError, match="external input 'src.out' has shape \\(3, 2\\), expected \\(5, 2\\)"):
        m.run(5, inputs={"src.out": np.zeros((3, 2))})
    with pytest.raises(dmm.ProgramError, match="'out.y' is an input port"):
        m.run(5, inputs={"out.y": np.zeros((5, 2))})
    with pytest.raises(dmm.ProgramError, match="steps"):
        m.run(-1)
    with pytest.raises(dmm.ProgramError, match="remat"):
        m.run(3, remat="sometimes")


def test_external_inputs_and_defaults():
    p = dmm.Program()
    p.add("x", neurons.external(default=2.0))
    p.add("acc", neurons.accumulator())
    p.link("acc.out", "acc.accum")
    p.link("x.out", "acc.delta")
    m = dmm.compile(p)
    assert m.run(4)["acc.out"].tolist() == [0, 2, 4, 6]
    t = m.run(4, inputs={"x.out": [1.0, 10.0, 100.0, 1000.0]})
    assert t["x.out"].tolist() == [1, 10, 100, 1000] and t["acc.out"].tolist() == [0, 1, 11, 111]


@dmm.neuron_type("test.noise")
def noise():
    """y.out = a standard normal draw (test type)."""
    return dmm.make_type({}, {"out": dmm.NUMBER}, fn=lambda p, x, ctx: {"out": jax.random.normal(ctx.key)}, stochastic=True)


def test_determinism_with_keys():
    p = dmm.Program()
    p.add("a", noise())
    p.add("b", noise())
    m = dmm.compile(p)
    with pytest.raises(dmm.ProgramError, match="stochastic: pass key"):
        m.run(3)
    k = jax.random.key(7)
    t1, t2 = m.run(20, key=k), m.run(20, key=k)
    np.testing.assert_array_equal(t1["a.out"], t2["a.out"])
    assert not np.array_equal(t1["a.out"], t1["b.out"])  # neurons draw independently
    assert not np.array_equal(t1["a.out"], m.run(20, key=jax.random.key(8))["a.out"])
    # continuing a stochastic run reproduces the uninterrupted one (keys fold in the cycle number)
    head = m.run(8, key=k)
    np.testing.assert_array_equal(np.concatenate([head["a.out"], m.run(12, key=k, state=head.state)["a.out"]]), t1["a.out"])


def test_nonfinite_guard_names_cycle_and_stream():
    p = dmm.Program()
    p.add("one", neurons.const(1.0))
    p.add("g", neurons.accumulator())
    p.add("sq", neurons.mult())
    p.link("g.out", "g.accum", 1.0)
    p.link("sq.out", "g.delta", 1.0)
    p.link("g.out", "sq.mask", 1.0)
    p.link("g.out", "sq.main", 1e30)
    p.link("one.out", "g.delta", 2.0)
    m = dmm.compile(p)
    with pytest.raises(dmm.NonFiniteError, match="stream 'sq.main' became non-finite at cycle 5"):
        m.run(10, check_finite=True)
    m.run(10)  # without the guard the run completes (with infinities)


@dmm.neuron_type("test.badshape")
def badshape():
    """Returns a vector where a number is declared (test type)."""
    return dmm.make_type({"in": dmm.NUMBER}, {"out": dmm.NUMBER}, fn=lambda p, x, c: {"out": jnp.zeros(3)})


@dmm.neuron_type("test.missing")
def missing():
    """Returns no outputs (test type)."""
    return dmm.make_type({"in": dmm.NUMBER}, {"out": dmm.NUMBER}, fn=lambda p, x, c: {})


@dmm.neuron_type("test.crash")
def crash():
    """Fails on its inputs (test type)."""
    return dmm.make_type({"in": dmm.NUMBER}, {"out": dmm.NUMBER}, fn=lambda p, x, c: {"out": x["in"] @ x["in"]})


@pytest.mark.parametrize(
    "factory, message",
    [(badshape, r"test.badshape\(\), output 'out': one neuron returned shape \(3,\)"),
     (missing, r"test.missing\(\) .* returned \[\], expected \['out'\]"),
     (crash, r"neuron type test.crash\(\) \(neurons \['n'\]\) failed on its inputs")],
)
def test_bad_neuron_types_fail_at_compile(factory, message):
    p = dmm.Program()
    p.add("n", factory())
    with pytest.raises(dmm.ProgramError, match=message):
        dmm.compile(p)


def test_compile_options():
    p = counter()
    with pytest.raises(dmm.ProgramError, match="backend"):
        dmm.compile(p, backend="magic")
    with pytest.raises(dmm.ProgramError, match="jax_enable_x64"):
        dmm.compile(p, dtype=jnp.float64)
    with pytest.raises(dmm.ProgramError, match="floating"):
        dmm.compile(p, dtype=jnp.int32)
    with pytest.raises(dmm.ProgramError, match="no neurons"):
        dmm.compile(dmm.Program())
    q = dmm.Program()
    neurons.add_self(q)
    with pytest.raises(dmm.ProgramError, match="Self neuron"):
        dmm.compile(q, backend="sparse")


def test_auto_backend_picks_sparse_for_large_sparse_blocks():
    p = dmm.Program()
    for i in range(300):
        p.add(f"n{i}", neurons.tanh())
    for i in range(300):
        p.link(f"n{(i + 1) % 300}.out", f"n{i}.in", 0.5)
    p.set_initial("n0.out", 1.0)
    assert dmm.compile(p, backend="auto").backend == {"number": "sparse"}
    assert dmm.compile(counter(), backend="auto").backend == {"number": "dense"}
    a, b = dmm.compile(p, backend="auto").run(20), dmm.compile(p).run(20)
    np.testing.assert_allclose(a["n7.out"], b["n7.out"], rtol=1e-6)


def test_weight_helpers():
    m = dmm.compile(counter())
    assert m.weight("cnt.out", "cnt.accum") == 1.0
    assert m.weights() == {("cnt.out", "cnt.accum"): 1.0, ("one.out", "cnt.delta"): 1.0}
    params = m.set_weights({("cnt.out", "cnt.accum"): 0.5})
    assert m.weight("cnt.out", "cnt.accum", params) == 0.5 and m.weight("cnt.out", "cnt.accum") == 1.0
    assert m.run(4, params=params)["cnt.out"].tolist() == [0.0, 1.0, 1.5, 1.75]
    assert m.trainable["W"]["number"].sum() == 2
    with pytest.raises(dmm.ProgramError, match="no matrix entry"):
        m.weight("cnt.accum", "cnt.out")
    state = m.write(m.init_state(), "cnt.out", 10.0)
    assert float(m.read(state, "cnt.out")) == 10.0
    assert m.run(2, state=state)["cnt.out"].tolist() == [10.0, 11.0]


def test_trace_files(tmp_path):
    t = dmm.compile(programs.duplicate_detector()).run(40)
    path = tmp_path / "t.npz"
    dmm.files.save_trace(t, path)
    u = dmm.files.load_trace(path)
    assert u.names == t.names and u.first_cycle == 0 and u.kinds == t.kinds
    for s in t:
        np.testing.assert_array_equal(u[s], t[s])
    assert u.labeled("accum.out") == t.labeled("accum.out")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(dmm.FileFormatError, match="t.npz"):
        dmm.files.load_trace(path)
    with pytest.raises(dmm.FileFormatError, match="no such file"):
        dmm.files.load_trace(tmp_path / "none.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(dmm.FileFormatError, match="other.npz"):
        dmm.files.load_trace(tmp_path / "other.npz")


def test_compile_is_a_snapshot():
    p = counter()
    m = dmm.compile(p)
    p.set_weight("one.out", "cnt.delta", 5.0)
    assert m.run(3)["cnt.out"].tolist() == [0.0, 1.0, 2.0]


def test_linear_neuron_matches_reference(getkey):
    k = dmm.Kind("v3", (3,))
    p = dmm.Program()
    p.add("x", neurons.const([1.0, -2.0, 0.5], k))
    p.add("lin", neurons.linear(k, VEC, key=getkey()))
    p.add("out", neurons.sink({"y": VEC}))
    p.link("x.out", "lin.in")
    p.link("lin.out", "out.y")
    t = dmm.compile(p).run(3)
    ref = run_reference(p, 3)
    np.testing.assert_allclose(t["out.y"], np.stack(ref["out.y"]), rtol=1e-6)
    m = dmm.compile(p)
    assert m.param("lin", "matrix", m.trainable).all()


def test_parameters_keep_float64_precision(x64):
    p = dmm.Program()
    p.add("c", neurons.const(0.1))
    assert p.neurons["c"].params["value"].dtype == np.float64
    assert dmm.compile(p, dtype=jnp.float64).run(2)["c.out"].tolist() == [0.1, 0.1]
    assert dmm.compile(p).run(1)["c.out"][0] == np.float32(0.1)


def test_bad_params_and_states_are_named():
    m = dmm.compile(counter())
    with pytest.raises(dmm.ProgramError, match=r"params\['W'\]\['number'\] has shape \(3, 3\); this machine needs \(2, 2\)"):
        m.run(3, params={**m.params, "W": {"number": np.zeros((3, 3))}})
    with pytest.raises(dmm.ProgramError, match=r"params do not match this machine: missing \[\"\['W'\]\['number'\]\"\]"):
        m.run(3, params={**m.params, "W": {}})
    state = m.init_state()
    with pytest.raises(dmm.ProgramError, match=r"state\[0\]\['number'\] has shape \(5,\)"):
        m.run(3, state=dmm.State({"number": np.zeros(5)}, state.cycle))
    # other dtypes are cast to the machine's
    assert m.run(3, state=dmm.State({"number": np.array([0, 4])}, 2)).cycles.tolist() == [3, 4, 5]
    with pytest.raises(dmm.ProgramError, match="precision"):
        dmm.compile(counter(), precision="best")


def test_network_entry_errors_name_the_neuron():
    p = dmm.Program()
    neurons.add_self(p)
    p.add("u", neurons.constant_matrix({("self.out", "nobody.in"): 1.0}))
    with pytest.raises(dmm.ProgramError, match=r"^neuron 'u', parameter 'value': no network entry 'self.out' -> 'nobody.in'"):
        dmm.compile(p)
    q = dmm.Program()
    neurons.add_self(q)
    q.add("e", neurons.edit_channel({2: {("self.out", "nobody.in"): 1.0}}))
    with pytest.raises(dmm.ProgramError, match=r"neurons \['e'\]\): no network entry 'self.out' -> 'nobody.in'"):
        dmm.compile(q)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_16_bit_streams_sum_the_down_movement_in_float32(dtype):
    """4096 ones into one input: summed in the stream's own 8-bit (bfloat16) mantissa the total would stall at 256;
    summed in float32 and rounded once it is exactly 4096 (representable in both)."""
    p = dmm.Program()
    p.add("s", neurons.sink(["in"]))
    for i in range(4096):
        p.add(f"c{i}", neurons.const(1.0))
        p.link(f"c{i}.out", "s.in", 1.0)
    for backend in ("dense", "sparse"):
        t = dmm.compile(p, dtype=dtype, backend=backend).run(2, record=["s.in"])
        assert t["s.in"].dtype == dtype and t["s.in"].astype(np.float32).tolist() == [0.0, 4096.0]


def test_bfloat16_runs_close_to_float32():
    m32, m16 = recurrent(), recurrent(dtype=jnp.bfloat16)
    xs = np.random.default_rng(2).normal(size=(12, 2))
    a, b = m32.run(12, inputs={"src.out": xs})["out.y"], m16.run(12, inputs={"src.out": xs})["out.y"]
    np.testing.assert_allclose(b.astype(np.float32), a, atol=0.1)  # bfloat16 keeps about 3 significant digits


def test_non_finite_weights_and_edits_are_refused_with_the_entry_named():
    m = dmm.compile(counter())
    for bad in (float("nan"), float("inf"), "x"):
        with pytest.raises(dmm.ProgramError, match="'one.out' -> 'cnt.delta'"):
            m.set_weights({("one.out", "cnt.delta"): bad})
    grad = jax.grad(lambda w: m.run(3, params=m.set_weights({("one.out", "cnt.delta"): w}))["cnt.out"].sum())(1.0)
    assert float(grad) == 3.0  # traced values pass through unchecked; the counts are 0, w, 2w, so d(sum)/dw = 3


def test_a_neuron_name_given_for_a_stream_names_its_recorded_ports():
    t = dmm.compile(counter()).run(3)
    with pytest.raises(dmm.UnknownStreamError, match=r"'cnt' is a neuron, not a stream: .*\['cnt.out'\]"):
        t["cnt"]


def test_notebook_displays_are_compact_tables():
    p = counter()
    m = dmm.compile(p)
    t = m.run(30)
    assert repr(t) == "Trace(cycles 1..30, 2 streams ['one.out', 'cnt.out'])"
    assert repr(m.run(5, state=t.state)).startswith("Trace(cycles 31..35,")
    html = t._repr_html_()
    assert html.count("<tr>") == 3 and "cnt.out" in html and "float32" in html
    assert p._repr_html_().count("<tr>") == 3 and "accum: number, delta: number" in p._repr_html_()
    assert "2 x 2" in m._repr_html_() and repr(m).startswith("Machine(2 neurons in 2 groups, 2 links")


def test_feeding_the_output_of_a_computing_neuron_is_refused():
    m = dmm.compile(counter("src"))
    with pytest.raises(dmm.ProgramError, match=r"'cnt.out': neuron 'cnt' \(accumulator\) computes that output"):
        m.run(3, inputs={"cnt.out": np.ones(3)})
    np.testing.assert_array_equal(m.run(3, inputs={"src.out": np.ones(3)})["cnt.out"], [0.0, 1.0, 2.0])
