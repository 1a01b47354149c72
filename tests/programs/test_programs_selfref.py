"""The canonical self-referential programs against the expected traces of `docs/semantics.md` §6.2–6.7.

The lightweight pure DMMs are also checked, entry by entry and cycle by cycle, against an independent NumPy
simulation of the Processing sketches (12×11 matrices in the sketches' own numbering)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import dmm.files
import programs
from dmm import vvalues as vv
from programs.selfref import FLUID_INPUTS, FLUID_OUTPUTS, fluid_entry


# ---------------------------------------------------------------------------------- lightweight pure DMMs (§4.3)
def sketch_run(w0: dict, constants: dict, steps: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The Processing sketches' loop in float64: returns W_c and X_c^1 for c = 1..steps."""
    M, N = 12, 11
    W = np.zeros((M, N))
    for (i, j), w in w0.items():
        W[i, j] = w
    Y = [np.zeros((M, N)) for _ in range(N)]
    Y[0] = W.copy()
    for j, entries in constants.items():
        for (i, jj), u in entries.items():
            Y[j][i, jj] = u
    Ws, X1s = [], []
    for _ in range(steps):
        X = [sum(W[i, j] * Y[j] for j in range(N)) for i in range(M)]
        out0 = X[0] + X[1]
        out0[0] = 0.0
        out0[0, 0] = 1.0  # row 0 forced to e_0
        new = [out0] + [Y[j] for j in range(1, N)]  # odd outputs: constants
        new[2], new[4], new[6] = X[2] + X[3], X[4] * X[5], X[6] * X[7]
        new[8], new[10] = np.maximum(X[8], X[9]), np.maximum(X[10], X[11])
        Y, W = new, out0
        Ws.append(W.copy())
        X1s.append(X[1].copy())
    return Ws, X1s


def as_sketch(machine: dmm.Machine, value: np.ndarray) -> np.ndarray:
    """A NETWORK-kind value of a lightweight program in the sketches' numbering (rows FLUID_INPUTS, cols
    FLUID_OUTPUTS)."""
    out = np.zeros((len(FLUID_INPUTS), len(FLUID_OUTPUTS)))
    for i in range(len(FLUID_INPUTS)):
        for j in range(len(FLUID_OUTPUTS)):
            out[i, j] = value[machine.network.index(*fluid_entry(i, j))]
    return out


DECORATIVE = {(2, 0): 0.5, (4, 0): 0.5, (5, 0): 0.5}
WAVE = {j: {(1, j): -1.0, (1, (1, 3, 5, 7, 9)[(t + 1) % 5]): 1.0} for t, j in enumerate((1, 3, 5, 7, 9))}


@pytest.mark.parametrize(
    "name, w0, constants",
    [
        ("lightweight_oscillator", {(0, 0): 1.0, (1, 1): 1.0, **DECORATIVE}, {1: {(1, 1): -2.0}}),
        ("lightweight_wave", {(0, 0): 1.0, (1, 1): 1.0, **DECORATIVE}, WAVE),
        ("self_extinguishing", {(0, 0): 1.0, (1, 2): -0.1, **DECORATIVE}, {}),
    ],
)
def test_lightweight_matches_sketch_simulation(name, w0, constants):
    steps = 12
    m = dmm.compile(getattr(programs, name)())
    assert m.network.kind.shape == (12, 11)
    trace = m.run(steps, record=["self.out", "self.delta"])
    Ws, X1s = sketch_run(w0, constants, steps)
    for c in range(steps):
        np.testing.assert_allclose(as_sketch(m, trace["self.out"][c]), Ws[c], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(as_sketch(m, trace["self.delta"][c]), X1s[c], rtol=1e-6, atol=1e-7)


def test_lightweight_oscillator_printed_frames():
    m = dmm.compile(programs.lightweight_oscillator())
    trace = m.run(10, record=["self.out", "self.delta"])
    pos = m.network.index(*fluid_entry(1, 1))
    for c in range(1, 11):
        sign = -1.0 if c % 2 else 1.0
        assert trace.at("self.out", c)[pos] == sign  # W_c[1][1]
        assert trace.at("self.delta", c)[pos] == 2 * sign  # X_c^1[1][1]


def test_lightweight_wave_printed_frames_and_period():
    m = dmm.compile(programs.lightweight_wave())
    trace = m.run(15, record=["self.out", "self.delta"])
    pos = m.network.index(*fluid_entry(1, 1))
    printed = [(1, 0, -1), (2, 0, 0), (3, 0, 0), (4, 0, 0), (5, 1, 1), (6, 0, -1)]
    for c, w, x in printed:
        assert (trace.at("self.out", c)[pos], trace.at("self.delta", c)[pos]) == (w, x)
    row1 = [as_sketch(m, np.asarray(m.read(m.init_state(), "self.out")))[1]]
    row1 += [as_sketch(m, trace.at("self.out", c))[1] for c in range(1, 16)]
    for c, row in enumerate(row1):
        expected = np.zeros(11)
        expected[(1, 3, 5, 7, 9)[c % 5]] = 1.0
        np.testing.assert_array_equal(row, expected)


@pytest.mark.parametrize("dtype, rtol", [(jnp.float32, 1e-6), (jnp.float64, 1e-13)])
def test_self_extinguishing_kappa(dtype, rtol):
    steps = 30
    with jax.enable_x64(dtype == jnp.float64):
        m = dmm.compile(programs.self_extinguishing(), dtype=dtype)
        trace = m.run(steps, record=["self.out"])
        w0 = as_sketch(m, np.asarray(m.read(m.init_state(), "self.out")))
        kappa = [1.0, 1.0]
        while len(kappa) <= steps:
            kappa.append(kappa[-1] - 0.05 * kappa[-1] * kappa[-2] ** 2)
        for c in range(1, steps + 1):
            w = as_sketch(m, trace.at("self.out", c))
            assert w[0, 0] == 1.0 and not w[0, 1:].any()
            np.testing.assert_allclose(w[1:], kappa[c] * w0[1:], rtol=rtol, atol=0)
    spec = [-0.1, -0.1, -0.095, -0.09025, -0.0861775, -0.0826679, -0.0795982, -0.0768783]
    np.testing.assert_allclose([-0.1 * k for k in kappa[:8]], spec, atol=5e-8)


def test_lightweight_programs_have_sketch_numbering():
    p = programs.lightweight_oscillator()
    assert set(FLUID_OUTPUTS) <= set(p.streams()) and set(FLUID_INPUTS) <= set(p.streams())
    hard = [(link.src, link.dst) for link in p.links if not link.trainable]
    assert hard == [fluid_entry(0, 0)]


# ---------------------------------------------------------------------------------------- matrix wave (§6.4)
def test_matrix_wave_period_three():
    m = dmm.compile(programs.matrix_wave())
    steps = 12
    trace = m.run(steps, record=["self.out", "self.delta"])
    states = [m.read(m.init_state(), "self.out")] + [trace.at("self.out", c) for c in range(1, steps + 1)]
    for c, value in enumerate(states):
        row = [float(value[m.network.index(f"update-{k}.out", "self.delta")]) for k in (1, 2, 3)]
        assert row == [1.0 if k == c % 3 else 0.0 for k in range(3)], (c, row)
        # the rest of W never changes: Self's hard self-loop and the registers' self-loops
        for k in (1, 2, 3):
            assert value[m.network.index(f"update-{k}.out", f"update-{k}.in")] == 1.0
        assert value[m.network.index("self.out", "self.accum")] == 1.0
    # X_c[self.delta] is the update chosen by W_{c-1}: U_1, U_2, U_3, U_1, ...
    for c in range(1, steps + 1):
        expected = m.delta(programs.selfref.wave_update((c - 1) % 3 + 1))
        np.testing.assert_array_equal(trace.at("self.delta", c), expected)


def test_matrix_wave_rows_as_vvalues():
    """After cycles 1, 2, 3 the Self.delta row read back as a V-value is that of `docs/semantics.md` §6.4 (zeros kept)."""
    m = dmm.compile(programs.matrix_wave())
    trace = m.run(3, record=["self.out"])
    expected = [{"update-1": 0, "update-2": 1}, {"update-1": 0, "update-2": 0, "update-3": 1},
                {"update-1": 1, "update-2": 0, "update-3": 0}]
    for c, exp in enumerate(expected, start=1):
        state = m.write(m.init_state(), "self.out", trace.at("self.out", c))
        entries = {e: w for e, w in m.weights(state=state).items() if e[1] == "self.delta"}
        entries.update({(f"update-{k}.out", "self.delta"): 0.0 for k in (1, 2, 3) if (f"update-{k}.out", "self.delta") not in entries})
        row = vv.network_value(entries)["self"]["delta"]
        got = {n: v["out"] for n, v in row.items()}
        assert vv.equal(got, exp)
        assert all(got[k] == v for k, v in exp.items())


# -------------------------------------------------------------------------------------- async counter (§6.5)
def test_async_counter_without_input():
    trace = dmm.compile(programs.async_counter()).run(8)
    got = [vv.pruned(v) for v in vv.from_trace(trace, "printer.to-print")]
    assert got == [{}, {}] + [{"step": float(c)} for c in range(1, 7)]


def test_async_counter_with_injected_value():
    trace = dmm.compile(programs.async_counter({5: {"a": 1}})).run(8)
    got = vv.from_trace(trace, "printer.to-print")
    expected = {5: {"step": 3}, 6: {"step": 4}, 7: {"step": 4, "a": 1}, 8: {"step": 5, "a": 1}}
    for c, e in expected.items():
        assert vv.equal(got[c - 1], e), (c, got[c - 1])


def test_async_counter_lag_closed_form():
    """printer(c) = Σ_{k ≤ c−2} reader(k) for an irregular schedule of V-valued events."""
    events = {2: {"a": 1}, 3: {"b": {"x": 2}}, 7: {"a": -1, "step": 1}, 8: {"step": 0.5}}
    m = dmm.compile(programs.async_counter(events))
    trace = m.run(12, record=["reader.out", "printer.to-print"])
    reader = vv.from_trace(trace, "reader.out")
    printer = vv.from_trace(trace, "printer.to-print")
    for c in range(1, 13):
        emitted = events.get(c, {"step": 1})
        assert vv.equal(reader[c - 1], emitted)
        assert vv.equal(printer[c - 1], vv.sum(*[events.get(k, {"step": 1}) for k in range(1, c - 1)]))


# ---------------------------------------------------------------------------------- live edit counter (§6.7)
def test_live_edit_counter_default_trace():
    m = dmm.compile(programs.live_edit_counter())
    trace = m.run(9, record=["cnt.out", "self.out"])
    np.testing.assert_array_equal(trace["cnt.out"], [0, 1, 2, 3, 4, 3, 2.5, 2.25, 2.125])
    pos = m.network.index("cnt.out", "cnt.accum")
    np.testing.assert_array_equal(trace["self.out"][:, pos], [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5])


@pytest.mark.parametrize("edit_cycle, delta", [(2, -0.25), (6, 1.0), (1, -1.0)])
def test_live_edit_counter_closed_form(edit_cycle, delta):
    steps = 12
    trace = dmm.compile(programs.live_edit_counter(edit_cycle, delta)).run(steps, record=["cnt.out"])
    expected, cnt = [], 0.0
    for c in range(1, steps + 1):
        w = 1.0 + delta if c >= edit_cycle + 2 else 1.0  # first used by the down movement of edit_cycle + 2
        cnt = w * cnt + (1.0 if c >= 2 else 0.0)  # the ticker's Y_0 is 0
        expected.append(cnt)
    np.testing.assert_array_equal(trace["cnt.out"], np.float32(expected))


def test_programs_are_registered():
    names = set(dmm.registered_programs())
    assert {"lightweight_oscillator", "lightweight_wave", "self_extinguishing", "matrix_wave", "async_counter",
            "live_edit_counter", "duplicate_detector"} <= names


@pytest.mark.parametrize("name", ["lightweight_wave", "matrix_wave", "async_counter", "live_edit_counter"])
def test_programs_roundtrip_through_files(tmp_path, name):
    p = dmm.registered_programs()[name]()
    dmm.files.save_program(p, tmp_path / name)
    q = dmm.files.load_program(tmp_path / name)
    assert q == p
    a = dmm.compile(p).run(7, record="all")
    b = dmm.compile(q).run(7, record="all")
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])
