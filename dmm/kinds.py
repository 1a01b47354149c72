"""Stream kinds: the shape (and optional coordinate labels) of the values a port carries.

A DMM is *typed*: a link may only join two ports of the same kind, and the down movement is block-diagonal by kind.
A kind is a name, a value shape and, for flat vectors, an optional *key table* naming every coordinate, so that a
V-value (a nested dict with numeric leaves, see `dmm.vvalues`) can travel as a flat array and be read back with
its labels.

`NETWORK` is the kind of the network matrix itself (the output of a Self neuron, matrix-valued edits). Its shape is
not known when a program is written; `dmm.compile` resolves it from the program's ports (see `NetworkLayout`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from .errors import ProgramError


Path = tuple[str, ...]


def _short(value: object, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _as_path(label: str | Sequence[str]) -> Path:
    if isinstance(label, str):
        return (label,)
    path = tuple(label)
    if not path or not all(isinstance(k, str) for k in path):
        raise ProgramError(f"a key-table label must be a string or a non-empty tuple of strings, not {label!r}")
    return path


@dataclasses.dataclass(frozen=True)
class Kind:
    """The kind of a stream.

    **Arguments:**

    - `name`: the kind's name; two kinds with the same name in one program must be equal.
    - `shape`: the shape of one value, `()` for a scalar, `(d,)` for a vector, `(m, n)` for a matrix.
    - `keys`: optional key table for a vector kind: one label per coordinate, each a string or a tuple of strings
      (a leaf path of a V-value, `":number"` standing for a node's own scalar).

    Kinds compare by value. Streams are stored in the machine's dtype (float32 unless compiled otherwise).

    Example: `Kind("chars", (3,), keys=("a", "b", "."))`, or `Kind.keyed("chars", "ab.")`.
    """

    name: str
    shape: tuple[int, ...] | None = ()
    keys: tuple[Path, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "." in self.name:
            raise ProgramError(f"a kind name must be a non-empty string without '.', not {self.name!r}")
        if self.shape is None:
            if self.name != "network" or self.keys is not None:
                raise ProgramError("only the NETWORK kind may leave its shape to the compiler")
            return
        try:
            shape = tuple(int(d) for d in self.shape)
        except TypeError:
            raise ProgramError(f"kind {self.name!r}: shape must be a tuple of ints, not {self.shape!r}") from None
        if any(d < 1 for d in shape):
            raise ProgramError(f"kind {self.name!r}: every dimension must be at least 1, got {shape}")
        object.__setattr__(self, "shape", shape)
        if self.keys is not None:
            keys = tuple(_as_path(k) for k in self.keys)
            if len(shape) != 1 or len(keys) != shape[0]:
                raise ProgramError(
                    f"kind {self.name!r}: a key table needs a vector shape with one label per coordinate "
                    f"(shape {shape}, {len(keys)} labels)"
                )
            if len(set(keys)) != len(keys):
                dup = sorted({k for k in keys if keys.count(k) > 1})
                raise ProgramError(f"kind {self.name!r}: duplicate labels in the key table: {dup}")
            object.__setattr__(self, "keys", keys)

    @classmethod
    def keyed(cls, name: str, labels: Iterable[str | Sequence[str]]) -> Kind:
        """A vector kind with one labelled coordinate per label (a string of characters works as labels)."""
        labels = tuple(labels)
        return cls(name, (len(labels),), keys=labels)

    @property
    def size(self) -> int:
        """Number of scalars in one value."""
        if self.shape is None:
            raise ProgramError("the NETWORK kind has no size until a program is compiled")
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The key table as display strings (path components joined by '/'), or None."""
        if self.keys is None:
            return None
        return tuple("/".join(p) for p in self.keys)

    def index(self, label: str | Sequence[str]) -> int:
        """The coordinate of a label in the key table."""
        if self.keys is None:
            raise ProgramError(f"kind {self.name!r} has no key table")
        path = _as_path(label)
        try:
            return self.keys.index(path)
        except ValueError:
            raise ProgramError(f"kind {self.name!r} has no label {label!r}") from None

    def onehot(self, label: str | Sequence[str], value: float = 1.0):
        """The vector with `value` at `label` and zeros elsewhere (a NumPy float32 array)."""
        import numpy as np

        v = np.zeros(self.shape, np.float32)
        v[self.index(label)] = value
        return v

    def to_json(self) -> dict:
        out: dict = {"name": self.name, "shape": None if self.shape is None else list(self.shape)}
        if self.keys is not None:
            out["keys"] = [list(p) for p in self.keys]
        return out

    @classmethod
    def from_json(cls, data: dict) -> Kind:
        """The kind `to_json` wrote; anything else (wrong types, a non-integer or absurd dimension, extra fields)
        raises `ProgramError` naming the field."""
        if not isinstance(data, dict) or not {"name", "shape"} <= set(data) or not set(data) <= {"name", "shape", "keys"}:
            raise ProgramError(f"a kind must be an object with 'name', 'shape' and optionally 'keys', not {_short(data)}")
        name, shape, keys = data["name"], data["shape"], data.get("keys")
        if not isinstance(name, str):
            raise ProgramError(f"a kind's 'name' must be a string, not {_short(name)}")
        if shape is not None:
            if not isinstance(shape, list) or not all(type(d) is int for d in shape) or len(shape) > 32:
                raise ProgramError(f"kind {name!r}: 'shape' must be a list of at most 32 integers, not {_short(shape)}")
            if any(d > 1 << 62 for d in shape):
                raise ProgramError(f"kind {name!r}: 'shape' {_short(shape)} has an absurd dimension")
        if keys is not None:
            if not isinstance(keys, list) or not all(
                    isinstance(k, list) and all(isinstance(c, str) for c in k) for k in keys):
                raise ProgramError(f"kind {name!r}: 'keys' must be a list of lists of strings, not {_short(keys)}")
        return cls(name, None if shape is None else tuple(shape), None if keys is None else tuple(map(tuple, keys)))

    def __repr__(self) -> str:
        if self.shape is None:
            return "NETWORK"
        extra = f", keys={self.labels}" if self.keys is not None else ""
        return f"Kind({self.name!r}, {self.shape}{extra})"


NUMBER = Kind("number", ())
"""The scalar kind (D = 1): one number per stream."""

NETWORK = Kind("network", None)
"""The kind of the network matrix (Self's output, matrix-valued edits), resolved by `dmm.compile`."""
