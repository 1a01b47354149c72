"""Higher-order attention over the rows of the network matrix (attention/higher_order.py, programs.attention_rewiring)."""

import numpy as np
import pytest

import dmm
import neurons
import programs
from attention import row_attention


def np_softmax(u):
    e = np.exp(u - u.max())
    return e / e.sum()


def test_one_step_emits_the_hopfield_delta():
    """The delta emitted in one cycle is gate·(X softmax(β X ξ) - ξ) on the query row, zero elsewhere."""
    p = dmm.Program()
    neurons.add_self(p)
    for i in range(3):
        p.add(f"x{i}", neurons.const(float(i + 1)))
    p.add("sink", neurons.sink(["a", "b", "c"]))
    p.add("gate", neurons.const(1.0))
    p.add("rw", row_attention("number", ("sink.a",), ("sink.b", "sink.c"), beta=0.5))
    rows = {"a": [0.5, -1.0, 2.0], "b": [1.0, 0.0, 1.0], "c": [-1.0, 1.0, 0.0]}
    for r, ws in rows.items():
        for i, w in enumerate(ws):
            p.link(f"x{i}.out", f"sink.{r}", w)
    p.link("gate.out", "rw.gate", 0.3)
    p.link("self.out", "rw.net", 1.0, trainable=False)
    m = dmm.compile(p)
    tr = m.run(2, record=["rw.delta"])
    delta = m.network.block(tr["rw.delta"][1], "number")  # cycle 2: computed from W_1 = W_0 and gate 0.3
    lay = m.network
    cols = [lay.cols["number"].index(f"x{i}.out") for i in range(3)]
    xi, X = np.array(rows["a"]), np.array([rows["b"], rows["c"]])
    want = 0.3 * (np_softmax(0.5 * X @ xi) @ X - xi)
    a = lay.rows["number"].index("sink.a")
    np.testing.assert_allclose(delta[a, cols], want, rtol=1e-5)
    mask = np.ones(delta.shape, bool)
    mask[a, cols] = False
    assert np.all(delta[mask] == 0)
    assert np.all(np.asarray(m.network.block(tr["rw.delta"][1], "network")) == 0)


def test_rewiring_program_retrieves_the_stored_row():
    """The probe's damaged row converges to the modern-Hopfield fixed point ξ = X softmax(β X ξ) (computed here
    by NumPy iteration), which is the stored pattern it came from; its output follows."""
    p = programs.attention_rewiring(dim=16, patterns=4, flips=4, beta=1.0, rate=0.25, seed=3)
    m = dmm.compile(p)
    tr = m.run(60, record=["probe.out"])
    W = np.asarray(m.matrices(state=tr.state)["number"], np.float64)
    rows, cols = m.layout.rows["number"], m.layout.cols["number"]
    src = [cols.index(f"x{i}.out") for i in range(16)]
    X = np.stack([W[rows.index(f"memory.p{k}"), src] for k in range(4)])
    W0 = np.asarray(m.matrices()["number"], np.float64)
    xi = W0[rows.index("probe.in"), src]
    assert np.sum(xi != X[0]) == 4  # the damage
    for _ in range(50):
        xi = np_softmax(1.0 * X @ xi) @ X
    got = W[rows.index("probe.in"), src]
    np.testing.assert_allclose(got, xi, atol=1e-4)
    np.testing.assert_allclose(got, X[0], atol=1e-3)
    values = np.array([m.program.neuron(f"x{i}").params["value"] for i in range(16)], np.float64)
    assert abs(tr["probe.out"][-1] - X[0] @ values) < 1e-3
    assert abs(tr["probe.out"][0] - 0.0) < 1e-6 and abs(tr["probe.out"][1] - W0[rows.index("probe.in"), src] @ values) < 1e-4


def test_unknown_rows_fail_at_compile_time():
    p = dmm.Program()
    neurons.add_self(p)
    p.add("one", neurons.const(1.0))
    p.add("rw", row_attention("number", ("nobody.in",), ("rw.gate",)))
    p.link("self.out", "rw.net", 1.0)
    with pytest.raises(dmm.ProgramError, match="nobody.in"):
        dmm.compile(p)
