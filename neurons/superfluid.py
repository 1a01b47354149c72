"""Superfluid (mixed-function) neurons: the neuron's function is a mixture Σ_k c_k·f_k carried in its own stream.

In the author's Julia and JAX "superfluid" engines (`docs/semantics.md` §5.1) every neuron's input holds
``":function"`` = {f: c_f}; its output is Σ_f c_f·f(x), with ``":function"`` copied through. A weight-1 self-loop on
the function stream keeps the mixture; redirecting it, or training it, lets a neuron morph its type. Here the
mixture is a vector of a keyed kind (one coordinate per component function) on the input port ``function``,
copied to the output port ``function_out``; the component functions are registered neuron types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from dmm import Kind, Neuron, NeuronType, ProgramError, lookup, make_type, neuron_type


FUNCTION_IN, FUNCTION_OUT = "function", "function_out"


def _components(functions: Any) -> list[tuple[str, NeuronType]]:
    items = functions.items() if isinstance(functions, Mapping) else functions
    out = []
    for item in items:
        try:
            label, type_name, config = item
        except (TypeError, ValueError):
            raise ProgramError(f"superfluid: a component is (label, type name, config), not {item!r}") from None
        if not isinstance(label, str) or not label or "." in label or "/" in label:
            raise ProgramError(f"superfluid: bad component label {label!r} (a non-empty name without '.' or '/')")
        config = dict(config.items() if isinstance(config, Mapping) else config)
        t = lookup(type_name)(**config)
        if t.role is not None:
            raise ProgramError(f"superfluid: component {label!r} ({t!r}) has role {t.role!r} and cannot be mixed")
        out.append((label, t))
    if not out:
        raise ProgramError("superfluid: give at least one component function")
    labels = [lbl for lbl, _ in out]
    if len(set(labels)) != len(labels):
        raise ProgramError(f"superfluid: component labels repeat: {labels}")
    return out


def mixture_kind(labels: Any) -> Kind:
    """The keyed kind of a mixture over component `labels`, named ``"functions:label1+label2+..."``."""
    labels = tuple(labels)
    return Kind.keyed("functions:" + "+".join(labels), labels)


@neuron_type("superfluid")
def superfluid_type(functions: Any = ()):
    """A superfluid neuron: y.q = Σ_k c_k·f_k(x)[q] for every output port q, y.function_out = x.function, with
    c = x.function (a vector of `mixture_kind(labels)`, one coordinate per component).

    `functions`: ((label, registered type name, config), ...). The ports are the union of the components' ports
    (a port shared by several components must have one kind); a component reads only its own input ports and a
    component without output q adds nothing to y.q. Component parameters are this neuron's parameters, named
    "label/param" (trainable as in the component). Use `superfluid` to build one from neuron types.
    """
    comps = _components(functions)
    ports: dict[str, tuple[str, Kind]] = {}
    for label, t in comps:
        for port in t.ports:
            side = "in" if t.is_input(port.name) else "out"
            if port.name in (FUNCTION_IN, FUNCTION_OUT):
                raise ProgramError(f"superfluid: component {label!r} has a port named {port.name!r}, which is reserved")
            prev = ports.setdefault(port.name, (side, port.kind))
            if prev != (side, port.kind):
                raise ProgramError(
                    f"superfluid: port {port.name!r} is an {prev[0]}put of kind {prev[1]!r} in one component and an "
                    f"{side}put of kind {port.kind!r} in {label!r}"
                )
    fkind = mixture_kind(lbl for lbl, _ in comps)
    inputs = {FUNCTION_IN: fkind, **{n: k for n, (s, k) in ports.items() if s == "in"}}
    outputs = {FUNCTION_OUT: fkind, **{n: k for n, (s, k) in ports.items() if s == "out"}}
    defaults = {f"{label}/{p}": v for label, t in comps for p, v in t.defaults.items()}
    trainable = tuple(f"{label}/{p}" for label, t in comps for p in t.trainable)

    def fn(p, x, ctx):
        c = x[FUNCTION_IN]
        out = {q: jnp.zeros(k.shape, c.dtype) for q, k in outputs.items() if q != FUNCTION_OUT}
        for i, (label, t) in enumerate(comps):
            params = {name: p[f"{label}/{name}"] for name in t.defaults}
            y = t.fn(params, {port.name: x[port.name] for port in t.inputs}, ctx)
            for q, v in y.items():
                out[q] = out[q] + c[i] * v
        return {FUNCTION_OUT: c, **out}

    return make_type(
        inputs, outputs, fn=fn, defaults=defaults, trainable=trainable, stochastic=any(t.stochastic for _, t in comps)
    )


def superfluid(functions: Mapping[str, NeuronType | Neuron]) -> Neuron:
    """A superfluid neuron mixing the given neuron types (or neurons, whose parameters it takes over).

    Example: `superfluid({"accum": neurons.accumulator(), "max": neurons.maximum()})`; its function stream has the
    kind `mixture_kind(("accum", "max"))`, e.g. ``vvalues.flatten(kind, {"accum": 1.0})`` for a pure accumulator.
    """
    comps, params = [], {}
    for label, f in functions.items():
        neuron = f if isinstance(f, Neuron) else Neuron(f) if isinstance(f, NeuronType) else None
        if neuron is None:
            raise ProgramError(f"superfluid: component {label!r} must be a NeuronType or Neuron, not {type(f).__name__}")
        comps.append((label, neuron.type.name, neuron.type.config))
        params.update({f"{label}/{k}": np.asarray(v) for k, v in neuron.params.items()})
    return Neuron(superfluid_type(tuple(comps)), params)
