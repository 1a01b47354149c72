"""Tests of dmm.sparsify.sparsify: moment-preserving pruning, protected links, backtracking and the cut log."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dmm
import dmm.files
import dmm.sparsify
import dmm.train
import neurons


def regression(weights: dict[str, float], target: float = 2.2):
    """y = Σ_i w_i·s_i with constant sources s_i = i + 1 feeding one sink, loss Σ_c (y_c − target)² over 4 cycles.
    With `WEIGHTS` and target 0.2·s_0 + 1.0·s_1 = 2.2, the links from s0 (small but needed) and s1 matter, the
    others are noise (y = 2.27 at the start)."""
    p = dmm.Program()
    p.add("out", neurons.sink(["y"]))
    for i, (name, w) in enumerate(weights.items()):
        p.add(name, neurons.const(float(i + 1)), initial={"out": float(i + 1)})
        p.link(f"{name}.out", "out.y", w)
    m = dmm.compile(p)
    loss = lambda t, d: jnp.sum((t["out.y"] - target) ** 2)
    return m, loss


WEIGHTS = {"s0": 0.2, "s1": 1.0, "s2": 0.004, "s3": -0.003, "s4": 0.002, "s5": 0.01}


def test_prune_keeps_the_optimizer_state_of_survivors():
    m, loss = regression(WEIGHTS)
    opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(1e-2))
    tr = dmm.train.Trainer(m, loss, opt, 4)
    st, _ = tr.fit(tr.init(), 3, progress=False)
    cut = [("s2.out", "out.y"), ("s5.out", "out.y")]
    pr = dmm.sparsify.prune(tr, st, cut)
    adam_before, adam_after = st.opt_state[1][0], pr.opt_state[1][0]
    names = dmm.sparsify.link_names(m)["number"]
    cut_mask = np.vectorize(lambda l: l in cut, otypes=[bool])(names)
    assert cut_mask.sum() == 2
    for moment in ("mu", "nu"):
        before = np.asarray(getattr(adam_before, moment)["W"]["number"])
        after = np.asarray(getattr(adam_after, moment)["W"]["number"])
        assert np.all(before[cut_mask] != 0)
        assert np.array_equal(after[cut_mask], np.zeros(2))  # pruned: zeroed
        assert np.array_equal(after[~cut_mask], before[~cut_mask])  # survivors: kept exactly
    assert int(adam_after.count) == int(adam_before.count) == 3
    W = np.asarray(pr.params["W"]["number"])
    assert np.array_equal(W[cut_mask], np.zeros(2)) and not np.asarray(pr.mask["W"]["number"])[cut_mask].any()
    assert np.array_equal(W[~cut_mask], np.asarray(st.params["W"]["number"])[~cut_mask])
    assert set(dmm.sparsify.live_links(pr, m)) == set(dmm.sparsify.live_links(st, m)) - set(cut)
    # pruned links stay at zero while training continues; survivors keep learning
    cont, _ = tr.fit(pr, 5, progress=False)
    assert np.array_equal(np.asarray(cont.params["W"]["number"])[cut_mask], np.zeros(2))
    # the survivors' next update is Adam's update with the kept moments (and not a fresh optimizer's)
    fresh = pr._replace(opt_state=opt.init(pr.params))
    a, _ = tr.update(pr)
    b, _ = tr.update(fresh)
    assert not np.allclose(np.asarray(a.params["W"]["number"]), np.asarray(b.params["W"]["number"]))


def test_sparsify_never_cuts_protected_links_and_backtracks(tmp_path):
    m, loss = regression(WEIGHTS)
    # plain SGD with a tiny rate: recovery barely moves the weights, so the outcome of every cut is predictable
    tr = dmm.train.Trainer(m, loss, optax.sgd(1e-6), 4)
    st = tr.init()
    base = float(tr.evaluate(st).loss)
    protect = (("s4.out", "out.y"),)
    cfg = dmm.sparsify.SparsifyConfig(tolerance=base + 0.05, recover_steps=2, cut=2, protect=protect)
    log = tmp_path / "cuts.jsonl"
    good, report = dmm.sparsify.sparsify(tr, st, cfg, checkpoint=tmp_path / "good", log=log)
    cut_names = [tuple(c[:2]) for a in report.attempts for c in a["cut"]]
    assert protect[0] not in cut_names
    live = dmm.sparsify.live_links(good, m)
    # the noise links go; s0 -> out (small but needed) is tried, hurts, is restored, and found critical
    assert set(live) == {("s0.out", "out.y"), ("s1.out", "out.y"), ("s4.out", "out.y")}
    assert report.critical == [("s0.out", "out.y"), ("s1.out", "out.y")]
    rejected = [a for a in report.attempts if not a["accepted"]]
    assert any(tuple(c[:2]) == ("s0.out", "out.y") for a in rejected for c in a["cut"])
    for a in rejected:
        assert a["loss_after"] > cfg.tolerance
    assert all(a["loss_after"] <= cfg.tolerance for a in report.attempts if a["accepted"])
    # backtracking restores the last good state: the critical link keeps its (slightly trained) weight
    assert live[("s0.out", "out.y")] == pytest.approx(0.2, abs=1e-4)
    assert report.loss <= cfg.tolerance and report.links == 3
    # every attempt is logged with the links it cut and the losses before, right after and after recovery
    rows = [json.loads(l) for l in log.read_text().splitlines()]
    assert len(rows) == len(report.attempts)
    assert {"cut", "loss_before", "loss_cut", "loss_after", "accepted", "links_left"} <= set(rows[0])
    # the last good state was checkpointed
    back = dmm.files.load_checkpoint(tmp_path / "good", tr.init())
    assert dmm.sparsify.live_links(back, m) == live


def test_halving_the_cut_after_a_failed_group():
    m, loss = regression(WEIGHTS)
    tr = dmm.train.Trainer(m, loss, optax.sgd(1e-6), 4)
    st = tr.init()
    cfg = dmm.sparsify.SparsifyConfig(tolerance=float(tr.evaluate(st).loss) + 0.05, recover_steps=1, cut=8)
    _, report = dmm.sparsify.sparsify(tr, st, cfg)
    # by abs(w): s4 < s3 < s2 < s5 < s0 < s1. All 6 at once fail; the 3 smallest go (cut size 3 -> 6); the other
    # 3 fail (-> 1); s5 goes (-> 2); s0 + s1 fail (-> 1); s0 alone fails and s1 alone fails: both critical
    sizes = [(len(a["cut"]), a["accepted"]) for a in report.attempts]
    assert sizes == [(6, False), (3, True), (3, False), (1, True), (2, False), (1, False), (1, False)]
    assert report.links == 2 and report.critical == [("s0.out", "out.y"), ("s1.out", "out.y")]


def test_loss_criterion_cuts_the_least_damaging_link_first():
    # target 2.05 = 0.05·s0 + 1.0·s1: the link from s2 (0.1·3 = 0.3) is wrong although larger than s0's in abs(w)
    m, loss = regression({"s0": 0.05, "s1": 1.0, "s2": 0.1}, target=2.05)
    tr = dmm.train.Trainer(m, loss, optax.sgd(0.0), 4)
    st = tr.init()
    cuts = np.stack([dmm.sparsify.links_mask(m, [l])["number"] for l in [("s0.out", "out.y"), ("s2.out", "out.y")]])
    losses = dmm.sparsify.cut_losses(tr, st, {"number": cuts})
    np.testing.assert_allclose(losses, [4 * 0.25**2, 0.0], atol=1e-6)
    by_loss = dmm.sparsify.SparsifyConfig(tolerance=1e-3, recover_steps=0, criterion="loss", candidates=4)
    _, report = dmm.sparsify.sparsify(tr, st, by_loss)
    assert report.attempts[0]["cut"][0][:2] == ["s2.out", "out.y"] and report.attempts[0]["accepted"]
    by_weight = dmm.sparsify.SparsifyConfig(tolerance=1e-3, recover_steps=0)
    _, report = dmm.sparsify.sparsify(tr, st, by_weight)
    assert report.attempts[0]["cut"][0][:2] == ["s0.out", "out.y"] and not report.attempts[0]["accepted"]


def test_single_cut_losses_compile_once_as_the_network_shrinks():
    # JAX traces a jitted function exactly when it compiles it, and each trace of the padded evaluation calls the
    # loss: the loss's calls during `single_cut_losses` count its compilations
    m, loss = regression(WEIGHTS)
    traced = []
    tr = dmm.train.Trainer(m, lambda t, d: (traced.append(1), loss(t, d))[1], optax.sgd(0.0), 4)
    st = tr.init()
    live = list(dmm.sparsify.live_links(st, m))
    compiled = []
    while live:
        before = len(traced)
        scores = dmm.sparsify.single_cut_losses(tr, st, live)
        compiled.append(len(traced) - before)
        assert scores.shape == (len(live),)
        assert scores[0] == pytest.approx(float(tr.evaluate(dmm.sparsify.prune(tr, st, live[:1])).loss), rel=1e-6)
        st = dmm.sparsify.prune(tr, st, live[:1])
        live = live[1:]
    assert compiled[0] >= 1 and compiled[1:] == [0] * (len(WEIGHTS) - 1)


def test_fit_many_trains_each_member_as_fit_does():
    m, loss = regression(WEIGHTS)
    tr = dmm.train.Trainer(m, loss, optax.adam(1e-2), 4, l1=1e-3)
    a = tr.init()
    b = tr.init({**m.params, "W": {"number": m.params["W"]["number"] * 0.5}})
    many, hist = tr.fit_many(dmm.train.stack_states([a, b]), 7, chunk=3)
    assert hist["loss"].shape == (2, 7) and hist["finite"].all()
    for i, st in enumerate([a, b]):
        one, h = tr.fit(st, 7, progress=False)
        np.testing.assert_allclose(hist["loss"][i], h["loss"], rtol=1e-4, atol=1e-6)  # float32, vmapped sums
        np.testing.assert_allclose(np.asarray(dmm.train.unstack_state(many, i).params["W"]["number"]),
                                   np.asarray(one.params["W"]["number"]), rtol=1e-4, atol=1e-6)
        assert float(tr.evaluate_many(many)[i]) == pytest.approx(float(tr.evaluate(one).loss), rel=1e-4, abs=1e-6)


def test_fit_many_freezes_a_member_that_blows_up():
    m, loss = regression({"s0": 0.2, "s1": 1.0})
    tr = dmm.train.Trainer(m, loss, optax.sgd(1e-3), 4)
    bad = tr.init({**m.params, "W": {"number": jnp.full_like(m.params["W"]["number"], jnp.inf)}})
    many, hist = tr.fit_many(dmm.train.stack_states([tr.init(), bad]), 3)
    assert hist["finite"][0].all() and not hist["finite"][1].any()
    assert np.isnan(tr.evaluate_many(many)[1]) and np.isfinite(tr.evaluate_many(many)[0])


def test_search_cuts_groups_in_parallel_and_backtracks_on_the_structure(tmp_path):
    m, loss = regression(WEIGHTS)
    # a tiny SGD rate: recovery barely moves the weights, so each trial's outcome is the loss of its cut
    tr = dmm.train.Trainer(m, loss, optax.sgd(1e-6), 4)
    st = tr.init()
    base = float(tr.evaluate(st).loss)
    cfg = dmm.sparsify.SearchConfig(tolerance=base + 0.05, trials=4, recover_steps=2, cut=8)
    good, report = dmm.sparsify.search_sparsify(tr, st, cfg, log=tmp_path / "search.jsonl")
    first = report.attempts[0]
    # round 1: trials cut the 6, 3 and 1 best-ranked links, then the second-ranked link alone; the four noise
    # links rank first (their removal barely changes the loss), the group of 3 noise links is the largest acceptable
    assert [n for n, _ in first["trials"]] == [6, 3, 1, 1]
    assert first["accepted"] and len(first["cut"]) == 3
    assert all(c[0] in ("s2.out", "s3.out", "s4.out", "s5.out") for c in first["cut"])
    # every accepted round stayed within the limit, every rejected trial exceeded it
    # (and no trial that cut more links was acceptable)
    for a in report.attempts:
        if a["accepted"]:
            assert a["loss_after"] <= a["limit"]
            assert all(l > a["limit"] for n, l in a["trials"] if n > len(a["cut"]))
        else:
            assert all(l > a["limit"] for _, l in a["trials"])
    # the needed links s0 (small) and s1 survive; after both fail alone they are reported uncuttable
    assert set(dmm.sparsify.live_links(good, m)) == {("s0.out", "out.y"), ("s1.out", "out.y")}
    assert report.critical == [("s0.out", "out.y"), ("s1.out", "out.y")]
    assert report.steps == len(report.attempts) * cfg.trials * cfg.recover_steps
    assert len((tmp_path / "search.jsonl").read_text().splitlines()) == len(report.attempts)


def test_search_ratchet_rejects_cuts_that_undo_training():
    # target 2.05 = 0.05·s0 + 1.0·s1: cutting s2 (a wrong link) lowers the loss, cutting s0 raises it slightly
    m, loss = regression({"s0": 0.05, "s1": 1.0, "s2": 0.1}, target=2.05)
    tr = dmm.train.Trainer(m, loss, optax.sgd(0.0), 4)
    st = tr.init()
    loose = dmm.sparsify.SearchConfig(tolerance=0.02, trials=2, recover_steps=1)
    _, report = dmm.sparsify.search_sparsify(tr, st, loose)
    assert report.links == 1  # s2 then s0 go: 4·0.05² = 0.01 <= 0.02
    ratchet = dmm.sparsify.SearchConfig(tolerance=0.0, ratchet=1.5, trials=2, recover_steps=1)
    good, report = dmm.sparsify.search_sparsify(tr, st, ratchet)
    # after s2 goes the loss is 0, so nothing more may be cut (the limit ratchets down to the tolerance, 0)
    assert set(dmm.sparsify.live_links(good, m)) == {("s0.out", "out.y"), ("s1.out", "out.y")}
    assert report.loss == pytest.approx(0.0, abs=1e-10)


def swap_problem():
    """Constant sources a = 1, b = 3; an identity neuron p (initially 1) fed by a; a sink y; target y = 3 at every
    cycle. Live: a → p.in (1), p.out → y (2.9: loss 0.01 per cycle). Cut but available: a → y, b → y, b → p.in."""
    p = dmm.Program()
    p.add("a", neurons.const(1.0), initial={"out": 1.0})
    p.add("b", neurons.const(3.0), initial={"out": 3.0})
    p.add("p", neurons.identity(), initial={"out": 1.0})
    p.add("out", neurons.sink(["y"]))
    p.link("a.out", "p.in", 1.0)
    p.link("p.out", "out.y", 2.9)
    for src, dst in [("a.out", "out.y"), ("b.out", "out.y"), ("b.out", "p.in")]:
        p.link(src, dst, 0.0)
    m = dmm.compile(p)
    residuals = lambda t, d: t["out.y"] - 3.0
    tr = dmm.train.Trainer(m, lambda t, d: jnp.sum(residuals(t, d) ** 2), optax.adam(1e-4), 6)
    st = dmm.sparsify.prune(tr, tr.init(), [("a.out", "out.y"), ("b.out", "out.y"), ("b.out", "p.in")])
    return m, tr, st, residuals


def test_regrow_gives_links_back_with_a_fresh_optimizer_state():
    m, tr, st, _ = swap_problem()
    st, _ = tr.fit(st, 3, progress=False)
    back = dmm.sparsify.regrow(tr, st, {("b.out", "out.y"): 0.5})
    assert dmm.sparsify.live_links(back, m) == {**dmm.sparsify.live_links(st, m), ("b.out", "out.y"): 0.5}
    k, pos = m.entry("b.out", "out.y")
    mu = lambda s: np.asarray(s.opt_state[0].mu["W"][k])
    assert mu(back)[pos] == 0 and np.array_equal(np.delete(mu(back), pos), np.delete(mu(st), pos))
    trained, _ = tr.fit(back, 2, progress=False)
    assert dmm.sparsify.live_links(trained, m)[("b.out", "out.y")] != 0.5  # it trains again
    with pytest.raises(dmm.ProgramError, match="not trainable"):
        dmm.sparsify.regrow(tr, st, {("p.out", "p.in"): 1.0})  # not a link of the program


def test_regrow_gains_follow_the_closed_form():
    # with p.out → y cut, y = w_a·1 + w_b·3 is linear in the regrown weight: for T = 6 cycles of residual −3,
    # L(0) = 54; a → y: g = −6T, H = 2T, w* = 3; b → y: g = −18T, H = 18T, w* = 1; both gain 9T = L(0) (exact fit);
    # b → p.in no longer reaches the output (H = 0, left out)
    m, tr, st, residuals = swap_problem()
    cut = dmm.sparsify.prune(tr, st, [("p.out", "out.y")])
    gains = {l: (g, w) for l, g, w in dmm.sparsify.regrow_gains(tr, cut, residuals)}
    assert set(gains) == {("a.out", "out.y"), ("b.out", "out.y"), ("p.out", "out.y")}
    np.testing.assert_allclose(gains[("a.out", "out.y")], (54.0, 3.0), rtol=1e-5)
    np.testing.assert_allclose(gains[("b.out", "out.y")], (54.0, 1.0), rtol=1e-5)


def test_swap_frees_the_links_a_better_route_makes_useless(tmp_path):
    m, tr, st, residuals = swap_problem()
    config = dmm.sparsify.SwapConfig(tolerance=1.0, trials=4, recover_steps=5, polish_steps=0, max_rounds=3)
    out, report = dmm.sparsify.swap_sparsify(tr, st, residuals, config, log=tmp_path / "swaps.jsonl")
    # the swap replaces p.out → y by a direct link at its optimum; a → p.in then costs nothing to cut
    live = dmm.sparsify.live_links(out, m)
    assert len(live) == 1 and report.links == 1
    ((link, w),) = live.items()
    assert (link, round(w, 2)) in {(("a.out", "out.y"), 3.0), (("b.out", "out.y"), 1.0)}
    assert report.loss < 1e-6 < float(tr.evaluate(st).loss)
    first = report.attempts[0]
    assert first["accepted"] and first["cut"] == ["p.out", "out.y"] and first["freed"] == [["a.out", "p.in"]]
    assert not report.attempts[-1]["accepted"]  # a swap must lower the loss: no cycling between exact fits
    assert len((tmp_path / "swaps.jsonl").read_text().splitlines()) == len(report.attempts)
    with pytest.raises(dmm.ProgramError, match="tolerance"):
        dmm.sparsify.SwapConfig(tolerance=-1.0)
