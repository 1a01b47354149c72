"""A decoder-only causal Transformer as a DMM program, in two forms.

The network is the pre-LN decoder of ``benchmarks/plain_transformer.py``, neuron for layer:

    h⁰ = E_tok[tokens] + E_pos                     (neurons "embed", "position")
    per layer i:  h ← h + MIX(LN(h)),  h ← h + MLP(LN(h))
    logits = LN(h) · W_out + b_out                  (neurons "final_ln", "readout")

- **sequence form** (``form="sequence"``): the tokens are one (L,) ids stream (`neurons.ids_kind`), fed to the
  external neuron "tokens"; the activations are (L × d) matrix streams of the kind ``Kind("hidden", (L, d))``, the
  MLP's inner ones ``Kind("hidden_mlp", (L, mlp·d))``, the logits ``Kind("logits", (L, V))``; the mixer is its
  causal sequence form (`attention.Mixer.sequence`).
- **token form** (``form="token"``): one token id per cycle (a NUMBER stream "tokens.out"), the activations (d,)
  vectors of the same kind names; the mixer is its gated token form (`attention.Mixer.token`), its KV cache (or
  fast weights) a `state` output looped back to `state_in`, capacity L. Token 0 is fed at cycle 1. A second
  source, the external "valid" (`VALID`, default 1), says which cycles carry a token: fed 0, a cycle is a
  *bubble* whose token id is ignored. Its identity chain ``valid_0``, ``valid_1``, ... carries it along the
  pipeline and is tapped at each mixer's depth as the mixer's `write` input, so a cache stores the real tokens
  only: nothing before token 0 reaches the mixer (the pipeline is empty then and the chain, starting from 0,
  still carries 0) and nothing from a bubble. The position embedding takes its position from a counter of valid
  tokens: "count" (`neurons.accumulator` looping onto itself, its delta the valid stream) minus ``valid_0``, so
  that token t is at position t however many bubbles precede it. The caches and the counter are the only neurons
  that remember past cycles, so bubbles change nothing that a later token sees. Fed a token every cycle (valid not fed), the counter equals the cycle
  count and the form behaves as a cycle-counting one. The SRWM's gated form scales its own update by the write
  signal, so a bubble leaves its matrix as it was.

The neurons of layer i (no '.' in names, so an underscore): ``l{i}_ln1``; one dense projection ``l{i}_{port}``
from the LN into each input port of the mixer (``q``, ``k``, ``v`` for dot-product, linear and delta attention,
plus ``beta`` for delta, ``x`` for the SRWM); the mixer ``l{i}_mix``; ``l{i}_o`` (dense d → d); the residual
adder ``l{i}_res1`` (`neurons.plus`, a ← the skip path, b ← the branch); ``l{i}_ln2``, ``l{i}_up`` (d → mlp·d),
``l{i}_gelu``, ``l{i}_down`` (mlp·d → d) and ``l{i}_res2``. The skip paths are chains of identity neurons
``l{i}_skip1_{j}`` and ``l{i}_skip2_{j}``, as many as the branch has neurons, so that the adder's two inputs carry
the same tokens (`stream_depths` computes and checks this). Every link is a fixed (``trainable=False``) wire of weight
1, except the token form's ``valid_0.out`` -> ``position.position`` of weight −1; the weights are neuron
parameters.

Every neuron adds one cycle: tokens fed at cycle 1 come out of the logits stream `LOGITS` at cycle
D = `logits_cycle(program)` (3 + 10 · layers + 2). In the token form, the token fed at cycle s comes out at cycle
s + D − 1 (the token fed at cycle t + 1, position t when no bubble precedes it, at cycle D + t). Greedy
generation (`generate`) therefore feeds a token, runs D − 1 bubbles, reads the argmax of its logits and feeds it.

Parameters by name: the builder's ``params=`` takes the plain-JAX baseline's pytree (`params["embed"]["token"]`,
`params["layers"][i]["attn"]["q"]["weight"]`, ...; the list is in `transformer`'s docstring), so that both compute
the same function with the same weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import attention
import dmm
import neurons

FORMS: tuple[str, ...] = ("sequence", "token")
"""The forms `transformer` builds."""

TOKENS = "tokens.out"
"""The stream the caller feeds the token ids to (``inputs={TOKENS: ...}``)."""

VALID = "valid.out"
"""The token form's valid stream (a NUMBER source): feed 1 with a token, 0 in a bubble cycle (no token); not fed,
it is 1 from cycle 1 on (every cycle carries a token)."""

LOGITS = "readout.out"
"""The logits stream: (L, V) per cycle in the sequence form, (V,) in the token form."""


# ------------------------------------------------------------------------------------------------------ depths


def stream_depths(program: dmm.Program) -> dict[str, int]:
    """The depth of every neuron of `program` (`dmm.depths`): the cycle at which its outputs carry what the sources
    (the neurons without incoming links other than self-links) were fed at cycle 1.

    **Returns:** {neuron name: depth (int ≥ 1)}. Raises `dmm.ProgramError` naming the neuron and its input
    streams when two of them carry different depths, or when a neuron lies on (or behind) a cycle of links other
    than a self-link (a transformer program is feed-forward but for its state loops).
    """
    depth = dmm.depths(program)
    missing = [n for n in program.neurons if n not in depth]
    if missing:
        raise dmm.ProgramError(f"stream_depths: neuron {missing[0]!r} lies on or behind a cycle of links; depths are undefined")
    return depth


def logits_cycle(program: dmm.Program) -> int:
    """The cycle at which the logits stream `LOGITS` of a `transformer` program carries the tokens fed at cycle 1
    (the depth of "readout", `stream_depths`). Raises `dmm.ProgramError` if `program` has no "readout" neuron."""
    if "readout" not in program.neurons:
        raise dmm.ProgramError("logits_cycle: the program has no neuron 'readout' (not a transformer program)")
    return stream_depths(program)["readout"]


# ------------------------------------------------------------------------------------------------------ checks


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise dmm.ProgramError(f"transformer: {what} must be a positive integer, not {value!r}")
    return int(value)


class _Params:
    """Read-only access to a params pytree by path, checking shapes (None: draw from keys instead)."""

    def __init__(self, tree: Mapping[str, Any] | None, key: jax.Array) -> None:
        if tree is not None and not isinstance(tree, Mapping):
            raise dmm.ProgramError(f"transformer: params must be a dict pytree, not {type(tree).__name__}")
        self.tree = tree
        self.key = key
        self.count = 0

    def next_key(self) -> jax.Array:
        self.count += 1
        return jax.random.fold_in(self.key, self.count)

    def get(self, path: tuple[Any, ...], shape: tuple[int, ...] | None, required: bool = True) -> np.ndarray | None:
        """The array at `path` (float64 NumPy) or None when no params were given (or, not `required`, absent)."""
        if self.tree is None:
            return None
        node: Any = self.tree
        for i, step in enumerate(path):
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                if not required:
                    return None
                where = "".join(f"[{s!r}]" for s in path[: i + 1])
                raise dmm.ProgramError(f"transformer: params{where} is missing") from None
        value = np.asarray(node, np.float64)
        if shape is not None and value.shape != tuple(shape):
            where = "".join(f"[{s!r}]" for s in path)
            raise dmm.ProgramError(f"transformer: params{where} has shape {value.shape}, not {tuple(shape)}")
        return value


# ------------------------------------------------------------------------------------------------------ builder


class _Builder:
    """A program under construction that tracks each neuron's depth as it is wired (`stream_depths` re-checks)."""

    def __init__(self) -> None:
        self.p = dmm.Program()
        self.depth: dict[str, int] = {}

    def link(self, src: str, dst: str, weight: float = 1.0) -> None:
        """The one place links are made: fixed (``trainable=False``) wires; the weights are neuron parameters."""
        self.p.link(src, dst, weight, trainable=False)

    def add(
        self,
        name: str,
        neuron: dmm.Neuron,
        wires: Mapping[str, str | tuple[str | tuple[str, float], ...]],
        state: Any = None,
    ) -> str:
        """Add `name` with links {its input port: source stream(s)}, each source a stream (weight 1) or a
        ``(stream, weight)`` pair; a `state` makes the weight-1 loop ``state`` -> ``state_in``; returns the name."""
        if state is not None:
            self.p.add(name, neuron, initial={"state": state})
            self.link(f"{name}.state", f"{name}.state_in")
        else:
            self.p.add(name, neuron)
        ds = set()
        for port, srcs in wires.items():
            for src in (srcs,) if isinstance(srcs, str) else srcs:
                src, weight = (src, 1.0) if isinstance(src, str) else src
                self.link(src, f"{name}.{port}", weight)
                ds.add(self.depth[src.split(".", 1)[0]])
        assert len(ds) <= 1, (name, ds)  # the builder aligns every input; stream_depths reports it otherwise
        self.depth[name] = 1 + (ds.pop() if ds else 0)
        return name

    def delay(self, src: str, kind: dmm.Kind, until: int, prefix: str) -> str:
        """A chain of identity neurons `prefix_0`, ... that carries `src` to depth `until`; the delayed stream."""
        j = 0
        while self.depth[src.split(".", 1)[0]] < until:
            src = f"{self.add(f'{prefix}_{j}', neurons.identity(kind), {'in': src})}.out"
            j += 1
        return src


def transformer(
    vocab: int = 16,
    length: int = 8,
    d_model: int = 16,
    heads: int = 2,
    layers: int = 2,
    mlp: int = 4,
    mixer: str = "softmax",
    form: str = "sequence",
    seed: int = 0,
    key: jax.Array | None = None,
    params: Mapping[str, Any] | None = None,
) -> dmm.Program:
    """A decoder-only causal pre-LN Transformer (the module docstring gives its neurons, kinds and timing).

    **Arguments:**

    - `vocab` V, `length` L (the sequence length in the sequence form, the KV-cache capacity and position-table
      rows in the token form), `d_model` d (a multiple of `heads` H), `layers` the number of blocks, `mlp` the
      MLP's width factor (d → mlp·d → d).
    - `mixer`: a mixer name (`attention.MIXERS`, e.g. "softmax", "linear", "delta", "srwm") or an
      `attention.Mixer` (its heads are replaced by `heads`).
    - `form`: "sequence" (the whole (L,) ids sequence in one value) or "token" (one id per cycle); see `FORMS`.
    - `seed`, `key`: the PRNG key (`key`, else ``jax.random.key(seed)``) that draws the parameters not in
      `params` (dense weights N(0, 1/d_in), token embeddings N(0, 1), position embeddings N(0, 0.02²), biases 0,
      norms 1 and 0; the mixer's own parameters by `attention.Mixer.init_params`; the baseline's `init` draws the
      same way: with token embeddings as small as the positions', MQAR stays on its 0.25 plateau for thousands of
      steps).
    - `params`: the plain-JAX baseline's pytree (``benchmarks/plain_transformer.py``), float arrays:
      ``["embed"]["token"]`` (V, d), ``["embed"]["position"]`` (L, d), ``["layers"][i]["ln1" | "ln2"]["scale" |
      "offset"]`` (d,), ``["layers"][i]["attn"][port]["weight" | "bias"]`` for each mixer input port (q, k, v:
      (d, d), (d,); delta's beta: (d, H), (H,); the SRWM's x: (d, d), (d,)), ``["layers"][i]["attn"]["o"]``
      (d, d), (d,), optional ``["layers"][i]["attn"]["mixer"]`` (the mixer neuron's parameters by name, e.g.
      the SRWM's "w0"; absent: drawn with the key), ``["layers"][i]["mlp"]["up" | "down"]["weight" | "bias"]``
      (d, mlp·d), (mlp·d,) / (mlp·d, d), (d,), ``["final_ln"]["scale" | "offset"]`` (d,),
      ``["readout"]["weight" | "bias"]`` (d, V), (V,). None: every parameter is drawn.

    **Returns:** the `dmm.Program`; feed `TOKENS` (sequence form: float ids (steps, L); token form: (steps,),
    and optionally `VALID` (steps,), 1 for a token and 0 for a bubble), read `LOGITS` from cycle
    `logits_cycle(program)` on; `generate` runs a compiled token form greedily. Raises `dmm.ProgramError` for a bad argument (naming it)
    or a missing or misshapen parameter (naming its path).
    """
    V, L, d, H, n_layers, width = (
        _count(vocab, "vocab"), _count(length, "length"), _count(d_model, "d_model"), _count(heads, "heads"),
        _count(layers, "layers"), _count(mlp, "mlp"),
    )
    if d % H:
        raise dmm.ProgramError(f"transformer: d_model {d} is not a multiple of heads {H}")
    if form not in FORMS:
        raise dmm.ProgramError(f"transformer: form must be one of {FORMS}, not {form!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise dmm.ProgramError(f"transformer: seed must be an int, not {seed!r}")
    try:
        mix = attention.mixer(mixer, heads=H)
    except dmm.ProgramError as e:
        raise dmm.ProgramError(f"transformer: mixer {mixer!r}: {e}") from None
    seq = form == "sequence"
    lead = (L,) if seq else ()
    hidden = dmm.Kind("hidden", lead + (d,))
    inner = dmm.Kind("hidden_mlp", lead + (width * d,))
    logits = dmm.Kind("logits", lead + (V,))
    ids = neurons.ids_kind(L if seq else None)
    P = _Params(params, jax.random.key(int(seed)) if key is None else key)
    b = _Builder()

    def dense(name: str, path: tuple[Any, ...], src: str, in_kind: dmm.Kind, out_kind: dmm.Kind) -> str:
        d_in, d_out = in_kind.shape[-1], (out_kind.shape[-1] if out_kind.shape else 1)
        w = P.get(path + ("weight",), (d_in, d_out))
        bias = P.get(path + ("bias",), (d_out,))
        k = P.next_key()
        if out_kind.shape == ():  # a one-head token-form beta: a number, so a flat linear map
            if w is None:
                w = np.asarray(jax.random.normal(k, (d_in, 1), np.float32), np.float64) / np.sqrt(d_in)
            neuron = neurons.linear(in_kind, out_kind, matrix=w.T, bias=bias)
        else:
            neuron = neurons.dense(in_kind, out_kind, weight=w, bias=bias, key=k)
        return f"{b.add(name, neuron, {'in': src})}.out"

    def norm(name: str, path: tuple[Any, ...], src: str) -> str:
        neuron = neurons.layer_norm(hidden, scale=P.get(path + ("scale",), (d,)), offset=P.get(path + ("offset",), (d,)))
        return f"{b.add(name, neuron, {'in': src})}.out"

    def residual(name: str, skip: str, branch: str, prefix: str) -> str:
        skip = b.delay(skip, hidden, b.depth[branch.split(".", 1)[0]], prefix)
        return f"{b.add(name, neurons.plus(hidden), {'a': skip, 'b': branch})}.out"

    b.add("tokens", neurons.external(ids), {})
    chain: list[str] = []

    def valid(until: int) -> str:
        """The token form's valid signal at depth `until` (the external "valid", default 1, and its identity chain
        "valid_0", ...): 0 before the first token reaches that depth, then what the caller fed to `VALID` with
        the token now there (1 when it feeds nothing)."""
        while b.depth[chain[-1].split(".", 1)[0]] < until:
            chain.append(f"{b.add(f'valid_{len(chain) - 1}', neurons.identity(), {'in': chain[-1]})}.out")
        return chain[-1]

    k_tok, k_pos = P.next_key(), P.next_key()
    tok = P.get(("embed", "token"), (V, d))
    x = f"{b.add('embed', neurons.embedding(V, hidden, in_kind=ids, table=tok, key=k_tok, std=1.0), {'in': TOKENS})}.out"
    pos = P.get(("embed", "position"), (L, d))
    if seq:
        x = f"{b.add('position', neurons.position_embedding(hidden, table=pos, key=k_pos), {'in': x})}.out"
    else:
        chain.append(f"{b.add('valid', neurons.external(default=1.0), {})}.out")
        # "count" (depth 2) holds the valid tokens fed before the previous cycle plus that one's valid; minus the
        # valid of the token now at the embedding's depth ("valid_0"), the valid tokens before it: its position.
        b.add("count", neurons.accumulator(), {"delta": VALID})
        b.link("count.out", "count.accum")
        before = ("count.out", (valid(b.depth["embed"]), -1.0))
        position = neurons.position_embedding(hidden, max_len=L, table=pos, key=k_pos)
        x = f"{b.add('position', position, {'in': x, 'position': before})}.out"

    for i in range(n_layers):
        lp = ("layers", i)
        h = norm(f"l{i}_ln1", lp + ("ln1",), x)
        if seq:
            t = mix.sequence(hidden, hidden, causal=True)
        else:
            try:
                t = mix.token(hidden, hidden, capacity=L, gated=True)
            except dmm.ProgramError as e:
                raise dmm.ProgramError(
                    f"transformer: the token form needs a gated mixer (its cache must not store the cycles before "
                    f"the first token reaches it): {e}"
                ) from None
        wires = {port: dense(f"l{i}_{port}", lp + ("attn", port), h, hidden, t.port(port).kind) for port in mix.inputs}
        attn = _node(params, lp + ("attn",)) if params is not None else None
        k_mix = P.next_key()
        if isinstance(attn, Mapping) and "mixer" in attn:
            own = {name: np.asarray(v, np.float64) for name, v in attn["mixer"].items()}
        else:
            own = mix.init_params(hidden, hidden, k_mix)
        try:
            neuron = dmm.Neuron(t, own)
        except dmm.ProgramError as e:
            raise dmm.ProgramError(f"transformer: params['layers'][{i}]['attn']['mixer']: {e}") from None
        state = None
        if not seq:
            state = mix.initial_state(hidden, hidden, capacity=L)
            wires["write"] = valid(b.depth[next(iter(wires.values())).split(".", 1)[0]])
        m_out = f"{b.add(f'l{i}_mix', neuron, wires, state=state)}.{mix.output}"
        o = dense(f"l{i}_o", lp + ("attn", "o"), m_out, hidden, hidden)
        x = residual(f"l{i}_res1", x, o, f"l{i}_skip1")

        h = norm(f"l{i}_ln2", lp + ("ln2",), x)
        u = dense(f"l{i}_up", lp + ("mlp", "up"), h, hidden, inner)
        g = f"{b.add(f'l{i}_gelu', neurons.gelu(inner), {'in': u})}.out"
        down = dense(f"l{i}_down", lp + ("mlp", "down"), g, inner, hidden)
        x = residual(f"l{i}_res2", x, down, f"l{i}_skip2")

    h = norm("final_ln", ("final_ln",), x)
    dense("readout", ("readout",), h, hidden, logits)
    return b.p


def _node(tree: Mapping[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = tree
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


# ------------------------------------------------------------------------------------------------------ generation


def _token_form_sizes(machine: dmm.Machine) -> tuple[int, int]:
    """(L, V) of a compiled token-form `transformer` machine; `dmm.ProgramError` for any other machine."""
    prog = machine.program
    names = prog.neurons
    if "readout" not in names or "position" not in names or "valid" not in names or "tokens" not in names:
        missing = [n for n in ("tokens", "valid", "position", "readout") if n not in names]
        raise dmm.ProgramError(
            f"generate: the machine is not a token-form transformer program (no neuron {missing[0]!r}); build it "
            "with transformer(form='token', ...)"
        )
    if machine.kind(TOKENS).shape != () or prog.neuron("valid").type.name != "external":
        raise dmm.ProgramError(
            f"generate: stream {TOKENS!r} has kind {machine.kind(TOKENS)!r}; generation needs the token form "
            "(transformer(form='token', ...)), one token id per cycle"
        )
    if machine.stochastic:
        raise dmm.ProgramError("generate: the machine has stochastic neurons (a mixer such as 'race'); greedy "
                               "generation needs a deterministic mixer")
    return int(prog.neuron("position").params["table"].shape[0]), int(machine.kind(LOGITS).shape[0])


def _generate(machine: dmm.Machine, params: Any, padded: jax.Array, n_prompt: jax.Array, n_steps: jax.Array) -> jax.Array:
    """The jitted body of `generate` (one compilation per machine and dtype): `padded` (L,) int32, the prompt and
    zeros; returns (L,) int32 with the generated tokens at [n_prompt, n_prompt + n_steps).

    One loop over the cycles, one machine cycle each: cycles 1 … P feed the prompt; the logits of the token fed at
    cycle s come out at cycle s + D − 1 (D = `logits_cycle`), so generated token k (k ≥ 0) is read at cycle
    P + D − 1 + k·D and fed at the next cycle; every other cycle is a bubble (`VALID` 0)."""
    depth = logits_cycle(machine.program)
    dt = machine.dtype

    def cycle(c, carry):  # c: the cycle number (1, 2, ...)
        state, out = carry
        after = c - n_prompt  # > 0 once the prompt is in
        fed = (after <= 0) | (after % depth == 0)
        index = jnp.where(after <= 0, c - 1, n_prompt + after // depth - 1)
        inputs = {TOKENS: out[index].astype(dt)[None], VALID: fed.astype(dt)[None]}
        state, recs, _ = machine.simulate(params, state, inputs, None, steps=1, record=(LOGITS,))
        ready = after - (depth - 1)  # ≥ 0 and a multiple of D: the logits of the last fed token are out
        read = (ready >= 0) & (ready % depth == 0)
        slot = jnp.where(read, n_prompt + ready // depth, 0)
        new = jnp.argmax(recs[LOGITS][0]).astype(out.dtype)
        return state, out.at[slot].set(jnp.where(read, new, out[slot]))

    cycles = n_prompt + n_steps * depth - 1
    state = machine.init_state(params)
    return jax.lax.fori_loop(jnp.ones_like(cycles), cycles + 1, cycle, (state, padded))[1]


def generate(machine: dmm.Machine, prompt: Any, steps: int, *, params: Any = None) -> np.ndarray:
    """Greedy autoregressive generation by running a compiled token-form `transformer` machine.

    The prompt's tokens are fed one per cycle (`TOKENS`, with `VALID` 1); then, for each new token, the machine
    runs through bubble cycles (`VALID` 0, which neither move positions nor write caches) until the logits of the
    last fed token come out of `LOGITS` (D = `logits_cycle` cycles after it was fed), and their argmax (the lowest
    id on ties) is fed as the next token: P + steps · D − 1 cycles in all. The machine's own cycle function is
    run (`dmm.Machine.simulate`), in one jitted loop over the cycles, compiled once per machine (not per prompt
    length, `steps` or token). Any deterministic mixer with a token form works.

    **Arguments:**

    - `machine`: ``dmm.compile(transformer(form="token", ...))``, any dtype.
    - `prompt`: (P,) integer token ids in [0, V), P ≥ 1 (ints, or floats holding integers).
    - `steps`: how many tokens to generate (int ≥ 0); P + `steps` must not exceed the model's length L (the
      KV-cache capacity and position-table rows).
    - `params`: the machine's parameter pytree (default: `machine.params`), e.g. trained ones.

    **Returns:** (P + steps,) int64: the prompt, then the generated tokens. Raises `dmm.ProgramError` for a
    machine that is not a deterministic token-form transformer, a bad prompt or `steps`, or P + steps > L.
    """
    length, vocab = _token_form_sizes(machine)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise dmm.ProgramError(f"generate: steps must be a non-negative int, not {steps!r}")
    ids = np.asarray(prompt)
    if ids.ndim != 1 or ids.size == 0:
        raise dmm.ProgramError(f"generate: prompt must be a non-empty 1-D array of token ids, not shape {ids.shape}")
    if ids.dtype.kind not in "iuf" or not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
        raise dmm.ProgramError(f"generate: prompt must hold integer token ids, not {ids!r}")
    if np.any(ids < 0) or np.any(ids >= vocab):
        raise dmm.ProgramError(f"generate: prompt ids must lie in [0, {vocab}) (the vocabulary), not {ids!r}")
    p, steps = len(ids), int(steps)
    if p + steps > length:
        raise dmm.ProgramError(
            f"generate: prompt length {p} + steps {steps} = {p + steps} exceeds the model's length {length} (its "
            "KV-cache capacity and position table)"
        )
    ids = ids.astype(np.int64)
    if steps == 0:
        return ids
    padded = np.zeros(length, np.int32)
    padded[:p] = ids
    run = machine.jitted(_generate)
    out = run(machine.params if params is None else params, jnp.asarray(padded), jnp.int32(p), jnp.int32(steps))
    return np.asarray(out, np.int64)[: p + steps]  # sliced on the host: no compilation per length
