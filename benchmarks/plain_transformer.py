"""A decoder-only Transformer in plain JAX on multi-query associative recall: the baseline for the DMM forms.

    python benchmarks/plain_transformer.py              # V = 256, L = 64, 4 pairs, 2 layers, d_model 64, 2 heads, B 64
    python benchmarks/plain_transformer.py --steps 300  # a shorter run

The model is written directly in JAX (no equinox/flax), its parameters a dict pytree, so that the DMM Transformer
programs (`programs.transformer`) can be compared with it weight for weight. Causal pre-LN decoder:

    h⁰ = E_tok[tokens] + E_pos[0 … L'−1]
    per layer i:  h ← h + MHA(LN(h)),  h ← h + MLP(LN(h))
    logits = LN(h) · W_out + b_out                                            (B, L', V)

- MHA: Q, K, V, O dense maps (d × d weights with biases), H heads of width d/H, scores scaled by 1/√(d/H), causal
  softmax (a position attends to itself and the positions before it).
- MLP: d → 4d → d, GELU between (``jax.nn.gelu`` default, the tanh approximation, approximate=True).
- LayerNorm: over the last axis, biased variance, eps 1e-5, with a scale (init 1) and an offset (init 0).
- Initialisation: dense weights normal with std 1/√d_in, all biases 0; token embeddings normal with std 1, position
  embeddings normal with std 0.02 (with token embeddings of std 0.02, as GPT-2 draws them, the embedding is about 4 %
  of the residual stream after the first block at this size, and MQAR sits at its 0.25 plateau for 3,000+ steps).

The parameter names (the pytree `init` returns; "weight" is (d_in, d_out), applied as x · weight + bias):

    params["embed"]["token"]                        (V, d)
    params["embed"]["position"]                     (L, d)
    params["layers"][i]["ln1"]["scale" | "offset"]  (d,)       LN before attention
    params["layers"][i]["attn"][m]["weight"]        (d, d)     m in "q", "k", "v", "o"
    params["layers"][i]["attn"][m]["bias"]          (d,)
    params["layers"][i]["ln2"]["scale" | "offset"]  (d,)       LN before the MLP
    params["layers"][i]["mlp"]["up"]["weight"]      (d, 4d),  ["bias"] (4d,)
    params["layers"][i]["mlp"]["down"]["weight"]    (4d, d),  ["bias"] (d,)
    params["final_ln"]["scale" | "offset"]          (d,)
    params["readout"]["weight"]                     (d, V),   ["bias"] (V,)

Heads split the feature axis in order: head h owns features h·d/H … (h + 1)·d/H − 1 of Q, K, V and of the input of O.

Training (`train`; its optimizer is `optimizer`, its update `make_step`, both also used by
``benchmarks/transformer.py``): optax AdamW, learning rate 3e-3 after a linear warm-up (default 100 steps), weight
decay 0.1 on every parameter (as Zoology's AdamW over all parameters), β = (0.9, 0.999), batch 64; each step draws
a fresh MQAR batch (`attention.mqar`) inside the jitted step. Measured: compile time of the step, seconds per step (median
over the steps after a warm-up of 5, each blocked on), test accuracy on a fixed held-out set every `eval_every`
steps, and the first evaluated step reaching 0.99 test accuracy.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the packages, ahead of this folder's scripts

import jax
import jax.numpy as jnp
import optax

from attention import mqar

Params = dict[str, Any]
EPS = 1e-5


def _dense(key: jax.Array, d_in: int, d_out: int) -> Params:
    return {"weight": jax.random.normal(key, (d_in, d_out)) / math.sqrt(d_in), "bias": jnp.zeros((d_out,))}


def _ln(d: int) -> Params:
    return {"scale": jnp.ones((d,)), "offset": jnp.zeros((d,))}


def init(key: jax.Array, *, vocab: int, length: int, d_model: int, heads: int, layers: int) -> Params:
    """The parameters of a fresh model (the module docstring lists the names and shapes; default float dtype).

    **Arguments:** `key` a PRNG key; `vocab` V; `length` L the longest sequence (rows of the position embedding);
    `d_model` d, a multiple of `heads` H; `layers` the number of blocks.
    """
    if d_model % heads:
        raise ValueError(f"init: d_model {d_model} is not a multiple of heads {heads}")
    k_tok, k_pos, k_out, *k_layers = jax.random.split(key, 3 + layers)
    out: Params = {
        "embed": {"token": jax.random.normal(k_tok, (vocab, d_model)),
                  "position": 0.02 * jax.random.normal(k_pos, (length, d_model))},
        "layers": [],
        "final_ln": _ln(d_model),
        "readout": _dense(k_out, d_model, vocab),
    }
    for k in k_layers:
        kq, kk, kv, ko, ku, kd = jax.random.split(k, 6)
        out["layers"].append({
            "ln1": _ln(d_model),
            "attn": {m: _dense(km, d_model, d_model) for m, km in zip("qkvo", (kq, kk, kv, ko))},
            "ln2": _ln(d_model),
            "mlp": {"up": _dense(ku, d_model, 4 * d_model), "down": _dense(kd, 4 * d_model, d_model)},
        })
    return out


def layer_norm(p: Params, x: jax.Array) -> jax.Array:
    """LayerNorm over the last axis (biased variance, eps 1e-5), then · scale + offset."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + EPS) * p["scale"] + p["offset"]


def dense(p: Params, x: jax.Array) -> jax.Array:
    """x · weight + bias."""
    return x @ p["weight"] + p["bias"]


def attention(p: Params, x: jax.Array, heads: int) -> jax.Array:
    """Causal multi-head softmax self-attention of x (B, L, d) -> (B, L, d)."""
    b, n, d = x.shape
    split = lambda y: y.reshape(b, n, heads, d // heads)
    q, k, v = (split(dense(p[m], x)) for m in "qkv")
    scores = jnp.einsum("bqhc,bkhc->bhqk", q, k) / math.sqrt(d // heads)
    causal = jnp.tril(jnp.ones((n, n), bool))
    scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
    mixed = jnp.einsum("bhqk,bkhc->bqhc", jax.nn.softmax(scores, axis=-1), v)
    return dense(p["o"], mixed.reshape(b, n, d))


def forward(params: Params, tokens: jax.Array, *, heads: int) -> jax.Array:
    """The logits (B, L', V) of int tokens (B, L'), L' ≤ L; `heads` H (static, as given to `init`)."""
    h = params["embed"]["token"][tokens] + params["embed"]["position"][: tokens.shape[-1]]
    for lp in params["layers"]:
        h = h + attention(lp["attn"], layer_norm(lp["ln1"], h), heads)
        u = jax.nn.gelu(dense(lp["mlp"]["up"], layer_norm(lp["ln2"], h)))  # approximate=True (tanh) by default
        h = h + dense(lp["mlp"]["down"], u)
    return dense(params["readout"], layer_norm(params["final_ln"], h))


def loss(params: Params, tokens: jax.Array, labels: jax.Array, *, heads: int) -> jax.Array:
    """Mean cross-entropy over the positions with label ≥ 0 (labels −100 are ignored); tokens, labels int (B, L')."""
    logits = forward(params, tokens, heads=heads)
    mask = labels >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(mask, labels, 0))
    return jnp.sum(jnp.where(mask, ce, 0.0)) / jnp.maximum(jnp.sum(mask), 1).astype(ce.dtype)


def accuracy(params: Params, tokens: jax.Array, labels: jax.Array, *, heads: int) -> jax.Array:
    """The fraction of positions with label ≥ 0 whose argmax logit is the label."""
    mask = labels >= 0
    hit = (jnp.argmax(forward(params, tokens, heads=heads), axis=-1) == labels) & mask
    return jnp.sum(hit) / jnp.maximum(jnp.sum(mask), 1)


def optimizer(lr: float = 3e-3, warmup: int = 100, weight_decay: float = 0.1) -> optax.GradientTransformation:
    """The benchmarks' AdamW: peak learning rate `lr` (float) after a linear warm-up of `warmup` steps (int; 0: none),
    then constant; decoupled weight decay `weight_decay` (float) on every parameter; β = (0.9, 0.999)."""
    schedule = optax.linear_schedule(0.0, lr, warmup) if warmup else lr
    return optax.adamw(schedule, b1=0.9, b2=0.999, weight_decay=weight_decay)


def make_step(opt: optax.GradientTransformation, *, heads: int) -> Callable:
    """The pure training step ``step(params, opt_state, tokens, labels) -> (params, opt_state, loss)`` (jit it):
    one `opt` update on the gradient of `loss` for int tokens and labels (B, L'); `heads` H as given to `init`. The
    update runs under JAX's standard dtype promotion (as `dmm.train.Trainer`'s optimizers do), so the step also
    works where a user sets ``jax_numpy_dtype_promotion="strict"``."""

    def step(params: Params, opt_state: Any, tokens: jax.Array, labels: jax.Array):
        value, grads = jax.value_and_grad(loss)(params, tokens, labels, heads=heads)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 step counts
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value

    return step


class Result(NamedTuple):
    """What `train` measured: the final `params`; `compile_s` the step's compile time; `step_s` the median seconds
    per step after the warm-up; `history` [(step, test accuracy)]; `steps_to_target` the first evaluated step
    with test accuracy ≥ the target (None if never)."""

    params: Params
    compile_s: float
    step_s: float
    history: list[tuple[int, float]]
    steps_to_target: int | None


def train(
    key: jax.Array, *, vocab: int = 256, length: int = 64, pairs: int = 4, d_model: int = 64, heads: int = 2,
    layers: int = 2, batch: int = 64, steps: int = 2000, lr: float = 3e-3, warmup: int = 100,
    weight_decay: float = 0.1, eval_every: int = 50, test_size: int = 1000, target: float = 0.99,
    stop_at_target: bool = True, log: Callable[[str], None] | None = print,
) -> Result:
    """Train on fresh MQAR batches (one drawn inside each jitted step) with AdamW; see the module docstring.

    **Arguments:** `key` a PRNG key (init, data and test set are split from it); the task (`vocab`, `length`,
    `pairs`) and model (`d_model`, `heads`, `layers`) sizes; `batch` sequences per step; `steps` the most steps;
    `lr` the peak learning rate after `warmup` linear warm-up steps (then constant); `weight_decay` AdamW's
    decoupled decay on every parameter; `eval_every` steps between test evaluations on `test_size` held-out
    sequences; `target` the accuracy whose first step is reported (training stops there if `stop_at_target`);
    `log` a line printer (None: silent).
    """
    k_init, k_data, k_test = jax.random.split(key, 3)
    params = init(k_init, vocab=vocab, length=length, d_model=d_model, heads=heads, layers=layers)
    opt = optimizer(lr, warmup, weight_decay)
    update = make_step(opt, heads=heads)
    task = dict(vocab=vocab, length=length, pairs=pairs)
    test_tokens, test_labels = mqar(k_test, test_size, **task)

    def step(params, opt_state, i):
        tokens, labels = mqar(jax.random.fold_in(k_data, i), batch, **task)
        return update(params, opt_state, tokens, labels)

    opt_state = opt.init(params)
    t = time.perf_counter()
    step_c = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, jnp.int32(0)).compile()
    compile_s = time.perf_counter() - t
    evaluate = jax.jit(lambda p: accuracy(p, test_tokens, test_labels, heads=heads))

    times, history, reached = [], [], None
    for i in range(steps):
        t = time.perf_counter()
        params, opt_state, value = jax.block_until_ready(step_c(params, opt_state, jnp.int32(i)))
        times.append(time.perf_counter() - t)
        done = i + 1
        if done % eval_every == 0 or done == steps:
            acc = float(evaluate(params))
            history.append((done, acc))
            if log:
                log(f"step {done:5d}  loss {float(value):.4f}  test accuracy {acc:.4f}")
            if reached is None and acc >= target:
                reached = done
                if stop_at_target:
                    break
    warm = times[5:] if len(times) > 5 else times
    return Result(params, compile_s, statistics.median(warm), history, reached)


def main(argv: list[str] | None = None) -> None:
    from common import machine_line

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="the most training steps (default 2000)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"# {machine_line()}")
    print("# MQAR V = 256, L = 64, 4 pairs; 2 layers, d_model 64, 2 heads, batch 64; AdamW lr "
          f"{args.lr:g} (warm-up {args.warmup}), weight decay {args.weight_decay:g}", flush=True)
    r = train(jax.random.key(args.seed), steps=args.steps, lr=args.lr, warmup=args.warmup,
              weight_decay=args.weight_decay, eval_every=args.eval_every,
              log=lambda s: print(s, flush=True))
    n = sum(x.size for x in jax.tree.leaves(r.params))
    print(f"parameters {n}; compile {r.compile_s:.2f} s; {1e3 * r.step_s:.2f} ms/step (median)")
    print(f"final test accuracy {r.history[-1][1]:.4f} at step {r.history[-1][0]}; steps to 0.99: "
          f"{r.steps_to_target if r.steps_to_target is not None else 'not reached'}")


if __name__ == "__main__":
    main()
