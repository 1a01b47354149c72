"""The DMM Transformer programs trained on MQAR against the plain-JAX Transformer, from the same weights on the
same batches.

    python benchmarks/transformer.py                     # V = 256, L = 64, 4 pairs; 2 layers, d 64, 2 heads; B 64
    python benchmarks/transformer.py --forms plain,sequence --steps 300 --json /tmp/t.json
    python benchmarks/transformer.py --quick             # tiny sizes, a few steps (a smoke run)

Three forms of one network (`programs.transformer`, softmax attention, MLP width 4·d, pre-LN):

- **plain**: `benchmarks/plain_transformer.py`, written directly in JAX (the baseline);
- **sequence**: the DMM program of the sequence form, one (L,) ids stream per cycle. An episode feeds `pipeline`
  examples at cycles 1 … P and reads their logits at cycles c … c + P − 1 (c = `logits_cycle`), horizon
  c + P − 1; a step's batch B is B / P episodes (vmapped) of P pipelined examples;
- **token**: the DMM program of the token form, one token per cycle (the KV cache in the mixer's state): an
  episode is one example, tokens at cycles 1 … L, logits at c … c + L − 1, horizon c + L − 1; B episodes a step.

All start from the plain parameters (`plain_transformer.init`, passed to the DMM builder with ``params=``); the
logits of each DMM form are checked equal to the plain ones on the held-out set before training (max abs
difference printed, at most 1e-5). Every form takes the same AdamW (`plain_transformer.optimizer`: lr 3e-3 after a
linear warm-up of 100 steps, weight decay 0.1 on every trained parameter) and, at step i, the same MQAR batch
(``attention.mqar(fold_in(k_data, i), B)``, drawn before the step is timed). The loss is the cross-entropy over the
MQAR query positions only (labels ≠ −100): `plain_transformer.loss` on the plain side, on the DMM side a
`dmm.train.Trainer` (``batched=True``) with `dmm.train.losses.trace_cross_entropy` on the logits rows (every
example of a step has the same number of query positions, so the Trainer's batch mean of episode means is the
plain side's mean over the batch). The DMM runs use the Trainer's defaults except ``guard=False`` (the plain step
checks no finiteness either; ``--guard`` turns it on).

Measured per form: the test accuracy on a fixed held-out MQAR set every `--eval-every` steps (final, and the first
evaluated step at ≥ 0.99), the first step's wall time (compilation included), and the median seconds per step over
the steps after it (the first 5 of those skipped as warm-up), each step blocked on. The ratios DMM s/step over
plain s/step are printed last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the packages, ahead of this folder's scripts
sys.path.append(str(Path(__file__).resolve().parent))  # common, plain_transformer (last: shadows nothing)

import jax
import jax.numpy as jnp
import numpy as np

import dmm
import dmm.train
from attention import mqar
from common import machine_line
from dmm.train.losses import trace_accuracy, trace_cross_entropy
from programs.transformer import LOGITS, TOKENS, logits_cycle, transformer

import plain_transformer as plain

FORMS = ("plain", "sequence", "token")
"""The forms the benchmark trains: the plain-JAX baseline and the two DMM program forms."""

WARMUP_STEPS = 5
"""Steps after the first (compiling) one left out of the median seconds per step."""


@dataclass(frozen=True)
class Config:
    """The benchmark's sizes and schedule (ints unless noted; the defaults are the full benchmark).

    `vocab` V, `length` L, `pairs` D (MQAR); `d_model` d, `heads` H, `layers`, `mlp` the MLP width factor (the
    plain model's is 4); `batch` B sequences per step; `steps` the number of steps; `eval_every` steps between
    evaluations on `test_size` held-out sequences; `pipeline` P examples per sequence-form episode (divides `batch`
    and `test_size`; None: `batch`, one episode a step); `lr` (float), `warmup`, `weight_decay` (float) the AdamW settings; `target` (float) the test
    accuracy whose first step is reported; `seed` the PRNG seed; `guard` the Trainer's NaN/Inf guard (bool);
    `stop_at_target` (bool): stop a form once it reaches `target`."""

    vocab: int = 256
    length: int = 64
    pairs: int = 4
    d_model: int = 64
    heads: int = 2
    layers: int = 2
    mlp: int = 4
    batch: int = 64
    steps: int = 300
    eval_every: int = 25
    test_size: int = 1024
    pipeline: int | None = None
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    target: float = 0.99
    seed: int = 0
    guard: bool = False
    stop_at_target: bool = False

    def __post_init__(self) -> None:
        if self.pipeline is None:
            object.__setattr__(self, "pipeline", self.batch)
        for name in ("vocab", "length", "pairs", "d_model", "heads", "layers", "mlp", "batch", "steps", "eval_every",
                     "test_size", "pipeline"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Config: {name} must be a positive int, not {v!r}")
        if self.mlp != 4:
            raise ValueError(f"Config: the plain model's MLP width factor is 4, not {self.mlp}")
        if self.batch % self.pipeline or self.test_size % self.pipeline:
            raise ValueError(f"Config: pipeline {self.pipeline} must divide batch {self.batch} and test_size "
                             f"{self.test_size}")

    @property
    def task(self) -> dict[str, int]:
        return {"vocab": self.vocab, "length": self.length, "pairs": self.pairs}


QUICK = {"vocab": 32, "length": 16, "pairs": 2, "d_model": 16, "heads": 2, "layers": 1, "batch": 8, "steps": 8,
         "eval_every": 4, "test_size": 16, "pipeline": 4, "warmup": 2}
"""The --quick sizes (a smoke run of a few seconds per form)."""


@dataclass
class FormResult:
    """One form's measurements: `start_diff` the max abs difference of its logits from the plain ones at the start
    (0 for plain); `compile_s` the first step's wall time; `step_s` the median seconds per steady step; `history`
    [(step, test accuracy)]; `final_accuracy`; `steps_to_target` (None if never reached); `losses` per step."""

    form: str
    start_diff: float = 0.0
    compile_s: float = float("nan")
    step_s: float = float("nan")
    history: list[tuple[int, float]] = field(default_factory=list)
    final_accuracy: float = float("nan")
    steps_to_target: int | None = None
    losses: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------------ forms


class Plain:
    """The plain-JAX side: `step(tokens, labels)` trains, `accuracy()` evaluates on the test set, `logits(tokens)`."""

    def __init__(self, cfg: Config, params: Any, test: tuple[jax.Array, jax.Array]) -> None:
        self.params = params
        self.opt = plain.optimizer(cfg.lr, cfg.warmup, cfg.weight_decay)
        self.opt_state = self.opt.init(params)
        self._step = jax.jit(plain.make_step(self.opt, heads=cfg.heads))
        tokens, labels = test
        self._acc = jax.jit(lambda p: plain.accuracy(p, tokens, labels, heads=cfg.heads))
        self._logits = jax.jit(lambda p, t: plain.forward(p, t, heads=cfg.heads))

    def step(self, tokens: jax.Array, labels: jax.Array) -> float:
        self.params, self.opt_state, value = jax.block_until_ready(self._step(self.params, self.opt_state, tokens, labels))
        return value

    def accuracy(self) -> float:
        return float(self._acc(self.params))

    def logits(self, tokens: jax.Array) -> np.ndarray:
        return np.asarray(self._logits(self.params, tokens))


class Program:
    """A DMM form trained by `dmm.train.Trainer` (``batched=True``); same interface as `Plain`.

    `feed(tokens, labels)` lays a batch (B, L) out as the Trainer's inputs {TOKENS: (E, horizon, ...)} and data
    (labels (E, P, L) in the sequence form, (E, L) in the token form; E episodes)."""

    def __init__(self, cfg: Config, form: str, params: Any, test: tuple[jax.Array, jax.Array]) -> None:
        self.cfg, self.form = cfg, form
        program = transformer(vocab=cfg.vocab, length=cfg.length, d_model=cfg.d_model, heads=cfg.heads,
                              layers=cfg.layers, mlp=cfg.mlp, mixer="softmax", form=form, params=params)
        self.machine = dmm.compile(program)
        c = logits_cycle(program)
        n = cfg.pipeline if form == "sequence" else cfg.length  # predictions per episode
        self.horizon = c + n - 1
        self.rows = slice(c - 1, c - 1 + n)  # trace rows r hold cycle r + 1
        rows = self.rows

        def loss(trace: dmm.Trace, labels: jax.Array) -> jax.Array:
            return trace_cross_entropy(trace, LOGITS, labels, rows=rows)  # mask: labels ≥ 0, the query positions

        opt = plain.optimizer(cfg.lr, cfg.warmup, cfg.weight_decay)
        self.trainer = dmm.train.Trainer(self.machine, loss, opt, steps=self.horizon, record=[LOGITS], batched=True,
                                         guard=cfg.guard)
        self.state = self.trainer.init()
        self.test_inputs, self.test_labels = self.feed(*test)
        h, machine = self.horizon, self.machine

        def run(p, inputs):
            return dmm.run_batch(machine, h, params=p, inputs=inputs, record=[LOGITS])

        self._acc = jax.jit(lambda p, inputs, labels: trace_accuracy(run(p, inputs), LOGITS, labels, rows=rows))
        self._logits = jax.jit(lambda p, inputs: run(p, inputs)[LOGITS][:, rows])

    def feed(self, tokens: jax.Array, labels: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
        """The Trainer's inputs and data for int tokens and labels (B, L) (see the class docstring)."""
        b, length = tokens.shape
        ids = jnp.asarray(tokens, self.machine.dtype)
        if self.form == "sequence":
            p = self.cfg.pipeline
            ids = ids.reshape(b // p, p, length)
            pad = jnp.zeros((b // p, self.horizon - p, length), ids.dtype)
            return {TOKENS: jnp.concatenate([ids, pad], axis=1)}, labels.reshape(b // p, p, length)
        pad = jnp.zeros((b, self.horizon - length), ids.dtype)
        return {TOKENS: jnp.concatenate([ids, pad], axis=1)}, labels

    def step(self, tokens: jax.Array, labels: jax.Array) -> float:
        inputs, data = self.feed(tokens, labels)
        self.state, metrics = self.trainer.update(self.state, inputs, data)
        jax.block_until_ready(self.state.params)
        return metrics.loss

    def accuracy(self) -> float:
        return float(self._acc(self.state.params, self.test_inputs, self.test_labels))

    def logits(self, tokens: jax.Array) -> np.ndarray:
        """The logits (B, L, V) of int tokens (B, L) (B a multiple of the pipeline in the sequence form)."""
        inputs, _ = self.feed(tokens, jnp.zeros_like(tokens))
        out = np.asarray(self._logits(self.state.params, inputs))  # (E, n, ...)
        return out.reshape(tokens.shape + (self.cfg.vocab,)) if self.form == "sequence" else out


# ------------------------------------------------------------------------------------------------------ driver


def train_form(model: Plain | Program, result: FormResult, cfg: Config, k_data: jax.Array, log) -> FormResult:
    """Train `model` for `cfg.steps` steps on the batches of `k_data`, filling `result` (see `FormResult`)."""
    draw = jax.jit(lambda i: mqar(jax.random.fold_in(k_data, i), cfg.batch, **cfg.task))
    times = []
    for i in range(cfg.steps):
        tokens, labels = jax.block_until_ready(draw(i))
        t = time.perf_counter()
        value = model.step(tokens, labels)
        times.append(time.perf_counter() - t)
        result.losses.append(float(value))
        done = i + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            acc = model.accuracy()
            result.history.append((done, acc))
            log(f"{result.form:>8}  step {done:5d}  loss {float(value):.4f}  test accuracy {acc:.4f}  "
                f"({1e3 * statistics.median(times[1:] or times):.1f} ms/step so far)")
            if result.steps_to_target is None and acc >= cfg.target:
                result.steps_to_target = done
                if cfg.stop_at_target:
                    break
    result.compile_s = times[0]
    steady = times[1 + WARMUP_STEPS:] if len(times) > 1 + WARMUP_STEPS else (times[1:] or times)
    result.step_s = statistics.median(steady)
    result.final_accuracy = result.history[-1][1]
    return result


def run(cfg: Config, forms: tuple[str, ...] = FORMS, log=print) -> dict[str, Any]:
    """Run the benchmark for `forms` (names from `FORMS`); returns {"config", "machine", "forms": {form:
    FormResult as a dict}, "ratio": {DMM form: its s/step over plain's}} (ratios only when plain ran)."""
    bad = [f for f in forms if f not in FORMS]
    if bad:
        raise ValueError(f"unknown forms {bad}; choose from {FORMS}")
    k_init, k_data, k_test = jax.random.split(jax.random.key(cfg.seed), 3)
    params = plain.init(k_init, vocab=cfg.vocab, length=cfg.length, d_model=cfg.d_model, heads=cfg.heads,
                        layers=cfg.layers)
    test = mqar(k_test, cfg.test_size, **cfg.task)
    reference = Plain(cfg, params, test)
    probe = test[0][: cfg.pipeline]
    expect = reference.logits(probe)
    results: dict[str, FormResult] = {}
    for form in forms:
        result = FormResult(form)
        if form == "plain":
            model = reference
        else:
            t = time.perf_counter()
            model = Program(cfg, form, params, test)
            result.start_diff = float(np.max(np.abs(model.logits(probe) - expect)))
            log(f"{form:>8}  built and compiled in {time.perf_counter() - t:.1f} s; {len(model.machine.program.neurons)} "
                f"neurons, horizon {model.horizon} cycles; max |logits − plain logits| at the start "
                f"{result.start_diff:.2e}")
            if not result.start_diff <= 1e-5:
                raise AssertionError(f"{form}: the DMM logits differ from the plain ones by {result.start_diff:.3g} "
                                     "at the start (tolerance 1e-5)")
        results[form] = train_form(model, result, cfg, k_data, log)
    out: dict[str, Any] = {"config": asdict(cfg), "machine": machine_line(),
                           "forms": {f: asdict(r) for f, r in results.items()}, "ratio": {}}
    if "plain" in results:
        out["ratio"] = {f: r.step_s / results["plain"].step_s for f, r in results.items() if f != "plain"}
    return out


def table(out: dict[str, Any]) -> str:
    """A Markdown table of `run`'s result."""
    head = ("| form | final test accuracy | steps to 0.99 | compile (first step), s | s / step (median) | "
            "start max abs diff |")
    lines = [head, "|---|---|---|---|---|---|"]
    for f, r in out["forms"].items():
        reached = r["steps_to_target"] if r["steps_to_target"] is not None else "not reached"
        lines.append(f"| {f} | {r['final_accuracy']:.4f} (step {r['history'][-1][0]}) | {reached} | "
                     f"{r['compile_s']:.2f} | {r['step_s']:.4f} | {r['start_diff']:.1e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Config()
    ap.add_argument("--steps", type=int, default=None, help=f"training steps per form (default {d.steps})")
    ap.add_argument("--forms", default=",".join(FORMS), help=f"comma-separated, of {', '.join(FORMS)} (default all)")
    ap.add_argument("--batch", type=int, default=None, help=f"sequences per step (default {d.batch})")
    ap.add_argument("--length", type=int, default=None, help=f"MQAR sequence length L (default {d.length})")
    ap.add_argument("--eval-every", type=int, default=None, help=f"steps between evaluations (default {d.eval_every})")
    ap.add_argument("--test-size", type=int, default=None, help=f"held-out sequences (default {d.test_size})")
    ap.add_argument("--pipeline", type=int, default=None,
                    help="examples pipelined per sequence-form episode (default: the batch)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--lr", type=float, default=None, help=f"AdamW peak learning rate (default {d.lr:g})")
    ap.add_argument("--warmup", type=int, default=None, help=f"linear warm-up steps (default {d.warmup})")
    ap.add_argument("--weight-decay", type=float, default=None, help=f"AdamW weight decay (default {d.weight_decay:g})")
    ap.add_argument("--guard", action="store_true", help="the Trainer's NaN/Inf guard on (default off)")
    ap.add_argument("--stop-at-target", action="store_true", help="stop each form once it reaches 0.99")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and a few steps (a smoke run)")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    args = ap.parse_args(argv)
    sizes: dict[str, Any] = dict(QUICK) if args.quick else {}
    for name in ("steps", "batch", "length", "eval_every", "test_size", "pipeline", "lr", "warmup", "weight_decay"):
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    cfg = Config(**sizes, seed=args.seed, guard=args.guard, stop_at_target=args.stop_at_target)
    forms = tuple(f.strip() for f in args.forms.split(",") if f.strip())
    print(f"# {machine_line()}")
    print(f"# MQAR V = {cfg.vocab}, L = {cfg.length}, {cfg.pairs} pairs; {cfg.layers} layers, d_model {cfg.d_model}, "
          f"{cfg.heads} heads, batch {cfg.batch}; AdamW lr {cfg.lr:g} (warm-up {cfg.warmup}), weight decay "
          f"{cfg.weight_decay:g}; {cfg.steps} steps, test set {cfg.test_size}; sequence-form pipeline {cfg.pipeline}",
          flush=True)
    out = run(cfg, forms, log=lambda s: print(s, flush=True))
    out["command"] = "python benchmarks/transformer.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(table(out))
    for f, r in out["ratio"].items():
        print(f"ratio DMM {f} / plain s/step: {r:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
