"""programs.transformer.generate: greedy generation by running the token-form machine (bubble cycles between
tokens) equals an independent greedy loop over the sequence form and, for softmax, the plain-JAX model's greedy
continuation; bubble cycles leave the logits of the fed tokens unchanged; bad calls are refused by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import load_script, transformer_params

import dmm
import programs
from programs.transformer import LOGITS, TOKENS, VALID, generate, logits_cycle, stream_depths, transformer

plain = load_script("benchmarks/plain_transformer.py", "plain_transformer")

VOCAB, LENGTH, D, HEADS, LAYERS = 11, 12, 8, 2, 2


def _params(seed, beta=False):
    """The baseline's pytree (names and shapes from `plain.init`) with NumPy draws large enough that the greedy
    continuation varies: weights and tables N(0, 1/rows), biases and offsets N(0, 0.1²), scales 1 + N(0, 0.1²);
    with `beta`, also the delta mixer's beta projection (d, H), (H,) in each layer."""
    tree = transformer_params(plain, VOCAB, LENGTH, D, HEADS, LAYERS, seed)
    rng = np.random.default_rng(seed + 1000)
    for layer in tree["layers"] if beta else ():
        layer["attn"]["beta"] = {"weight": rng.normal(size=(D, HEADS)) / np.sqrt(D), "bias": np.zeros(HEADS)}
    return tree


def _build(mixer, form, params):
    return transformer(
        vocab=VOCAB, length=LENGTH, d_model=D, heads=HEADS, layers=LAYERS, mixer=mixer, form=form, seed=7, params=params
    )


def _sequence_greedy(program, prompt, steps):
    """Greedy continuation by the sequence form: run it on the zero-padded prefix, take the argmax of the logits
    at the last real position, append, repeat (one compiled machine, the whole (L,) sequence each time)."""
    m = dmm.compile(program, dtype=jnp.float64)
    c = logits_cycle(program)
    seq = list(prompt)
    for _ in range(steps):
        padded = np.zeros(LENGTH)
        padded[: len(seq)] = seq
        logits = m.run(c, inputs={TOKENS: np.broadcast_to(padded, (c, LENGTH))}, record=[LOGITS])[LOGITS][c - 1]
        row = np.asarray(logits[len(seq) - 1])
        top = np.sort(row)[-2:]
        assert top[1] - top[0] > 1e-6  # no near-tie: the greedy choice is well defined
        seq.append(int(np.argmax(row)))
    return np.array(seq)


def _plain_greedy(params, prompt, steps):
    """Greedy continuation by the plain-JAX baseline (float64), on the padded prefix (causal: padding is unseen)."""
    forward = jax.jit(plain.forward, static_argnames="heads")
    seq = list(prompt)
    for _ in range(steps):
        padded = np.zeros(LENGTH, np.int32)
        padded[: len(seq)] = seq
        logits = forward(params, jnp.asarray(padded)[None], heads=HEADS)[0]
        seq.append(int(jnp.argmax(logits[len(seq) - 1])))
    return np.array(seq)


@pytest.mark.parametrize("mixer", ["softmax", "linear"])
def test_generate_equals_sequence_greedy(mixer, x64):
    ref = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _params(3))
    machine = dmm.compile(_build(mixer, "token", ref), dtype=jnp.float64)
    seq = _build(mixer, "sequence", ref)
    for prompt, steps in (([4, 1, 7], LENGTH - 3), ([9], 5)):
        got = generate(machine, np.array(prompt), steps)
        expect = _sequence_greedy(seq, prompt, steps)
        assert got.dtype == np.int64 and got.shape == (len(prompt) + steps,)
        np.testing.assert_array_equal(got, expect)
        if mixer == "softmax":
            np.testing.assert_array_equal(got, _plain_greedy(ref, prompt, steps))
        assert len(set(got[len(prompt):].tolist())) > 1  # a non-degenerate continuation
    if mixer == "softmax":  # other weights through params= (the same compiled loop): those of another program
        other = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), _params(4))
        theirs = dmm.compile(_build(mixer, "token", other), dtype=jnp.float64).params
        got = generate(machine, [2, 5], 8, params=theirs)
        np.testing.assert_array_equal(got, _plain_greedy(other, [2, 5], 8))
        assert not np.array_equal(got, generate(machine, [2, 5], 8))


@pytest.mark.parametrize("mixer", ["softmax", "delta"])
def test_bubbles_do_not_change_the_logits(mixer):
    """Tokens fed with bubble cycles between them (valid 0, and junk token ids there) give each token the logits
    it gets when the tokens are fed one per cycle; the caches are written only for the valid tokens."""
    program = _build(mixer, "token", _params(5, beta=mixer == "delta"))
    m = dmm.compile(program)
    c = logits_cycle(program)
    rng = np.random.default_rng(0)
    n = 6
    tokens = rng.integers(0, VOCAB, size=n)
    at = np.cumsum(rng.integers(1, 5, size=n))  # token t fed at cycle at[t]; the cycles between are bubbles
    steps = int(at[-1]) + c - 1
    gates = [f"l{i}_mix.write" for i in range(LAYERS)]
    dense = {TOKENS: np.pad(tokens, (0, steps - n)).astype(float), VALID: np.ones(steps)}  # one token per cycle
    dense = m.run(steps, inputs=dense, record=[LOGITS, *gates])
    expect = dense[LOGITS][c - 1 : c - 1 + n]
    feed, valid = rng.integers(0, VOCAB, size=steps).astype(float), np.zeros(steps)
    feed[at - 1], valid[at - 1] = tokens, 1.0
    trace = m.run(steps, inputs={TOKENS: feed, VALID: valid}, record=[LOGITS, *gates])
    got = trace[LOGITS][at + c - 2]
    assert np.std(expect) > 0.01
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)
    depths = stream_depths(program)
    for i, gate in enumerate(gates):  # each mixer writes exactly the valid tokens, as they reach it
        lag = depths[f"l{i}_mix"] - 1
        np.testing.assert_array_equal(trace[gate], np.pad(valid, (lag, 0))[:steps])


def test_generate_refuses_bad_calls():
    tok = dmm.compile(_build("softmax", "token", _params(0)))
    with pytest.raises(dmm.ProgramError, match="prompt length 10 \\+ steps 3 = 13 exceeds the model's length 12"):
        generate(tok, np.arange(10) % VOCAB, 3)
    with pytest.raises(dmm.ProgramError, match=r"prompt ids must lie in \[0, 11\)"):
        generate(tok, [1, 11], 2)
    with pytest.raises(dmm.ProgramError, match="non-empty 1-D"):
        generate(tok, [], 2)
    with pytest.raises(dmm.ProgramError, match="integer token ids"):
        generate(tok, [1.5], 2)
    with pytest.raises(dmm.ProgramError, match="steps must be a non-negative int"):
        generate(tok, [1], -1)
    with pytest.raises(dmm.ProgramError, match="not a token-form transformer"):
        generate(dmm.compile(_build("softmax", "sequence", _params(0))), [1], 2)
    with pytest.raises(dmm.ProgramError, match="stochastic"):
        generate(dmm.compile(_build("race", "token", _params(0))), [1], 2)
    np.testing.assert_array_equal(generate(tok, [3, 4], 0), [3, 4])
    assert programs.generate is generate


def test_generate_compiles_once_per_machine():
    """Prompts of other lengths, other `steps` and other weights reuse the one compiled loop (counted by JAX's own
    backend-compile events)."""
    machine = dmm.compile(_build("softmax", "token", _params(0)))
    compiles = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    generate(machine, [1, 2], 1)  # the first call compiles
    other = dmm.compile(_build("softmax", "token", _params(1))).params
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        a = generate(machine, [3, 4, 5], 4)
        b = generate(machine, [6], 2, params=other)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiles == []
    assert a.shape == (7,) and b.shape == (3,)
