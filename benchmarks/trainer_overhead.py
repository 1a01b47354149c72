"""The overhead of `dmm.train.Trainer`'s step over a hand-written jitted ``value_and_grad`` of `Machine.simulate`.

Both sides train the same Transformer program (`programs.transformer`, sequence and token forms) on the same MQAR
batches (`attention.mqar`, laid out as ``benchmarks/transformer.py``'s `Program.feed` does) with the same loss
(`dmm.train.losses.trace_cross_entropy` on the logits rows c - 1 … c - 1 + P, c = `logits_cycle`), the same AdamW
(`plain_transformer.optimizer`) and the same trainable mask (`machine.trainable`):

- **trainer**: ``Trainer(batched=True, record=[LOGITS], guard=..., remat=...)`` and ``trainer.update`` per step;
- **trainer step**: the Trainer's jitted pure step (``trainer.jitted(Trainer.train_step, ...)``) called directly,
  without `update`'s host work (input conversion, the guard's ``bool(finite)`` sync);
- **hand**: ``jax.jit`` of ``value_and_grad(mean over jax.vmap(machine.simulate ...))`` + the masked optax update.

Each variant's losses are checked equal to the hand-written ones (float rounding). Printed: the median seconds
per step of each (after warm-up), and the ratio trainer / hand.

    python benchmarks/trainer_overhead.py                       # both forms, guard off and on, remat auto
    python benchmarks/trainer_overhead.py --forms sequence --remat none,step --steps 20
    python benchmarks/trainer_overhead.py --record logits,all   # record only the logits, or every stream
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))

import jax
import jax.numpy as jnp
import numpy as np
import optax

import dmm
import dmm.train
from attention import mqar
from common import machine_line
from dmm.train import Trainer
from dmm.train.losses import trace_cross_entropy
from programs.transformer import LOGITS, TOKENS, logits_cycle, transformer

import plain_transformer as plain

WARMUP = 2
"""Steps (after the compiling one) left out of the median."""


def masked(tree, mask):
    return jax.tree_util.tree_map(lambda x, m: jnp.where(m, x, jnp.zeros_like(x)), tree, mask)


class Setup:
    """One form: the machine, its horizon, loss rows and a feed of MQAR batches (as `transformer.Program.feed`)."""

    def __init__(self, form: str, args) -> None:
        self.form, self.args = form, args
        program = transformer(vocab=args.vocab, length=args.length, d_model=args.d_model, heads=args.heads,
                              layers=args.layers, form=form)
        self.machine = dmm.compile(program)
        c = logits_cycle(program)
        self.batch = args.batch if form == "sequence" else args.token_batch
        self.pipeline = self.batch if form == "sequence" else None
        n = self.pipeline if form == "sequence" else args.length
        self.horizon = c + n - 1
        self.rows = slice(c - 1, c - 1 + n)
        key = jax.random.key(args.seed)
        self.batches = [self.feed(*mqar(jax.random.fold_in(key, i), self.batch, vocab=args.vocab,
                                        length=args.length, pairs=args.pairs)) for i in range(args.steps)]

    def feed(self, tokens, labels):
        b, length = tokens.shape
        ids = jnp.asarray(tokens, self.machine.dtype)
        if self.form == "sequence":
            p = self.pipeline
            ids = ids.reshape(b // p, p, length)
            pad = jnp.zeros((b // p, self.horizon - p, length), ids.dtype)
            return {TOKENS: jnp.concatenate([ids, pad], axis=1)}, labels.reshape(b // p, p, length)
        pad = jnp.zeros((b, self.horizon - length), ids.dtype)
        return {TOKENS: jnp.concatenate([ids, pad], axis=1)}, labels

    def loss(self, trace, labels):
        return trace_cross_entropy(trace, LOGITS, labels, rows=self.rows)


def interleaved(calls: dict, batches) -> dict:
    """{name: (median seconds per step, losses)} of running each ``call(inputs, data) -> loss`` of `calls` over
    `batches`, the variants interleaved step by step (so that a load on a shared machine hits them alike); each
    step is blocked on; the first (compiling) step and `WARMUP` more are left out of the median."""
    times = {n: [] for n in calls}
    losses = {n: [] for n in calls}
    for inputs, data in batches:
        for n, call in calls.items():
            t = time.perf_counter()
            loss = jax.block_until_ready(call(inputs, data))
            times[n].append(time.perf_counter() - t)
            losses[n].append(float(loss))
    out = {}
    for n in calls:
        ts = times[n]
        steady = ts[1 + WARMUP:] if len(ts) > 1 + WARMUP else ts[1:] or ts
        out[n] = (statistics.median(steady), np.asarray(losses[n]))
    return out


def hand_call(s: Setup, remat: str, record: tuple[str, ...]):
    """The hand-written step as ``call(inputs, data) -> loss`` (it keeps its parameters and optimizer state)."""
    m, h, opt = s.machine, s.horizon, plain.optimizer(s.args.lr, 2, 0.1)
    kinds = {n: m.kind(n) for n in record}

    def objective(p, inputs, labels):
        def one(inp, lab):
            final, recs, _ = m.simulate(p, None, inp, None, steps=h, record=record, remat=remat)
            return s.loss(dmm.Trace(recs, kinds, jnp.zeros((), jnp.int32), final), lab)

        return jnp.mean(jax.vmap(one)(inputs, labels))

    @jax.jit
    def step(params, opt_state, mask, inputs, labels):
        value, g = jax.value_and_grad(objective)(params, inputs, labels)
        g = masked(g, mask)
        with jax.numpy_dtype_promotion("standard"):
            u, opt_state = opt.update(g, opt_state, params)
        return optax.apply_updates(params, masked(u, mask)), opt_state, value

    box = {"p": m.params, "o": opt.init(m.params)}
    mask = m.trainable

    def call(inputs, data):
        box["p"], box["o"], value = step(box["p"], box["o"], mask, inputs, data)
        return value

    return call


def trainer_call(s: Setup, remat: str, record: tuple[str, ...], guard: bool, direct: bool):
    """The Trainer's step as ``call(inputs, data) -> loss``: `update`, or (`direct`) its jitted pure step."""
    opt = plain.optimizer(s.args.lr, 2, 0.1)
    trainer = Trainer(s.machine, s.loss, opt, steps=s.horizon, record=list(record), batched=True, guard=guard,
                      remat=remat)
    box = {"s": trainer.init()}
    if direct:
        fn = trainer.jitted(Trainer.train_step, static_argnames=("horizon",))

        def call(inputs, data):
            box["s"], metrics, _ = fn(box["s"], inputs, data, horizon=s.horizon)
            return metrics.loss
    else:
        def call(inputs, data):
            box["s"], metrics = trainer.update(box["s"], inputs, data)
            return metrics.loss

    return call


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forms", default="sequence,token")
    ap.add_argument("--steps", type=int, default=8, help="steps per variant (the first compiles)")
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=32)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16, help="sequences per step, sequence form (one episode)")
    ap.add_argument("--token-batch", type=int, default=4, help="sequences (episodes) per step, token form")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guard", default="off,on", help="comma-separated of off, on")
    ap.add_argument("--remat", default="auto", help="comma-separated of auto, none, step, nested")
    ap.add_argument("--record", default="logits", help="comma-separated of logits, default, all")
    ap.add_argument("--direct", action="store_true", help="also time the Trainer's jitted step without update()")
    args = ap.parse_args(argv)
    print(f"# {machine_line()}")
    for form in [f for f in args.forms.split(",") if f]:
        s = Setup(form, args)
        print(f"## {form} form: {len(s.machine.program.neurons)} neurons, horizon {s.horizon}, batch {s.batch}; "
              f"remat 'auto' resolves to {s.machine.resolve_remat('auto').name!r}", flush=True)
        for remat in args.remat.split(","):
            for rec_name in args.record.split(","):
                record = {"logits": (LOGITS,), "default": s.machine.record_names(None),
                          "all": s.machine.record_names("all")}[rec_name]
                calls = {"hand": hand_call(s, remat, record)}
                for guard in args.guard.split(","):
                    for direct in (False, True) if args.direct else (False,):
                        name = f"guard {guard:3s} {'trainer step' if direct else 'trainer':12s}"
                        calls[name] = trainer_call(s, remat, record, guard == "on", direct)
                res = interleaved(calls, s.batches)
                t_hand, l_hand = res.pop("hand")
                head = f"  remat {remat:6s} record {rec_name:7s} ({len(record):3d} streams)"
                print(f"{head} hand                   {t_hand:8.4f} s/step", flush=True)
                for name, (t, losses) in res.items():
                    diff = float(np.max(np.abs(losses - l_hand)))
                    print(f"{head} {name} {t:8.4f} s/step  ratio trainer/hand {t / t_hand:5.2f}  "
                          f"max |loss diff| {diff:.1e}", flush=True)

if __name__ == "__main__":
    main()
