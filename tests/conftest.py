"""Test configuration. Tests run in JAX's default 32-bit mode, as users do; float64 checks use the `x64` fixture
(or `with jax.enable_x64(True):`)."""

import jax
import pytest


@pytest.fixture
def x64():
    """Enable float64 for the duration of one test."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def getkey():
    """Fresh, deterministic PRNG keys for one test."""
    keys = iter(jax.random.split(jax.random.key(20261125), 1000))
    return lambda: next(keys)
