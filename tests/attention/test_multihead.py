"""Every mixer multi-head in both forms (attention/mixers.py): the token form run for L cycles equals the sequence
form's rows, and the sequence form equals an independent formula (jax.nn.dot_product_attention, NumPy loops)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attention
import dmm
import neurons
from attention import functional as F

L = 7


def elu1_np(x):
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def sigmoid_np(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax_np(u):
    e = np.exp(u - u.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def heads_of(a, h, heads):
    """Columns of head h of a (..., d)."""
    w = a.shape[-1] // heads
    return a[..., h * w : (h + 1) * w]


# ------------------------------------------------------------------------------------- independent references
def ref_softmax(data, heads, dtype):
    """Causal multi-head softmax attention: jax.nn.dot_product_attention in float32 (on (1, L, H, d/H) reshapes;
    it needs d_k = d_v), a float64 NumPy loop in float64 (jax's function rounds its softmax to float32)."""
    q, k, v = (np.asarray(data[s], np.float64) for s in "qkv")
    if dtype == jnp.float32:
        r = lambda a: jnp.asarray(a, jnp.float32).reshape(1, L, heads, a.shape[-1] // heads)
        return np.asarray(jax.nn.dot_product_attention(r(q), r(k), r(v), is_causal=True)).reshape(L, v.shape[-1])
    out = []
    for h in range(heads):
        qh, kh, vh = (heads_of(a, h, heads) for a in (q, k, v))
        s = qh @ kh.T / np.sqrt(qh.shape[1])
        s = np.where(np.tril(np.ones((L, L), bool)), s, -np.inf)
        out.append(softmax_np(s) @ vh)
    return np.concatenate(out, axis=1)


def ref_mechanism(weights):
    """Causal multi-head attention with a mechanism's weight function, one head at a time in plain JAX."""

    def ref(data, heads, dtype):
        q, k, v = (jnp.asarray(data[s], dtype) for s in "qkv")
        mask = jnp.tril(jnp.ones((L, L), bool))
        out = []
        for h in range(heads):
            qh, kh, vh = (heads_of(a, h, heads) for a in (q, k, v))
            out.append(weights((qh @ kh.T) * qh.shape[1] ** -0.5, mask) @ vh)
        return np.asarray(jnp.concatenate(out, axis=1), np.float64)

    return ref


def ref_linear(data, heads, dtype, causal=True, eps=1e-6):
    """Multi-head linear attention with elu+1 features and sum normalisation, a NumPy loop over tokens per head:
    running sums S, z (causal), or the sums over the whole sequence (not causal)."""
    q, k, v = (np.asarray(data[s], np.float64) for s in "qkv")
    out = np.zeros_like(v)
    for h in range(heads):
        qh, kh, vh = (heads_of(a, h, heads) for a in (q, k, v))
        w = vh.shape[1]
        S, z = np.zeros((qh.shape[1], w)), np.zeros(qh.shape[1])
        if not causal:
            S, z = sum(np.outer(elu1_np(kj), vj) for kj, vj in zip(kh, vh)), sum(elu1_np(kj) for kj in kh)
        for t in range(L):
            if causal:
                S, z = S + np.outer(elu1_np(kh[t]), vh[t]), z + elu1_np(kh[t])
            fq = elu1_np(qh[t])
            out[t, h * w : (h + 1) * w] = S.T @ fq / (z @ fq + eps)
    return out


def ref_delta(data, heads, dtype):
    """Multi-head delta rule, a NumPy loop over tokens per head with its own β_h (Schlag+ 2021)."""
    q, k, v, beta = (np.asarray(data[s], np.float64) for s in ("q", "k", "v", "beta"))
    out = np.zeros_like(v)
    for h in range(heads):
        qh, kh, vh = (heads_of(a, h, heads) for a in (q, k, v))
        W = np.zeros((vh.shape[1], qh.shape[1]))
        for t in range(L):
            kn, qn = elu1_np(kh[t]) / elu1_np(kh[t]).sum(), elu1_np(qh[t]) / elu1_np(qh[t]).sum()
            W = W + sigmoid_np(beta[t, h]) * np.outer(vh[t] - W @ kn, kn)
            out[t, h * vh.shape[1] : (h + 1) * vh.shape[1]] = W @ qn
    return out


def ref_srwm(data, heads, dtype, w0, d_out, rates):
    """Multi-head modern SRWM, a NumPy loop over tokens per head (Irie+ 2022; y read with W_{t-1})."""
    x = np.asarray(data["x"], np.float64)
    dh, doh = x.shape[1] // heads, d_out // heads
    sizes = [doh, dh, dh, rates]
    blocks = np.asarray(w0, np.float64).reshape(heads, -1, dh)
    out = np.zeros((L, d_out))
    for h in range(heads):
        W = blocks[h].copy()
        for t in range(L):
            xt = heads_of(x[t], h, heads)
            y, qq, kk, b = np.split(W @ xt, np.cumsum(sizes)[:-1])
            out[t, h * doh : (h + 1) * doh] = y
            lr = sigmoid_np(b)
            lr = np.repeat(lr, sizes) if rates == 4 else np.full(W.shape[0], lr[0])
            W = W + lr[:, None] * np.outer(W @ softmax_np(qq) - W @ softmax_np(kk), softmax_np(kk))
    return out


# ------------------------------------------------------------------------------------------ running the forms
def kinds(dk, dv):
    return (dmm.Kind("tok_k", (dk,)), dmm.Kind("tok_v", (dv,)), dmm.Kind("seq_k", (L, dk)), dmm.Kind("seq_v", (L, dv)))


def draw(mx, dk, dv, seed):
    """Per input port of the mixer, an (L, ...) float64 array shaped like its sequence-form kind."""
    rng = np.random.default_rng(seed)
    _, _, sk, sv = kinds(dk, dv)
    t = mx.sequence(sk, sv)
    return {p: rng.normal(size=t.port(p).kind.shape) * (1.5 if p in "qk" else 1.0) for p in mx.inputs}


def run_token(mx, dk, dv, data, dtype, params, capacity=L, key=None):
    """Feed token t to the token form at cycle t (the sources' initial outputs hold token 1); return the inputs it
    received (rows, float64) and its L outputs."""
    kk, vk, _, _ = kinds(dk, dv)
    t = mx.token(kk, vk, capacity=capacity)
    p = dmm.Program()
    attention.add_with_state(p, "mix", dmm.Neuron(t, params), initial={"state": mx.initial_state(kk, vk, capacity=capacity)})
    for port in mx.inputs:
        rows = np.asarray(data[port], np.float64).reshape(L, *t.port(port).kind.shape)
        p.add(f"src_{port}", neurons.external(t.port(port).kind), initial={"out": rows[0]})
        p.link(f"src_{port}.out", f"mix.{port}", 1.0)
    m = dmm.compile(p, dtype=dtype)
    inputs = {f"src_{port}.out": np.concatenate([data[port][1:], data[port][:1]]).reshape(L, *t.port(port).kind.shape).astype(dtype) for port in mx.inputs}
    tr = m.run(L, inputs=inputs, record=[f"mix.{port}" for port in mx.inputs] + [f"mix.{mx.output}"], key=key)
    received = {port: np.asarray(tr[f"mix.{port}"], np.float64).reshape(data[port].shape) for port in mx.inputs}
    return received, np.asarray(tr[f"mix.{mx.output}"])


def run_sequence(mx, dk, dv, data, dtype, params, causal=True, key=None):
    """Feed the whole sequence as (L, d) matrix streams at cycle 1; return the sequence form's output at cycle 2
    (one output per key if `key` is a list)."""
    _, _, sk, sv = kinds(dk, dv)
    t = mx.sequence(sk, sv, causal=causal)
    p = dmm.Program()
    p.add("mix", dmm.Neuron(t, params))
    for port in mx.inputs:
        p.add(f"src_{port}", neurons.external(t.port(port).kind))
        p.link(f"src_{port}.out", f"mix.{port}", 1.0)
    m = dmm.compile(p, dtype=dtype)
    inputs = {f"src_{port}.out": np.stack([data[port]] * 2).astype(dtype) for port in mx.inputs}
    out = [np.asarray(m.run(2, inputs=inputs, record=[f"mix.{mx.output}"], key=k)[f"mix.{mx.output}"][1])
           for k in (key if isinstance(key, list) else [key])]
    return out if isinstance(key, list) else out[0]


CASES = {  # name: (mixer, d_k (SRWM: d_in), d_v (SRWM: d_out))
    "softmax": (attention.mixer("softmax", heads=2), 8, 8),
    "softmax-1-head": (attention.mixer("softmax", heads=1, scale=0.3), 4, 6),
    "rate": (attention.mixer("rate", heads=2, steps=20), 8, 6),
    "oscillator": (attention.mixer("oscillator", heads=4, steps=20), 8, 4),
    "linear": (attention.mixer("linear", heads=2), 8, 6),
    "delta": (attention.mixer("delta", heads=2), 8, 6),
    "delta-1-head": (attention.mixer("delta"), 4, 3),
    "srwm": (attention.mixer("srwm", heads=2), 8, 4),
    "srwm-1-rate": (attention.mixer("srwm", heads=4, rates=1), 8, 8),
}


def reference(mx, data, dtype, params, dk, dv):
    if mx.name in ("rate", "oscillator"):
        opts = {k: v for k, v in mx.options.items() if k not in ("heads", "scale")}
        fn = attention.rate_weights if mx.name == "rate" else attention.oscillator_weights
        return ref_mechanism(lambda u, mask: fn(u, mask, **opts))(data, mx.heads, dtype)
    if mx.name == "softmax":
        if mx.scale is not None:  # rescale q so that the default-scale formula applies
            data = {**data, "q": data["q"] * mx.scale * np.sqrt(dk // mx.heads)}
        return ref_softmax(data, mx.heads, dtype if dk == dv else jnp.float64)
    if mx.name == "srwm":
        return ref_srwm(data, mx.heads, dtype, params["w0"], dv, mx.rates)
    return {"linear": ref_linear, "delta": ref_delta}[mx.name](data, mx.heads, dtype)


TOL = {jnp.float32: 1e-5, jnp.float64: 1e-10}


@pytest.mark.parametrize("name", list(CASES))
def test_token_form_equals_sequence_form_equals_the_formula(name):
    """For each mixer, multi-head: the token form, fed one token per cycle for L cycles (state through W), outputs
    row t of the causal sequence form on the L tokens it received, and that equals an independent formula; to
    1e-5 in float32 and 1e-10 in float64 (relative to the outputs' scale)."""
    mx, dk, dv = CASES[name]
    params = mx.init_params(kinds(dk, dv)[0], kinds(dk, dv)[1], jax.random.key(3))
    for dtype in (jnp.float32, jnp.float64):
        with jax.enable_x64(dtype == jnp.float64):
            data = draw(mx, dk, dv, seed=len(name))
            if dtype == jnp.float32:
                data = {p: a.astype(np.float32).astype(np.float64) for p, a in data.items()}
            received, tok = run_token(mx, dk, dv, data, dtype, params)
            for port in mx.inputs:  # token t reached the neuron at cycle t
                np.testing.assert_array_equal(received[port], data[port])
            seq = run_sequence(mx, dk, dv, data, dtype, params)
            assert tok.dtype == seq.dtype == dtype and seq.shape == (L, dv)
            ref = reference(mx, data, dtype, params, dk, dv)
            tol = TOL[dtype] * max(1.0, np.abs(ref).max())
            np.testing.assert_allclose(tok, seq, rtol=0, atol=tol, err_msg=f"{name} {dtype.__name__}: token vs sequence")
            np.testing.assert_allclose(seq, ref, rtol=0, atol=tol, err_msg=f"{name} {dtype.__name__}: sequence vs formula")


def test_linear_sequence_form_without_the_causal_mask():
    mx, dk, dv = CASES["linear"]
    data = draw(mx, dk, dv, seed=11)
    data = {p: a.astype(np.float32).astype(np.float64) for p, a in data.items()}
    seq = run_sequence(mx, dk, dv, data, jnp.float32, {}, causal=False)
    ref = ref_linear(data, mx.heads, jnp.float32, causal=False)
    np.testing.assert_allclose(seq, ref, rtol=0, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_a_full_kv_cache_attends_over_its_last_capacity_tokens():
    """Capacity C = 3 < L: from token C on, the token form attends over the last C tokens (multi-head, softmax):
    row t equals the last row of causal attention over tokens t-C+1..t."""
    mx, C = attention.mixer("softmax", heads=2), 3
    dk = dv = 4
    data = {p: a.astype(np.float32).astype(np.float64) for p, a in draw(mx, dk, dv, seed=5).items()}
    received, tok = run_token(mx, dk, dv, data, jnp.float32, {}, capacity=C)
    for t in range(L):
        lo = max(0, t + 1 - C)
        window = {s: received[s][lo : t + 1] for s in "qkv"}
        q, k, v = (np.asarray(window[s], np.float64) for s in "qkv")
        want = np.concatenate(
            [softmax_np(heads_of(q, h, 2)[-1] @ heads_of(k, h, 2).T / np.sqrt(dk // 2)) @ heads_of(v, h, 2) for h in range(2)]
        )
        np.testing.assert_allclose(tok[t], want, rtol=0, atol=1e-5)


def test_race_mixer_is_deterministic_per_key_in_both_forms():
    """The race is stochastic: check shapes, that it needs a key, and that the same key gives the same outputs
    (and another key other outputs), in the token form (`Mixer.add_token`) and the sequence form."""
    mx = attention.mixer("race", heads=2, cycles=4)
    assert mx.stochastic and not attention.mixer("softmax").stochastic
    dk = dv = 4
    kk, vk, _, _ = kinds(dk, dv)
    data = draw(mx, dk, dv, seed=7)
    p = dmm.Program()
    mx.add_token(p, "mix", kk, vk, capacity=L)
    for port in mx.inputs:
        p.add(f"src_{port}", neurons.external(kk if port != "v" else vk))
        p.link(f"src_{port}.out", f"mix.{port}", 1.0)
    m = dmm.compile(p)
    with pytest.raises(dmm.ProgramError, match="stochastic"):
        m.run(2)
    inputs = {f"src_{s}.out": data[s].astype(np.float32) for s in "qkv"}
    tok = [np.asarray(m.run(L, inputs=inputs, record=["mix.out"], key=jax.random.key(i))["mix.out"]) for i in (1, 1, 2)]
    seq = run_sequence(mx, dk, dv, data, jnp.float32, {}, key=[jax.random.key(i) for i in (1, 1, 2)])
    for a, b, c in (tok, seq):
        assert a.shape == (L, dv) and np.all(np.isfinite(a))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_scan_forms_have_the_finite_difference_gradient(x64):
    """d(Σ output²)/d(inputs) through the delta-rule and SRWM scans (multi-head) matches central differences."""
    rng = np.random.default_rng(4)
    q, k = jnp.asarray(rng.normal(size=(5, 4))), jnp.asarray(rng.normal(size=(5, 4)))
    v, beta = jnp.asarray(rng.normal(size=(5, 6))), jnp.asarray(rng.normal(size=(5, 2)))
    w0 = jnp.asarray(rng.normal(size=attention.srwm_kind(dmm.Kind("x", (4,)), dmm.Kind("y", (2,)), 4, 2).shape)) / 2
    losses = {
        "delta": (lambda a: jnp.sum(F.delta_rule_sequence(a, k, v, beta, heads=2)[1] ** 2), q),
        "srwm": (lambda a: jnp.sum(F.srwm_sequence(w0, a, d_out=2, rates=4, heads=2)[1] ** 2), k),
    }
    h = 1e-6
    for name, (loss, x) in losses.items():
        loss = jax.jit(loss)
        g = np.asarray(jax.jit(jax.grad(loss))(x))
        for i in rng.choice(x.size, 5, replace=False):
            e = jnp.zeros(x.size).at[i].set(h).reshape(x.shape)
            fd = float(loss(x + e) - loss(x - e)) / (2 * h)
            assert abs(g.flat[i] - fd) < 1e-6 * max(1.0, abs(fd)), (name, i, g.flat[i], fd)


# ---------------------------------------------------------------------------------------- selection and errors
def test_one_way_to_name_and_select_a_mixer():
    assert set(attention.MIXERS) <= set(attention.registered_mixers())
    kk, vk, sk, sv = kinds(8, 4)
    for name in attention.MIXERS:
        mx = attention.mixer(name, heads=2)
        assert mx.name == name and mx.heads == 2
        assert attention.mixer(mx.name, **mx.options) == mx and attention.mixer(mx) is mx
        assert isinstance(mx, attention.registered_mixers()[name])
        seq, tok = mx.sequence(sk, sv), mx.token(kk, vk, capacity=5)
        for t in (seq, tok):
            assert all(t.port(p) is not None and t.is_input(p) for p in mx.inputs)
            assert t.port(mx.output) is not None and not t.is_input(mx.output)
        assert seq.port(mx.output).kind == sv and tok.port(mx.output).kind == vk
        state = mx.state_kind(kk, vk, capacity=5)
        assert tok.port("state_in").kind == tok.port("state").kind == state
        np.testing.assert_array_equal(mx.initial_state(kk, vk, capacity=5), np.zeros(state.shape))
        assert mx.token(kk, vk, capacity=5, gated=True).is_input("write")
        if mx.constant_state:  # a fixed-size state: the capacity does not matter
            assert mx.state_kind(kk, vk) == mx.state_kind(kk, vk, capacity=99)
    # options: a mechanism's go to the mechanism; canonical with defaults; replaced on a Mixer
    race = attention.mixer("race", cycles=8)
    assert race == attention.DotProductMixer(mechanism="race", mechanism_options={"cycles": 8})
    assert attention.mixer("race") == attention.mixer("race", cycles=64)
    wide = attention.mixer(race, heads=4)
    assert (wide.heads, dict(wide.mechanism_options)["cycles"]) == (4, 8)
    assert attention.mixer(attention.mixer("linear", feature="dpfp", nu=2), heads=2).options == {
        "heads": 2, "feature": "dpfp", "nu": 2, "eps": 1e-6}
    # the delta rule's β: a number per token for one head, one per head (H,) or (L, H) otherwise
    delta = attention.mixer("delta", heads=2)
    assert attention.mixer("delta").token(kk, vk).port("beta").kind == dmm.NUMBER
    assert delta.token(kk, vk).port("beta").kind.shape == (2,)
    assert delta.sequence(sk, sv).port("beta").kind.shape == (L, 2)
    # SRWM: W_0 from a key, one shape for both forms
    srwm = attention.mixer("srwm", heads=2, rates=1)
    w0 = srwm.init_params(kk, vk, jax.random.key(0))["w0"]
    assert w0.shape == srwm.token(kk, vk).defaults["w0"].shape == srwm.sequence(sk, sv).defaults["w0"].shape
    assert w0.shape == (2 * (4 // 2 + 2 * 4 + 1), 4) and srwm.init_params(kk, vk) == {}
    np.testing.assert_array_equal(srwm.init_params(sk, sv, jax.random.key(0))["w0"], w0)


def test_mixer_errors_name_the_mixer_and_the_option():
    kk, vk, sk, sv = kinds(8, 4)
    bad = [
        (lambda: attention.mixer("cosine"), "unknown mixer 'cosine'"),
        (lambda: attention.mixer(3), "a mixer is a name"),
        (lambda: attention.mixer("delta", lr=2), "no options \\['lr'\\]"),
        (lambda: attention.mixer("race", cycle=2), "no options \\['cycle'\\]"),
        (lambda: attention.mixer("linear", heads=0), "heads must be an int >= 1"),
        (lambda: attention.mixer("softmax", heads=True), "heads must be an int >= 1"),
        (lambda: attention.mixer("softmax", scale=-1.0), "scale must be"),
        (lambda: attention.mixer("race", cycles=0), "cycles must be"),
        (lambda: attention.mixer("linear", feature="cosine"), "unknown feature map"),
        (lambda: attention.mixer("linear", eps=-1.0), "eps must be"),
        (lambda: attention.mixer("srwm", rates=3), "rates must be 1 or 4"),
        (lambda: attention.mixer("delta", heads=3).sequence(sk, sv), "heads=3 must divide d_k=8"),
        (lambda: attention.mixer("linear", heads=8).token(kk, vk), "heads=8 must divide d_v=4"),
        (lambda: attention.mixer("softmax", heads=3).token(kk, vk, capacity=4), "heads=3"),
        (lambda: attention.mixer("srwm", heads=3).token(kk, vk), "heads=3 must divide d_in=8"),
        (lambda: attention.mixer("delta").sequence(sk, sv, causal=False), "causal=False is not available"),
        (lambda: attention.mixer("srwm").sequence(sk, sv, causal=False), "causal=False is not available"),
        (lambda: attention.mixer("softmax").token(kk, vk), "needs capacity"),
        (lambda: attention.mixer("linear").token(kk, vk, capacity=0), "capacity must be an int >= 1"),
        (lambda: attention.mixer("delta").sequence(kk, vk), "2 dimension"),
        (lambda: attention.mixer("delta").sequence(sk, dmm.Kind("short", (L - 1, 4))), "same length L"),
    ]
    for make, match in bad:
        with pytest.raises(dmm.ProgramError, match=match):
            make()


def test_register_a_mixer():
    @attention.register_mixer("test_multihead_identity")
    @dataclasses.dataclass(frozen=True)
    class Identity(attention.LinearMixer):
        """Linear attention under another name (registration only)."""

    mx = attention.mixer("test_multihead_identity", heads=2)
    assert isinstance(mx, Identity) and mx.name == "test_multihead_identity" and mx.heads == 2
    assert attention.registered_mixers()["test_multihead_identity"] is Identity
    with pytest.raises(dmm.ProgramError, match="attention mechanism's name"):
        attention.register_mixer("softmax")(Identity)
    with pytest.raises(dmm.ProgramError, match="not a dataclass subclass of Mixer"):
        attention.register_mixer("test_multihead_other")(dict)
