"""Elementwise neurons on any kind: mult (mask), plus, max, and the activations relu, tanh, sigmoid."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dmm import NUMBER, Kind, make_type, neuron_type


@neuron_type("mult")
def mult(kind: Kind = NUMBER):
    """y.out = x.mask ⊙ x.main (elementwise product; the flat form of the V-value mult-mask)."""
    return make_type({"mask": kind, "main": kind}, {"out": kind}, fn=lambda p, x, ctx: {"out": x["mask"] * x["main"]})


@neuron_type("plus")
def plus(kind: Kind = NUMBER):
    """y.out = x.a + x.b."""
    return make_type({"a": kind, "b": kind}, {"out": kind}, fn=lambda p, x, ctx: {"out": x["a"] + x["b"]})


@neuron_type("max")
def maximum(kind: Kind = NUMBER):
    """y.out = max(x.a, x.b) elementwise."""
    return make_type({"a": kind, "b": kind}, {"out": kind}, fn=lambda p, x, ctx: {"out": jnp.maximum(x["a"], x["b"])})


def _unary(kind: Kind, fn):
    return make_type({"in": kind}, {"out": kind}, fn=lambda p, x, ctx: {"out": fn(x["in"])})


@neuron_type("relu")
def relu(kind: Kind = NUMBER):
    """y.out = max(x.in, 0) elementwise."""
    return _unary(kind, jax.nn.relu)


@neuron_type("tanh")
def tanh(kind: Kind = NUMBER):
    """y.out = tanh(x.in) elementwise."""
    return _unary(kind, jnp.tanh)


@neuron_type("sigmoid")
def sigmoid(kind: Kind = NUMBER):
    """y.out = 1 / (1 + exp(-x.in)) elementwise."""
    return _unary(kind, jax.nn.sigmoid)
