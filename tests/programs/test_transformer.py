"""programs.transformer: the DMM Transformer equals the plain-JAX baseline weight for weight (sequence form,
softmax), every deterministic mixer is causal, the token form (KV cache in state) equals the sequence form's
rows, the depths are computed and checked, and bad arguments are refused by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import load_script, transformer_params

import dmm
import neurons
import programs
from programs.transformer import (
    FORMS,
    LOGITS,
    TOKENS,
    logits_cycle,
    stream_depths,
    transformer,
)

plain = load_script("benchmarks/plain_transformer.py", "plain_transformer")

SHAPES = [  # vocab, length, d_model, heads, layers
    (11, 5, 8, 2, 1),
    (7, 6, 12, 3, 2),
]
TOL = {jnp.float32: 1e-5, jnp.float64: 1e-10}


def _tokens(rng, vocab, length):
    return rng.integers(0, vocab, size=length)


def _sequence_logits(program, dtype):
    """A function: ids (L,) -> row `logits_cycle` of LOGITS (L, V) when the ids are fed at every cycle (one
    compiled machine)."""
    m = dmm.compile(program, dtype=dtype)
    c = logits_cycle(program)

    def logits(tokens):
        feed = np.broadcast_to(np.asarray(tokens, np.float64), (c, len(tokens)))
        return np.asarray(m.run(c, inputs={TOKENS: feed}, record=[LOGITS])[LOGITS][c - 1], np.float64)

    return logits


def _reference_params(shape, seed):
    """The baseline's parameter pytree (names and shapes from `plain.init`), filled with NumPy draws: weights and
    tables N(0, 1/rows), biases and offsets N(0, 0.1²), scales 1 + N(0, 0.1²), so that every parameter counts."""
    return transformer_params(plain, *shape, seed)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_sequence_form_equals_plain_jax(shape, dtype):
    vocab, length, d, heads, layers = shape
    ref = _reference_params(shape, sum(shape))
    tokens = _tokens(np.random.default_rng(sum(shape)), vocab, length)
    with jax.enable_x64(dtype == jnp.float64):
        ref_d = jax.tree.map(lambda a: jnp.asarray(a, dtype), ref)
        forward = jax.jit(plain.forward, static_argnames="heads")
        expect = np.asarray(forward(ref_d, jnp.asarray(tokens)[None], heads=heads)[0], np.float64)
        p = transformer(vocab=vocab, length=length, d_model=d, heads=heads, layers=layers, params=ref_d)
        got = _sequence_logits(p, dtype)(tokens)
    assert got.shape == (length, vocab)
    assert np.std(expect) > 0.1  # a non-degenerate comparison
    np.testing.assert_allclose(got, expect, rtol=TOL[dtype], atol=TOL[dtype])


def test_timing_and_naming():
    p = transformer(vocab=5, length=4, d_model=4, heads=1, layers=3)
    depths = stream_depths(p)
    assert logits_cycle(p) == depths["readout"] == 3 + 10 * 3 + 2
    assert p.kinds["hidden"].shape == (4, 4) and p.kinds["logits"].shape == (4, 5)
    assert p.kinds["hidden_mlp"].shape == (4, 16)
    assert all(not link.trainable for link in p.links)
    for i in range(3):  # each residual adder gets x and f(x) at one depth: one identity per branch neuron
        assert depths[f"l{i}_res1"] == depths[f"l{i}_o"] + 1 == depths[f"l{i}_skip1_3"] + 1
        assert f"l{i}_skip1_4" not in p.neurons
        assert depths[f"l{i}_res2"] == depths[f"l{i}_down"] + 1 == depths[f"l{i}_skip2_3"] + 1
    # a program whose inputs are not aligned is reported, naming the neuron
    q = dmm.Program()
    q.add("a", neurons.external())
    q.add("b", neurons.identity())
    q.add("s", neurons.plus())
    q.link("a.out", "b.in")
    q.link("a.out", "s.a")
    q.link("b.out", "s.b")
    with pytest.raises(dmm.ProgramError, match="neuron 's' mixes data fed at different cycles"):
        stream_depths(q)


@pytest.mark.parametrize("mixer", ["linear", "delta", "srwm", "oscillator", "rate"])
def test_other_mixers_are_causal(mixer):
    vocab, length = 9, 6
    p = transformer(vocab=vocab, length=length, d_model=8, heads=2, layers=2, mixer=mixer, seed=3)
    rng = np.random.default_rng(1)
    a = _tokens(rng, vocab, length)
    logits = _sequence_logits(p, jnp.float32)
    la = logits(a)
    for t in (0, 3, length - 1):
        b = a.copy()
        b[t] = (a[t] + 1) % vocab
        lb = logits(b)
        assert np.all(np.isfinite(la))
        np.testing.assert_allclose(la[:t], lb[:t], rtol=0, atol=1e-6)
        assert np.max(np.abs(la[t] - lb[t])) > 1e-4


def test_params_by_name_errors():
    ref = _reference_params((5, 4, 4, 2, 1), 0)
    del ref["layers"][0]["mlp"]["up"]["bias"]
    with pytest.raises(dmm.ProgramError, match=r"params\['layers'\]\[0\]\['mlp'\]\['up'\]\['bias'\] is missing"):
        transformer(vocab=5, length=4, d_model=4, heads=2, layers=1, params=ref)
    ref = _reference_params((5, 4, 4, 2, 1), 0)
    with pytest.raises(dmm.ProgramError, match=r"params\['embed'\]\['position'\] has shape \(4, 4\), not \(3, 4\)"):
        transformer(vocab=5, length=3, d_model=4, heads=2, layers=1, params=ref)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_model": 6, "heads": 4}, "d_model 6 is not a multiple of heads 4"),
        ({"layers": 0}, "layers must be a positive integer"),
        ({"form": "tokens"}, "form must be one of"),
        ({"mixer": "nope"}, "mixer 'nope'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(dmm.ProgramError, match=match):
        transformer(**kwargs)


@pytest.mark.parametrize("mixer", ["softmax", "linear", "delta", "srwm"])
def test_token_form_equals_sequence_rows(mixer, x64):
    vocab, length = 7, 5
    kw = {"vocab": vocab, "length": length, "d_model": 8, "heads": 2, "layers": 2, "mixer": mixer, "seed": 5}
    seq, tok = transformer(**kw), transformer(form="token", **kw)
    tokens = _tokens(np.random.default_rng(2), vocab, length)
    expect = _sequence_logits(seq, jnp.float64)(tokens)
    c = logits_cycle(tok)
    steps = c + length - 1
    feed = np.zeros(steps)
    feed[:length] = tokens  # token t at cycle t + 1; whatever follows is never read back
    gates = [f"l{i}_mix.write" for i in range(2)]
    trace = dmm.compile(tok, dtype=jnp.float64).run(steps, inputs={TOKENS: feed}, record=[LOGITS, *gates])
    got = np.asarray(trace[LOGITS][c - 1 : c - 1 + length])
    np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-10)
    depths = stream_depths(tok)
    for i, gate in enumerate(gates):  # the cache stores from the cycle token 0 reaches the mixer on, not before
        np.testing.assert_array_equal(trace[gate], trace.cycles >= depths[f"l{i}_mix"])


def test_registered_as_a_program():
    """``dmm run transformer`` finds this builder (every parameter has a literal, CLI-friendly default)."""
    assert dmm.registered_programs()["transformer"] is transformer is programs.transformer
    assert FORMS == ("sequence", "token")
