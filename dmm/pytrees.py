"""Registering a class as a JAX pytree without importing JAX.

`dmm` can be imported, and a saved `Trace` read and printed, without loading JAX (the command line's ``show`` and
``programs`` stay fast that way). A class decorated with `pytree` is registered with `jax.tree_util` at once when
JAX is already loaded, and otherwise right after JAX's own import finishes, whoever imports it, so a `Trace` is a
pytree wherever JAX can see it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Any, TypeVar

T = TypeVar("T", bound=type)

_PENDING: list[type] = []


def pytree(cls: T) -> T:
    """A class decorator: register `cls`, which defines ``tree_flatten(self) -> (children, aux)`` and the
    classmethod ``tree_unflatten(aux, children)``, as a JAX pytree node, now or when JAX is imported."""
    _PENDING.append(cls)
    jax = sys.modules.get("jax")
    if jax is not None and hasattr(jax, "tree_util"):
        _register_pending(jax)
    elif not any(isinstance(f, _AfterJaxImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterJaxImport())
    return cls


def _register_pending(jax: Any) -> None:
    while _PENDING:
        cls = _PENDING.pop(0)
        jax.tree_util.register_pytree_node(cls, lambda x: x.tree_flatten(), cls.tree_unflatten)


class _AfterJaxImport(importlib.abc.MetaPathFinder):
    """Finds ``jax`` through the other finders and runs the registrations once its module has executed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "jax":
            return None
        sys.meta_path.remove(self)  # one use; the other finders locate the package
        spec = importlib.util.find_spec("jax")
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _register_pending(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
