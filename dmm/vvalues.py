"""V-values: nested dicts with numeric leaves, their algebra, and their flat form in keyed kinds.

A *V-value* is a finite formal linear combination of strings over a key alphabet, written as a prefix tree: a dict
from string keys to numbers or to further V-values (`docs/semantics.md` §3.2). The scalar of a node lives under the
reserved key ``":number"``; ``{}`` is zero and a bare number ``x`` stands for ``{":number": x}``. Example:
3.5·ε + 2·(foo) + 7·(foo bar) − 4·(baz foo bar) is
``{":number": 3.5, "foo": {":number": 2, "bar": 7}, "baz": {"foo": {"bar": -4}}}``.

**Tree algebra** (§3.4, after the Clojure engine's ``rec-map-*`` functions). Leaves may be any numbers (ints,
floats, `fractions.Fraction`, NumPy or JAX scalars, so the functions also run under `jax.grad`). Zeros are kept, as
in `dmm`'s flat runtime; compare results with `pruned` or `equal`, which drop zero leaves and empty maps.

| function | definition |
|---|---|
| `sum(a, b, ...)` | key-wise union; leaf + leaf adds; leaf + map puts the leaf under ``":number"`` first |
| `scale(v, c)`, `div(v, c)`, `add(v, c)`, `sub(v, c)` | v·c, v/c, v + c, v − c at every leaf |
| `mult_mask(m, v)` | for each key of m also in v: leaf·leaf multiplies; a mask leaf scales a data subtree; a mask subtree over a data leaf gives nothing; subtree over subtree recurses |
| `lin_comb(m, v)` | the same traversal, every contribution added into one V-value (numbers under ``":number"``) |
| `apply_matrix(m, v, level)` | for each row path r of length `level` in m: result[r] = lin_comb(m[r], v) |
| `max_norm(v)` | ``{":number": m}``, m = the largest abs(leaf) (0 for ``{}``) |
| `less_or_equal(a, b)` | every leaf of b − a is ≥ 0 |

**Flat form** (§3.3). A keyed `Kind` has a key table τ: an ordered tuple of leaf paths. `flatten(kind, v)[k]` is
the value of v at path τ[k] (0 if absent); a node's scalar is stored at its own path p if p is a leaf of τ, and at
p + (":number",) if p has children in τ. A nonzero leaf outside τ is an error. `unflatten(kind, x)` gives the full
tree with explicit zeros. `keyed_kind(name, *examples)` builds a kind whose table holds every leaf of the examples,
so a program can be written with named keys (`flatten` initial values and constants), run flat, and its trace read
back as V-values (`from_trace`). In flat form, lin-comb of two values of one kind is their dot product and the down
movement X = W·Y is `apply_matrix` at level 1.

The network matrix as a V-value is ``{target neuron: {target input: {source neuron: {source output: w}}}}`` (rank 4,
as in the author's Julia and JAX engines); `network_entries` turns it into the ``{(source port, target port): w}``
entries that `Machine.delta`, `Machine.edit` and the matrix-valued neurons take, and `network_value` turns entries
back into a V-value.
"""

from __future__ import annotations

import builtins
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from .errors import DMMError, ProgramError
from .kinds import NUMBER, Kind


NUMBER_KEY = ":number"
"""The reserved key under which a node's own scalar lives."""

VValue = Any  # a number or a Mapping[str, VValue]
Path = tuple[str, ...]


def is_leaf(x: Any) -> bool:
    """True for a number: a Python, NumPy or JAX scalar (a 0-d array), not a bool."""
    if isinstance(x, bool):
        return False
    if isinstance(x, numbers.Number):
        return True
    shape = getattr(x, "shape", None)
    return shape == () and getattr(getattr(x, "dtype", None), "kind", "") in "fiuc"


def _node(v: VValue, where: str = "V-value") -> Mapping[str, VValue]:
    """A V-value as a map (a bare number becomes ``{":number": x}``)."""
    if isinstance(v, Mapping):
        return v
    if is_leaf(v):
        return {NUMBER_KEY: v}
    raise DMMError(f"{where}: {v!r} of type {type(v).__name__} is neither a number nor a map")


def _is_leaf_checked(x: VValue, where: str) -> bool:
    """True for a number, False for a map; anything else is an error."""
    if isinstance(x, Mapping):
        return False
    if is_leaf(x):
        return True
    raise DMMError(f"{where}: {x!r} of type {type(x).__name__} is neither a number nor a map")


def _check(v: VValue, where: str) -> None:
    if isinstance(v, Mapping):
        for k, x in v.items():
            if not isinstance(k, str):
                raise DMMError(f"{where}: key {k!r} is not a string")
            if k == NUMBER_KEY and not is_leaf(x):
                raise DMMError(f"{where}: the {NUMBER_KEY!r} key must hold a number, not {x!r}")
            _check(x, f"{where}/{k}")
    elif not is_leaf(v):
        raise DMMError(f"{where}: {v!r} of type {type(v).__name__} is neither a number nor a map")


# ------------------------------------------------------------------------------------------------- tree algebra
def sum(*values: VValue) -> dict[str, VValue]:  # noqa: A001 (the V-value sum, named as in docs/semantics.md §3.4)
    """The sum of V-values: key-wise union, leaves add, a leaf added to a map goes under ``":number"``."""
    out: dict[str, VValue] = {}
    for v in values:
        out = _sum2(out, _node(v, "sum"))
    return out


def _sum2(a: Mapping[str, VValue], b: Mapping[str, VValue]) -> dict[str, VValue]:
    out = dict(a)
    for k, y in b.items():
        if k not in out:
            out[k] = _copy(y)
            continue
        x = out[k]
        if is_leaf(x) and is_leaf(y):
            out[k] = x + y
        else:
            out[k] = _sum2(_node(x), _node(y))
    return out


def _copy(v: VValue) -> VValue:
    return {k: _copy(x) for k, x in v.items()} if isinstance(v, Mapping) else v


def _leafwise(v: VValue, f) -> VValue:
    if isinstance(v, Mapping):
        return {k: _leafwise(x, f) for k, x in v.items()}
    if not is_leaf(v):
        raise DMMError(f"{v!r} of type {type(v).__name__} is neither a number nor a map")
    return f(v)


def scale(v: VValue, c: Any) -> VValue:
    """v·c at every leaf (the Clojure engine's ``rec-map-mult``)."""
    return _leafwise(v, lambda x: x * c)


def div(v: VValue, c: Any) -> VValue:
    """v / c at every leaf."""
    return _leafwise(v, lambda x: x / c)


def add(v: VValue, c: Any) -> VValue:
    """v + c at every leaf (leaves only: absent keys stay absent)."""
    return _leafwise(v, lambda x: x + c)


def sub(v: VValue, c: Any) -> VValue:
    """v − c at every leaf."""
    return _leafwise(v, lambda x: x - c)


def mult_mask(mask: VValue, v: VValue) -> dict[str, VValue]:
    """The generalised multiplicative mask: for each key of `mask` that `v` has, leaf·leaf multiplies, a mask leaf
    scales a data subtree, a mask subtree over a data leaf gives nothing, subtree over subtree recurses."""
    mask, v = _node(mask, "mult_mask"), _node(v, "mult_mask")
    out: dict[str, VValue] = {}
    for k, m in mask.items():
        if k not in v:
            continue
        x = v[k]
        if _is_leaf_checked(m, f"mult_mask, mask key {k!r}"):
            out[k] = m * x if _is_leaf_checked(x, f"mult_mask, key {k!r}") else scale(x, m)
        elif not _is_leaf_checked(x, f"mult_mask, key {k!r}"):
            out[k] = mult_mask(m, x)
    return out


def lin_comb(mask: VValue, v: VValue) -> dict[str, VValue]:
    """The generalised linear combination: the traversal of `mult_mask`, every contribution added into one V-value
    (numeric contributions under ``":number"``). lin_comb(row, outputs) is one row of the down movement."""
    mask, v = _node(mask, "lin_comb"), _node(v, "lin_comb")
    out: dict[str, VValue] = {}
    for k, m in mask.items():
        if k not in v:
            continue
        x = v[k]
        if _is_leaf_checked(m, f"lin_comb, mask key {k!r}"):
            out = _sum2(out, {NUMBER_KEY: m * x} if _is_leaf_checked(x, f"lin_comb, key {k!r}") else scale(x, m))
        elif not _is_leaf_checked(x, f"lin_comb, key {k!r}"):
            out = _sum2(out, lin_comb(m, x))
    return out


def apply_matrix(matrix: VValue, v: VValue, level: int) -> dict[str, VValue]:
    """Apply a V-valued matrix to a V-value: for each row path r of length `level` in `matrix`,
    result[r] = lin_comb(matrix[r], v); every row key is kept, even when its result is ``{}``. The Clojure engine's
    down movement is level 3 (rows (type, name, input)), the Julia/JAX engines' level 2 (rows (neuron, input))."""
    if level == 0:
        return lin_comb(matrix, v)
    if not isinstance(matrix, Mapping):
        raise DMMError(f"apply_matrix: found the number {matrix!r} where a map of rows {level} level(s) deep was expected")
    return {k: apply_matrix(row, v, level - 1) for k, row in matrix.items()}


def max_norm(v: VValue) -> dict[str, Any]:
    """``{":number": m}`` with m the largest abs(leaf); ``{":number": 0}`` for a value without leaves."""
    return {NUMBER_KEY: builtins.max((abs(x) for _, x in leaves(v)), default=0)}


def less_or_equal(left: VValue, right: VValue) -> bool:
    """True iff every leaf of right − left is ≥ 0 (so ``{}`` ≤ ``{}``)."""
    return all(x >= 0 for _, x in leaves(sum(right, scale(left, -1))))


def leaves(v: VValue, prefix: Path = ()) -> Iterable[tuple[Path, Any]]:
    """Every (path, leaf) of a V-value, depth first; a bare number is the leaf at path ``(":number",)``."""
    if not isinstance(v, Mapping):  # a bare number (only at the top: nested leaves are yielded below)
        _node(v)
        yield (*prefix, NUMBER_KEY), v
        return
    for k, x in v.items():
        if isinstance(x, Mapping):
            yield from leaves(x, (*prefix, k))
        else:
            _node(x, "/".join((*prefix, k)))
            yield (*prefix, k), x


def pruned(v: VValue) -> VValue:
    """The view without zero leaves and empty maps (a zero bare number becomes ``{}``), as the Clojure engine
    keeps values."""
    if not isinstance(v, Mapping):
        _node(v)
        return {} if v == 0 else v
    out = {}
    for k, x in v.items():
        y = pruned(x)
        if not (isinstance(y, Mapping) and not y) and not (is_leaf(y) and y == 0):
            out[k] = y
    return out


def _top(v: VValue) -> VValue:
    v = pruned(v)
    if isinstance(v, Mapping) and set(v) == {NUMBER_KEY}:
        return v[NUMBER_KEY]
    return v


def equal(a: VValue, b: VValue, *, tol: float = 0.0) -> bool:
    """Do two V-values agree? Compares pruned views, a top-level ``{":number": x}`` equal to a bare x; leaves must
    agree within `tol` (absolute; 0 means exactly)."""

    def eq(x: VValue, y: VValue) -> bool:
        if isinstance(x, Mapping) or isinstance(y, Mapping):
            if not (isinstance(x, Mapping) and isinstance(y, Mapping)) or set(x) != set(y):
                return False
            return all(eq(x[k], y[k]) for k in x)
        return x == y if tol == 0 else bool(abs(x - y) <= tol)

    return eq(_top(a), _top(b))


# ------------------------------------------------------------------------------------------------ flat form
def key_table(*examples: VValue) -> tuple[Path, ...]:
    """The leaf paths of some V-values, in order of first appearance: the key table of a kind that holds them all.

    A scalar at a node that also has children in some example is stored at node + (":number",), so
    `key_table({"c": 2.5}, {"c": {"u": 1}})` is ``(("c", ":number"), ("c", "u"))``; a bare number's path is
    ``(":number",)``.
    """
    for i, e in enumerate(examples):
        _check(e, f"key_table example {i}")
    found = [p for e in examples for p, _ in leaves(e)]
    inner = {p[:i] for p in found for i in range(len(p))}
    table: dict[Path, None] = {}
    for p in found:
        table[(*p, NUMBER_KEY) if p in inner else p] = None
    return tuple(table)


def keyed_kind(name: str, *examples: VValue) -> Kind:
    """A vector kind whose key table holds every leaf path of the `examples` (see `key_table`).

    Example: `keyed_kind("counts", {"step": 1}, {"a": 1})` is `Kind("counts", (2,), keys=("step", "a"))`.
    """
    table = key_table(*examples)
    if not table:
        raise ProgramError(f"keyed_kind {name!r}: the examples have no leaves, so the kind would have no coordinates")
    return Kind(name, (len(table),), keys=table)


def _table(kind: Kind) -> tuple[Path, ...]:
    if kind == NUMBER:
        return ((NUMBER_KEY,),)
    if kind.keys is None:
        raise ProgramError(f"kind {kind.name!r} has no key table, so its values are not V-values (use Kind.keyed)")
    return kind.keys


def _slot(index: Mapping[Path, int], path: Path) -> int | None:
    if path in index:
        return index[path]
    if (*path, NUMBER_KEY) in index:
        return index[(*path, NUMBER_KEY)]
    if path and path[-1] == NUMBER_KEY and path[:-1] in index:
        return index[path[:-1]]
    return None


def flatten(kind: Kind, v: VValue, dtype: Any = None) -> Any:
    """The flat array (shape `kind.shape`) of a V-value under the kind's key table (`NUMBER`: the scalar).

    Raises `ProgramError` naming the path if `v` has a nonzero leaf outside the table. Returns a NumPy array
    (float64 unless `dtype` is given), or a JAX array when a leaf is a JAX array (so it composes with `jax.grad`;
    dtype: `dtype`, else that of the leaves).
    """
    table = _table(kind)
    index = {p: i for i, p in enumerate(table)}
    _check(v, "flatten")
    slots, values = [], []
    for path, x in leaves(v):
        i = _slot(index, path)
        if i is None:
            if _is_zero(x):
                continue
            raise ProgramError(
                f"flatten: the V-value has the nonzero leaf {'/'.join(path)} = {x!r}, outside the key table of kind "
                f"{kind.name!r} ({', '.join('/'.join(p) for p in table)})"
            )
        slots.append(i)
        values.append(x)
    if any(_is_jax(x) for x in values):
        out = jnp.zeros(len(table), dtype or jnp.result_type(*values))
        for i, x in zip(slots, values):
            out = out.at[i].add(x)
        return out.reshape(kind.shape)
    out = np.zeros(len(table), dtype or np.float64)
    for i, x in zip(slots, values):
        out[i] += x
    return out.reshape(kind.shape)


def _is_jax(x: Any) -> bool:
    return type(x).__module__.startswith("jax")


def _is_zero(x: Any) -> bool:
    try:
        return bool(x == 0)
    except Exception:  # a traced value: it cannot be shown to be zero
        return False


def unflatten(kind: Kind, x: Any) -> dict[str, VValue]:
    """The V-value of a flat array of `kind` (shape `kind.shape`), with explicit zeros.

    Leaves are Python floats for a NumPy input and 0-d arrays for a JAX input."""
    table = _table(kind)
    concrete = isinstance(x, (np.ndarray, np.generic, numbers.Number))
    flat = np.asarray(x, np.float64).reshape(-1) if concrete else x.reshape(-1)
    if flat.shape[0] != len(table):
        raise ProgramError(f"unflatten: an array of shape {np.shape(x)} is not a value of kind {kind.name!r} {kind.shape}")
    out: dict[str, VValue] = {}
    for i, path in enumerate(table):
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = float(flat[i]) if concrete else flat[i]
    return out


def from_trace(trace: Any, stream: str) -> list[dict[str, VValue]]:
    """A recorded keyed (or number) stream of a `Trace` as one V-value per cycle."""
    kind = trace.kinds[stream]
    return [unflatten(kind, row) for row in np.asarray(trace[stream])]


# ------------------------------------------------------------------------------------------- network matrices
def network_entries(matrix: VValue) -> dict[tuple[str, str], float]:
    """``{(source port, target port): w}`` from a rank-4 V-valued network matrix
    ``{target neuron: {target input: {source neuron: {source output: w}}}}`` (zero entries kept)."""
    out: dict[tuple[str, str], Any] = {}
    for path, w in leaves(matrix):
        if len(path) != 4 or NUMBER_KEY in path:
            raise ProgramError(
                f"network_entries: {'/'.join(path)} is not a (target neuron, input, source neuron, output) path"
            )
        dst, src = f"{path[0]}.{path[1]}", f"{path[2]}.{path[3]}"
        out[(src, dst)] = out.get((src, dst), 0) + w
    return out


def network_value(entries: Mapping[tuple[str, str], Any] | Sequence[tuple[str, str, Any]]) -> dict[str, VValue]:
    """The rank-4 V-value ``{target neuron: {target input: {source neuron: {source output: w}}}}`` of matrix
    entries ``{(source port, target port): w}`` (or ``(src, dst, w)`` triples, as `Program.initial` holds them)."""
    items = entries.items() if isinstance(entries, Mapping) else (((s, d), w) for s, d, w in entries)
    out: dict[str, VValue] = {}
    for (src, dst), w in items:
        (tn, ti), (sn, so) = dst.split("."), src.split(".")
        out = _sum2(out, {tn: {ti: {sn: {so: w}}}})
    return out
