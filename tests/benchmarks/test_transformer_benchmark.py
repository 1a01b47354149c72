"""The Transformer benchmark (benchmarks/transformer.py): the DMM forms, built from the plain baseline's weights,
give the plain logits at the start; the Trainer's episodes lay the batch out on the right cycles; the --quick run
goes end to end with the DMM losses equal to the plain ones step for step (slow)."""

import json

import jax
import numpy as np
import pytest
from helpers import load_script

from attention import mqar

B = load_script("benchmarks/transformer.py", "transformer_bench")
plain = load_script("benchmarks/plain_transformer.py", "plain_transformer")

CFG = B.Config(**B.QUICK)


def _setup():
    params = plain.init(jax.random.key(0), vocab=CFG.vocab, length=CFG.length, d_model=CFG.d_model,
                        heads=CFG.heads, layers=CFG.layers)
    test = mqar(jax.random.key(1), CFG.test_size, **CFG.task)
    return params, test


@pytest.mark.parametrize("form", ["sequence", "token"])
def test_dmm_logits_equal_plain_at_start(form):
    params, test = _setup()
    model = B.Program(CFG, form, params, test)
    tokens = test[0][: CFG.pipeline]
    expect = np.asarray(plain.forward(params, tokens, heads=CFG.heads))
    got = model.logits(tokens)
    assert got.shape == expect.shape == (CFG.pipeline, CFG.length, CFG.vocab)
    assert np.std(expect) > 0.05
    np.testing.assert_allclose(got, expect, atol=1e-5)
    # the episodes: examples (sequence form) or tokens (token form) on the first cycles, zeros after
    inputs, data = model.feed(*test)
    ids = np.asarray(inputs[B.TOKENS])
    n = CFG.pipeline if form == "sequence" else CFG.length
    assert ids.shape[1] == model.horizon and model.rows.stop == model.horizon and model.rows.stop - model.rows.start == n
    assert not ids[:, n:].any()
    np.testing.assert_array_equal(ids[:, :n].reshape(test[0].shape), np.asarray(test[0]))
    np.testing.assert_array_equal(np.asarray(data).reshape(test[1].shape), np.asarray(test[1]))


def test_config_is_checked():
    with pytest.raises(ValueError, match="pipeline"):
        B.Config(batch=64, pipeline=48)
    with pytest.raises(ValueError, match="steps"):
        B.Config(steps=0)
    with pytest.raises(ValueError, match="forms"):
        B.run(CFG, ("plain", "nope"))


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path, capsys):
    path = tmp_path / "out.json"
    out = B.main(["--quick", "--json", str(path)])
    assert json.loads(path.read_text())["forms"].keys() == {"plain", "sequence", "token"}
    forms = out["forms"]
    for f in ("sequence", "token"):
        assert forms[f]["start_diff"] <= 1e-5
        # same weights, batches and optimizer: the same losses step for step (float32 rounding apart)
        np.testing.assert_allclose(forms[f]["losses"], forms["plain"]["losses"], rtol=1e-3)
        assert out["ratio"][f] > 0
    for r in forms.values():
        assert len(r["losses"]) == CFG.steps and r["history"][-1][0] == CFG.steps
        assert 0 <= r["final_accuracy"] <= 1 and r["compile_s"] > 0 and r["step_s"] > 0
    assert "ratio DMM token / plain" in capsys.readouterr().out
