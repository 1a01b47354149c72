"""The key/value memory neuron (attention/memory.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmm
import neurons
from attention import add_with_state, kv_memory, memory_kind

KEY, VAL = dmm.Kind("key", (4,)), dmm.Kind("val", (3,))


def memory_program(capacity, gated=False, **config):
    p = dmm.Program()
    for s, kind in (("q", KEY), ("k", KEY), ("v", VAL)):
        p.add(s, neurons.external(kind))
    add_with_state(p, "mem", kv_memory(KEY, VAL, capacity, gated=gated, **config))
    for s in "qkv":
        p.link(f"{s}.out", f"mem.{s}", 1.0)
    if gated:
        p.add("w", neurons.external())
        p.link("w.out", "mem.write", 1.0)
    return p


def history_attention(q, k, v, window, scale=0.5):
    """Float64 NumPy: y_t = softmax over the last `window` tokens j ≤ t of scale·q_t·k_j, applied to v_j."""
    out = []
    for t in range(len(q)):
        lo = max(0, t + 1 - window)
        s = scale * k[lo : t + 1] @ q[t]
        w = np.exp(s - s.max())
        out.append((w / w.sum()) @ v[lo : t + 1])
    return np.array(out)


@pytest.mark.parametrize("capacity", [12, 5])
def test_memory_equals_attention_over_the_full_history(capacity):
    """Each cycle the memory appends (k_c, v_c) and q_c attends over everything stored: causal attention over the
    whole history of its inputs (capacity ≥ T), or over the last C tokens once full (capacity 5 < T = 12). The
    history is what the neuron received (its recorded input ports; cycle 1 gets the zero initial outputs)."""
    rng = np.random.default_rng(1)
    T = 12
    q, k = (np.asarray(rng.normal(size=(T, 4)).astype(np.float32)) * 2 for _ in range(2))
    v = np.asarray(rng.normal(size=(T, 3)).astype(np.float32))
    m = dmm.compile(memory_program(capacity))
    tr = m.run(T, inputs={"q.out": q, "k.out": k, "v.out": v}, record=["mem.q", "mem.k", "mem.v", "mem.out", "mem.state"])
    np.testing.assert_allclose(tr["mem.k"][1:], k[:-1])  # the memory sees the sources one cycle later
    ref = history_attention(*(tr[f"mem.{s}"].astype(np.float64) for s in "qkv"), capacity)
    np.testing.assert_allclose(tr["mem.out"], ref, rtol=2e-5, atol=2e-6)
    state = tr["mem.state"][-1]
    assert state.shape == memory_kind(KEY, VAL, capacity).shape
    assert sorted(state[:, -1]) == list(range(T - capacity + 1, T + 1))  # stamps of the last C writes


def test_gated_memory_writes_only_when_asked():
    rng = np.random.default_rng(2)
    T = 6
    q, k = (np.asarray(rng.normal(size=(T, 4)).astype(np.float32)) for _ in range(2))
    v = np.asarray(rng.normal(size=(T, 3)).astype(np.float32))
    write = np.array([1, 0, 1, 1, 0, 1, 0], np.float32)
    m = dmm.compile(memory_program(8, gated=True, scale=1.0))
    pad = lambda a: np.concatenate([a, a[:1]])
    tr = m.run(T + 1, inputs={"q.out": pad(q), "k.out": pad(k), "v.out": pad(v), "w.out": write}, record=["mem.state"])
    state = tr["mem.state"][-1]
    kept = np.flatnonzero(write[:T])
    np.testing.assert_allclose(state[: len(kept), :4], k[kept], rtol=1e-6)
    np.testing.assert_allclose(state[: len(kept), 4:7], v[kept], rtol=1e-6)
    assert np.all(state[len(kept):] == 0)


def test_memory_gradient_matches_central_differences(x64):
    """d(sum of outputs)/d(a routing weight) through four cycles of stored keys, in float64."""
    rng = np.random.default_rng(3)
    T = 4
    q, k = (np.asarray(rng.normal(size=(T + 1, 4))) for _ in range(2))
    v = np.asarray(rng.normal(size=(T + 1, 3)))
    m = dmm.compile(memory_program(T), dtype=jnp.float64)
    inputs = {"q.out": q, "k.out": k, "v.out": v}

    def loss(w):
        params = m.set_weights({("k.out", "mem.k"): w})
        return m.run(T + 1, params=params, inputs=inputs, record=["mem.out"])["mem.out"].sum()

    g = jax.grad(loss)(1.3)
    h = 1e-6
    assert abs(float(g) - float(loss(1.3 + h) - loss(1.3 - h)) / (2 * h)) < 1e-7 * max(1.0, abs(float(g)))


def test_memory_config_errors():
    with pytest.raises(dmm.ProgramError, match="capacity"):
        kv_memory(KEY, VAL, 0)
    with pytest.raises(dmm.ProgramError, match="1 dimension"):
        kv_memory(dmm.Kind("m", (2, 2)), VAL, 3)
