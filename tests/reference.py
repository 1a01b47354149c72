"""A plain NumPy reference interpreter for DMM programs: neuron by neuron, link by link, cycle by cycle.

It shares nothing with the compiled runtime but the `Program` it reads: its own formulas for every core neuron type
(keyed by registered type name, from docs/semantics.md §5), its own down movement (a loop over the links), and its own
representation of the network matrix (a dict {(src, dst): weight}; NETWORK-kind values are such dicts too).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

import dmm


def _relu(x):
    return np.maximum(x, 0.0)


class _Net(dict):
    """A NETWORK-kind value: {(src, dst): value}, absent = 0."""

    def __add__(self, other):
        out = _Net(self)
        for k, v in other.items():
            out[k] = out.get(k, 0.0) + v
        return out

    def scale(self, w):
        return _Net({k: w * v for k, v in self.items()})

    def combine(self, other, f):
        return _Net({k: f(self.get(k, 0.0), other.get(k, 0.0)) for k in set(self) | set(other)})


def _entries(triples):
    out = _Net()
    for src, dst, v in triples:
        out[(src, dst)] = out.get((src, dst), 0.0) + v
    return out


def _up(ntype, params, x, cycle):
    """Outputs of one neuron from its inputs `x` (dict port -> value)."""
    name, cfg = ntype.name, ntype.config_dict
    if name in ("identity",):
        return {"out": x["in"]}
    if name in ("accumulator", "self"):
        return {"out": x["accum"] + x["delta"]}
    if name == "timer":
        return {"out": x["in"] + 1.0}
    if name in ("const",):
        return {"out": params["value"].astype(np.float64)}
    if name == "external":
        return {"out": params["default"].astype(np.float64)}
    if name == "sink":
        return {}
    if name == "mult":
        if isinstance(x["mask"], _Net):
            return {"out": x["mask"].combine(x["main"], lambda a, b: a * b)}
        return {"out": x["mask"] * x["main"]}
    if name == "plus":
        return {"out": x["a"] + x["b"]}
    if name == "max":
        if isinstance(x["a"], _Net):
            return {"out": x["a"].combine(x["b"], max)}
        return {"out": np.maximum(x["a"], x["b"])}
    if name == "relu":
        return {"out": _relu(x["in"])}
    if name == "tanh":
        return {"out": np.tanh(x["in"])}
    if name == "sigmoid":
        return {"out": 1.0 / (1.0 + np.exp(-x["in"]))}
    if name == "max_norm":
        return {"out": np.max(np.abs(x["in"]))}
    if name == "dot":
        d = float(np.sum(x["x"] * x["y"]))
        c = cfg["clip"]
        return {"out": np.float64(d if c is None else min(max(d, -c), c))}
    if name == "compare":
        return {"true": _relu(x["x"] - x["y"]), "false": _relu(x["y"] - x["x"])}
    if name == "linear":
        out_kind = cfg["out_kind"]
        y = params["matrix"] @ np.reshape(x["in"], -1) + params["bias"]
        return {"out": y.reshape(out_kind.shape)}
    if name == "text_input":
        text, every, kind = cfg["text"], cfg["every"], cfg["kind"]
        t = float(x["timer"])
        if t % every != 0:
            return {"out": np.zeros(kind.shape)}
        i = min(max(int(math.floor(t / every)), 0), len(text) - 1)
        return {"out": kind.onehot(text[i]).astype(np.float64)}
    if name == "constant_matrix":
        return {"out": _entries(params["value"])}
    if name == "edit_channel":
        out = _Net()
        for c, entries in cfg["events"]:
            if c == cycle:
                out = out + _entries(dmm.matrix_entries(entries, "reference"))
        return {"out": out}
    raise NotImplementedError(f"the reference interpreter has no formula for neuron type {name!r}")


def _zero(kind):
    return _Net() if kind == dmm.NETWORK else np.zeros(kind.shape)


def run_reference(program: dmm.Program, steps: int, inputs: dict | None = None) -> dict[str, list]:
    """Run `program` for `steps` cycles; returns {stream: [value at cycle 1, ..., value at cycle steps]} for every
    stream (NETWORK-kind values as {(src, dst): value} dicts). `inputs` maps output streams to (steps, ...) arrays."""
    inputs = inputs or {}
    with np.errstate(all="ignore"):  # random programs may overflow; the runtime must overflow the same way
        return _run(program, steps, inputs)


def _run(program: dmm.Program, steps: int, inputs: dict) -> dict[str, list]:
    ports = {}  # stream -> (neuron, port, kind, is_input)
    for n, neuron in program.neurons.items():
        for p in neuron.type.inputs:
            ports[f"{n}.{p.name}"] = (n, p.name, p.kind, True)
        for p in neuron.type.outputs:
            ports[f"{n}.{p.name}"] = (n, p.name, p.kind, False)
    self_out = [f"{n}.{v.type.outputs[0].name}" for n, v in program.neurons.items() if v.type.role == "self"]

    W = _Net({(l.src, l.dst): l.weight for l in program.links})
    Y = {}
    for s, (n, p, kind, is_in) in ports.items():
        if is_in:
            continue
        init = program.initial.get(s)
        if init is None:
            Y[s] = _zero(kind)
        elif isinstance(init, tuple):
            Y[s] = _entries(init)
        else:
            Y[s] = np.array(init, np.float64)
    if self_out:
        Y[self_out[0]] = _Net(W)

    history = defaultdict(list)
    for c in range(1, steps + 1):
        # down movement: X[dst] = sum over links of w * Y[src]
        X = {s: _zero(kind) for s, (n, p, kind, is_in) in ports.items() if is_in}
        for (src, dst), w in W.items():
            if dst not in X or src not in Y:
                continue
            X[dst] = X[dst] + (Y[src].scale(w) if isinstance(Y[src], _Net) else w * Y[src])
        # up movement, neuron by neuron
        newY = {}
        for n, neuron in program.neurons.items():
            x = {p.name: X[f"{n}.{p.name}"] for p in neuron.type.inputs}
            out = _up(neuron.type, neuron.params, x, c)
            for p in neuron.type.outputs:
                newY[f"{n}.{p.name}"] = out[p.name]
        for s, arr in inputs.items():
            newY[s] = np.array(arr[c - 1], np.float64)
        Y = newY
        if self_out:
            W = _Net(Y[self_out[0]])
        for s in ports:
            history[s].append(X[s] if s in X else Y[s])
    return dict(history)


def as_array(value, machine: dmm.Machine) -> np.ndarray:
    """A reference value as the runtime's array (NETWORK-kind dicts placed with the machine's layout)."""
    if isinstance(value, _Net):
        out = np.zeros(machine.network.kind.shape)
        for (src, dst), v in value.items():
            out[machine.network.index(src, dst)] += v
        return out
    return np.asarray(value, np.float64)
