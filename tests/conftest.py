"""Test configuration. The tests mirror the packages' layout (core/, files/, train/, sparsify/, plot/, cli/, neurons/,
attention/, programs/) and share `helpers.py` and the NumPy reference interpreter `reference.py`, importable from
every folder. They run in JAX's default 32-bit mode, as users do (float64 checks use the `x64` fixture or
``with jax.enable_x64(True):``), and with strict dtype promotion, so that an implicit int32/int64 or
float32/float64 mix is an error rather than a silent widening."""

import sys
from pathlib import Path

import jax
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers, reference
jax.config.update("jax_numpy_dtype_promotion", "strict")


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
