"""`attention.mqar`, multi-query associative recall (Zoology): its constraints, and every label, the query placement
and the gap distribution recomputed independently in NumPy from the drawn tokens."""

from functools import partial

import jax
import numpy as np
import pytest

import dmm
from attention import mqar

V, L, D = 64, 32, 4


def draw(key, batch, **kw):
    kw = {"vocab": V, "length": L, "pairs": D, **kw}
    tokens, labels = mqar(key, batch, **kw)
    assert tokens.shape == labels.shape == (batch, kw["length"])
    assert tokens.dtype == labels.dtype == np.int32
    return np.asarray(tokens), np.asarray(labels)


def reference_labels(tokens: np.ndarray, pairs: int) -> np.ndarray:
    """The labels MQAR must have, from the tokens alone: at each position after the pairs whose token is one of the
    row's keys and is the *query* of it, the value that followed that key among the first 2D tokens."""
    out = np.full(tokens.shape, -100, np.int64)
    for b, row in enumerate(tokens):
        table = {int(row[2 * i]): int(row[2 * i + 1]) for i in range(pairs)}
        for t in range(2 * pairs, len(row)):
            if int(row[t]) in table:
                out[b, t] = table[int(row[t])]
    return out


@pytest.mark.parametrize("kw, words", [
    ({"vocab": 32, "length": 32}, "V > L"),
    ({"vocab": 40, "length": 32, "pairs": 9}, "4·pairs ≤ length"),
    ({"pairs": 0}, "pairs must be ≥ 1"),
    ({"alpha": 0.0}, "alpha must be > 0"),
    ({"length": 32.0}, "length must be a Python int"),
])
def test_constraints(getkey, kw, words):
    with pytest.raises(dmm.ProgramError, match=words):
        mqar(getkey(), 2, **{"vocab": V, "length": L, "pairs": D, **kw})


def test_layout_and_labels(getkey):
    tokens, labels = draw(getkey(), 200)
    half = V // 2
    keys, values = tokens[:, 0 : 2 * D : 2], tokens[:, 1 : 2 * D : 2]
    assert ((keys >= 1) & (keys < half)).all() and ((values >= half) & (values < V)).all()
    assert all(len(set(r)) == D for r in keys) and all(len(set(r)) == D for r in values)  # distinct per row
    assert (labels[:, : 2 * D] == -100).all()
    assert ((tokens >= 0) & (tokens < V)).all()
    labelled = labels != -100
    assert (labelled.sum(axis=1) == D).all()
    # each key is queried exactly once, at an even position after the pairs
    for b in range(len(tokens)):
        where = np.flatnonzero(labelled[b])
        assert (where % 2 == 0).all() and (where >= 2 * D).all()
        assert sorted(tokens[b, where].tolist()) == sorted(keys[b].tolist())
    # every label is the value stored under its key; where the reference finds a key token that is not labelled, it
    # is a random filler equal to a key (allowed, unlabelled, as in Zoology), so compare on the labelled positions
    ref = reference_labels(tokens, D)
    np.testing.assert_array_equal(labels[labelled], ref[labelled])
    assert (ref[labelled] >= half).all()


def test_fillers_are_uniform(getkey):
    """Positions of the query part that hold no query are uniform tokens over [0, V)."""
    tokens, labels = draw(getkey(), 400)
    rest = tokens[:, 2 * D :][labels[:, 2 * D :] == -100]
    counts = np.bincount(rest, minlength=V)
    assert counts.min() > 0.5 * rest.size / V and counts.max() < 1.5 * rest.size / V


@pytest.mark.parametrize("alpha", [0.01, 1.0])
def test_gap_distribution(getkey, alpha):
    """Query slot j (position 2D + 2j) is drawn without replacement with weights (j + 1)^(α − 1); compare the
    empirical frequency of the first D − 1 slots and the tail against a NumPy Plackett–Luce simulation (loose)."""
    length = 64
    tokens, labels = draw(getkey(), 1000, length=length, vocab=128, alpha=alpha)
    slots = (length - 2 * D) // 2
    got = np.zeros(slots)
    for row in labels:
        got[(np.flatnonzero(row != -100) - 2 * D) // 2] += 1
    got /= got.sum()
    rng = np.random.default_rng(0)
    p = np.arange(1, slots + 1) ** (alpha - 1.0)
    p /= p.sum()
    want = np.zeros(slots)
    for _ in range(4000):
        want[rng.choice(slots, D, replace=False, p=p)] += 1
    want /= want.sum()
    np.testing.assert_allclose(got[:3], want[:3], atol=0.03)
    np.testing.assert_allclose(got[3:].sum(), want[3:].sum(), atol=0.03)
    if alpha < 1:
        assert got[0] > 5 * got[10:].mean()  # the power law favours early queries
    else:
        assert got.max() < 2.5 / slots  # uniform


def test_deterministic_and_jit(getkey):
    k = getkey()
    a = draw(k, 8)
    b = draw(k, 8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = draw(getkey(), 8)
    assert not np.array_equal(a[0], c[0])
    jitted = jax.jit(partial(mqar, batch=8, vocab=V, length=L, pairs=D))
    j = jitted(k)
    np.testing.assert_array_equal(np.asarray(j[0]), a[0])
    np.testing.assert_array_equal(np.asarray(j[1]), a[1])
