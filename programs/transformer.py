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
  fast weights) a `state` output looped back to `state_in`, capacity L; the position embedding counts cycles
  (``start`` = the cycle at which token 0 reaches it). Token 0 is fed at cycle 1. Before it reaches a mixer, the
  pipeline in front of the mixer carries no token, so the mixer's `write` input is 0 until then and 1 from then
  on: a constant "valid" and a chain of identities ``valid_0``, ``valid_1``, ... (tapped at each mixer's depth)
  make that signal, and the cache holds the real tokens only. The SRWM has no gated form, hence no token form
  here.

The neurons of layer i (no '.' in names, so an underscore): ``l{i}_ln1``; one dense projection ``l{i}_{port}``
from the LN into each input port of the mixer (``q``, ``k``, ``v`` for dot-product, linear and delta attention,
plus ``beta`` for delta, ``x`` for the SRWM); the mixer ``l{i}_mix``; ``l{i}_o`` (dense d → d); the residual
adder ``l{i}_res1`` (`neurons.plus`, a ← the skip path, b ← the branch); ``l{i}_ln2``, ``l{i}_up`` (d → mlp·d),
``l{i}_gelu``, ``l{i}_down`` (mlp·d → d) and ``l{i}_res2``. The skip paths are chains of identity neurons
``l{i}_skip1_{j}`` and ``l{i}_skip2_{j}``, as many as the branch has neurons, so that the adder's two inputs carry
the same tokens (`stream_depths` computes and checks this). Every link is a fixed weight-1 wire
(``trainable=False``); the weights are neuron parameters.

Every neuron adds one cycle: tokens fed at cycle 1 come out of the logits stream `LOGITS` at cycle
`logits_cycle(program)` (3 + 10 · layers + 2). In the token form, the token fed at cycle t + 1 (position t) comes
out at cycle ``logits_cycle(program) + t``.

Parameters by name: the builder's ``params=`` takes the plain-JAX baseline's pytree (`params["embed"]["token"]`,
`params["layers"][i]["attn"]["q"]["weight"]`, ...; the list is in `transformer`'s docstring), so that both compute
the same function with the same weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

import attention
import dmm
import neurons

FORMS: tuple[str, ...] = ("sequence", "token")
"""The forms `transformer` builds."""

TOKENS = "tokens.out"
"""The stream the caller feeds the token ids to (``inputs={TOKENS: ...}``)."""

LOGITS = "readout.out"
"""The logits stream: (L, V) per cycle in the sequence form, (V,) in the token form."""


# ------------------------------------------------------------------------------------------------------ depths


def stream_depths(program: dmm.Program) -> dict[str, int]:
    """The depth of every neuron of `program`: the cycle at which its outputs carry what its sources were fed at
    cycle 1. A neuron without incoming links (a source) has depth 1; any other has 1 + the depth of the neurons
    that link to it, which must all be equal (the inputs are aligned in time). Links from a neuron to itself (a
    state loop) are not counted.

    **Returns:** {neuron name: depth (int ≥ 1)}. Raises `dmm.ProgramError` naming the neuron and its input
    streams when two of them carry different depths, or when the links (self-loops aside) form a cycle.
    """
    preds: dict[str, dict[str, str]] = {n: {} for n in program.neurons}
    pairs, _, _ = program.link_columns()
    for src, dst in pairs:
        s, d = src.split(".", 1)[0], dst.split(".", 1)[0]
        if s != d:
            preds[d][src] = dst
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(name: str) -> int:
        if name in depth:
            return depth[name]
        if name in visiting:
            raise dmm.ProgramError(f"stream_depths: neuron {name!r} lies on a cycle of links; depths are undefined")
        visiting.add(name)
        seen = {src: visit(src.split(".", 1)[0]) for src in preds[name]}
        visiting.discard(name)
        if len(set(seen.values())) > 1:
            detail = ", ".join(f"{src} -> {preds[name][src]} at depth {d}" for src, d in sorted(seen.items()))
            raise dmm.ProgramError(f"stream_depths: the inputs of neuron {name!r} are not aligned in time: {detail}")
        depth[name] = 1 + (next(iter(seen.values())) if seen else 0)
        return depth[name]

    for n in program.neurons:
        visit(n)
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

    def add(self, name: str, neuron: dmm.Neuron, wires: Mapping[str, str | tuple[str, ...]], state: Any = None) -> str:
        """Add `name` with links {its input port: source stream(s)}; returns the name."""
        if state is not None:
            attention.add_with_state(self.p, name, neuron, initial={"state": state})
        else:
            self.p.add(name, neuron)
        ds = set()
        for port, srcs in wires.items():
            for src in (srcs,) if isinstance(srcs, str) else srcs:
                self.p.link(src, f"{name}.{port}", 1.0, trainable=False)
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
      `params` (dense weights N(0, 1/d_in), embeddings N(0, 0.02²), biases 0, norms 1 and 0; the mixer's own
      parameters by `attention.Mixer.init_params`).
    - `params`: the plain-JAX baseline's pytree (``benchmarks/plain_transformer.py``), float arrays:
      ``["embed"]["token"]`` (V, d), ``["embed"]["position"]`` (L, d), ``["layers"][i]["ln1" | "ln2"]["scale" |
      "offset"]`` (d,), ``["layers"][i]["attn"][port]["weight" | "bias"]`` for each mixer input port (q, k, v:
      (d, d), (d,); delta's beta: (d, H), (H,); the SRWM's x: (d, d), (d,)), ``["layers"][i]["attn"]["o"]``
      (d, d), (d,), optional ``["layers"][i]["attn"]["mixer"]`` (the mixer neuron's parameters by name, e.g.
      the SRWM's "w0"; absent: drawn with the key), ``["layers"][i]["mlp"]["up" | "down"]["weight" | "bias"]``
      (d, mlp·d), (mlp·d,) / (mlp·d, d), (d,), ``["final_ln"]["scale" | "offset"]`` (d,),
      ``["readout"]["weight" | "bias"]`` (d, V), (V,). None: every parameter is drawn.

    **Returns:** the `dmm.Program`; feed `TOKENS` (sequence form: float ids (steps, L); token form: (steps,)),
    read `LOGITS` from cycle `logits_cycle(program)` on. Raises `dmm.ProgramError` for a bad argument (naming it)
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
        """The token form's write signal at depth `until`: 0 before the first token reaches it, then 1 (the
        constant "valid" and its identity chain "valid_0", ...)."""
        if not chain:
            chain.append(f"{b.add('valid', neurons.const(1.0), {})}.out")
        while b.depth[chain[-1].split(".", 1)[0]] < until:
            chain.append(f"{b.add(f'valid_{len(chain) - 1}', neurons.identity(), {'in': chain[-1]})}.out")
        return chain[-1]

    k_tok, k_pos = P.next_key(), P.next_key()
    tok = P.get(("embed", "token"), (V, d))
    x = f"{b.add('embed', neurons.embedding(V, hidden, in_kind=ids, table=tok, key=k_tok), {'in': TOKENS})}.out"
    pos = P.get(("embed", "position"), (L, d))
    position = (
        neurons.position_embedding(hidden, table=pos, key=k_pos)
        if seq
        else neurons.position_embedding(hidden, max_len=L, start=b.depth["embed"] + 1, table=pos, key=k_pos)
    )
    x = f"{b.add('position', position, {'in': x})}.out"

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
