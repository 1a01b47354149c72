"""Generate docs/api.md, the API reference, from the docstrings of the public names.

    python docs/gen_api.py            # rewrite docs/api.md
    python docs/gen_api.py --check    # exit 1 if docs/api.md is out of date

The public names of a package are the ones its ``__init__.py`` imports or assigns, in that order (read with `ast`, so
submodules that are not re-exported stay out). Classes list their public methods and properties; a re-exported
module lists its public functions. `tests/test_docs.py` checks that docs/api.md is current.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import types
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "api.md"
PACKAGES = (
    ("dmm", "The core runtime: kinds, neuron types, programs, compilation, machines, traces, batches, growth."),
    ("dmm.backends", "Down-movement backends: how each kind's block of W is stored and multiplied."),
    ("dmm.remat", "Rematerialisation strategies for the backward pass of a run."),
    ("dmm.files", "File formats: program files, traces and checkpoints."),
    ("dmm.train", "Training by backpropagation through time on optax."),
    ("dmm.sparsify", "Pruning, regrowing and the sparsification schedules."),
    ("dmm.plot", "Figures of traces and the text tables of the command line."),
    ("neurons", "The neuron vocabulary: each factory returns a neuron (type and parameters); its docstring gives the formula."),
    ("attention", "Attention neurons and their building blocks."),
    ("programs", "Ready-made programs (`dmm programs` lists them; `dmm run NAME --arg key=value` runs one)."),
)


def public_names(package: str) -> list[str]:
    """Names that the package's ``__init__.py`` imports or assigns at top level, in order, without private ones (for
    a plain module: the classes, functions and constants it defines)."""
    mod = importlib.import_module(package)
    tree = ast.parse(Path(mod.__file__).read_text())
    names: list[str] = []
    is_package = hasattr(mod, "__path__")
    for node in tree.body:
        if not is_package and isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and is_package:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            names += [a.asname or a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and not is_package:
            names.append(node.target.id)
    return [n for n in dict.fromkeys(names) if not n.startswith("_") and hasattr(mod, n)]


def _signature(obj: object) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    sig = re.sub(r" at 0x[0-9a-f]+", "", sig)
    sig = re.sub(r"<module '([\w.]+)' from '[^']*'>", r"\1", sig)  # module defaults, without the install path
    return re.sub(r"(: |-> )'([^']*)'", r"\1\2", sig)  # string annotations (from __future__ import annotations)


def _doc(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return re.sub(r"^```\w+", "```text", doc, flags=re.M)  # examples here are reference, not executed


def _own(cls: type) -> list[tuple[str, object]]:
    """Public methods and properties defined in `cls` itself, in definition order."""
    out = []
    for name, member in vars(cls).items():
        if name.startswith("_") or name in ("tree_flatten", "tree_unflatten"):  # the pytree protocol
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = getattr(cls, name)  # bound: a classmethod's signature without cls
        if isinstance(member, property) or inspect.isfunction(member) or inspect.ismethod(member):
            out.append((name, member))
    return out


def _entry(qualname: str, obj: object) -> list[str]:
    lines = _lines(qualname, obj)
    return [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]  # no runs of blank lines


def _lines(qualname: str, obj: object) -> list[str]:
    lines: list[str] = []
    if isinstance(obj, types.ModuleType):
        lines += [f"### `{qualname}`", "", _doc(obj), ""]
        for name, fn in vars(obj).items():
            if not name.startswith("_") and inspect.isfunction(fn) and fn.__module__ == obj.__name__:
                lines += [f"#### `{qualname}.{name}{_signature(fn)}`", "", _doc(fn), ""]
        return lines
    if isinstance(obj, types.GenericAlias):  # a type alias such as Params = dict[str, Any]
        return [f"### `{qualname}`", "", f"*type alias* of `{obj!r}`", ""]
    if inspect.isclass(obj):
        lines += [f"### `{qualname}{_signature(obj)}`", "", "*class*", "", _doc(obj), ""]
        for name, member in _own(obj):
            if isinstance(member, property):
                lines += [f"#### `{qualname}.{name}` *(property)*", "", _doc(member), ""]
            else:
                lines += [f"#### `{qualname}.{name}{_signature(member)}`", "", _doc(member), ""]
        return lines
    if callable(obj):
        return [f"### `{qualname}{_signature(obj)}`", "", _doc(obj), ""]
    return [f"### `{qualname}`", "", f"`{re.sub(r' at 0x[0-9a-f]+', '', repr(obj))}`", ""]  # no memory addresses


def render() -> str:
    """The text of docs/api.md."""
    lines = ["# API reference", "",
             "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand. Shapes and dtypes of",
             "every argument are in the docstrings; the [tutorial](tutorial.md) shows the pieces working together.", ""]
    toc = []
    body: list[str] = []
    for package, summary in PACKAGES:
        try:
            mod = importlib.import_module(package)
        except ImportError:
            continue
        names = public_names(package)
        toc.append(f"- [`{package}`](#{package.replace('.', '')}): {summary}")
        body += [f"## {package}", "", summary, "", _doc(mod), ""]
        for name in names:
            obj = getattr(mod, name)
            if name == "__version__" or f"{package}.{name}" in dict(PACKAGES):  # documented in its own section
                continue
            body += _entry(f"{package}.{name}", obj)
    return "\n".join(lines + toc + [""] + body).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run python docs/gen_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
