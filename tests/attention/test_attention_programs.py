"""Associative recall (programs/attention.py, attention/tasks.py)."""

import jax
import numpy as np
import pytest

import dmm
import dmm.files
import programs
from attention import recall_task
from attention.tasks import base26


def recall(task, n_keys, n_values, key=None, **config):
    m = dmm.compile(programs.associative_recall(n_keys=n_keys, n_values=n_values, length=task.keys.shape[1], **config))
    inputs, steps, row = programs.recall_inputs(task, n_keys, n_values)
    out = jax.vmap(lambda inp: m.run(steps, inputs=inp, record=["memory.out"], key=key)["memory.out"])(inputs)
    return np.asarray(out)[:, row]


def test_task_definitions():
    t1 = recall_task(jax.random.key(0), 50, 6, n_keys=10)
    assert t1.keys.shape == (50, 6) and all(len(set(r)) == 6 for r in t1.keys)
    assert all(q in r for q, r in zip(t1.query, t1.keys))
    np.testing.assert_array_equal(t1.target, [v[list(k).index(q)] for k, v, q in zip(t1.keys, t1.values, t1.query)])
    t2 = recall_task(jax.random.key(1), 50, 6, setting=2)
    assert t2.keys.shape == (50, 12)
    last = [max(i for i in range(12) if k[i] == q) for k, q in zip(t2.keys, t2.query)]
    np.testing.assert_array_equal(t2.target, [v[i] for v, i in zip(t2.values, last)])
    assert [base26(i) for i in (0, 25, 26, 27)] == ["a", "z", "ba", "bb"] and base26(2, upper=True) == "C"


def test_recall_with_softmax_attention_is_correct():
    """Setting 1: 32 sequences of 12 pairs from 20 keys and 20 values; the softmax memory recalls every one."""
    task = recall_task(jax.random.key(5), 32, 12, n_keys=20, n_values=20)
    out = recall(task, 20, 20)
    assert np.all(np.argmax(out, -1) == task.target)
    assert np.all(out[np.arange(32), task.target] > 0.99)


def test_recall_with_the_race_and_the_delta_rule():
    task = recall_task(jax.random.key(6), 16, 8)
    out = recall(task, 8, 8, key=jax.random.key(0), mechanism="race", options={"cycles": 16})
    assert np.all(np.argmax(out, -1) == task.target)
    # setting 2 (repeated keys): the delta rule overwrites and recalls the last value; softmax averages
    task = recall_task(jax.random.key(7), 32, 8, setting=2)
    assert np.all(np.argmax(recall(task, 8, 8, memory="delta"), -1) == task.target)
    soft = recall(task, 8, 8)
    assert np.mean(np.argmax(soft, -1) == task.target) < 1.0


def test_bad_memory_name():
    with pytest.raises(dmm.ProgramError, match="memory must be"):
        programs.associative_recall(memory="lstm")


def test_attention_programs_round_trip_through_files(tmp_path):
    """Program files store the attention types by name and configuration (mechanism options, row names)."""
    for i, p in enumerate([programs.associative_recall(mechanism="race", options={"cycles": 16}),
                           programs.associative_recall(memory="delta"), programs.attention_rewiring()]):
        dmm.files.save_program(p, tmp_path / f"p{i}.json")
        assert dmm.files.load_program(tmp_path / f"p{i}.json") == p
