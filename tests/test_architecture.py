"""The layering of the installed packages, read from their source (docs/architecture.md says it in words).

- No module reads another module's private names: no ``from m import _x``, no import of a ``_private`` module, no
  ``obj._x`` unless ``_x`` is defined in the reading module itself (its own classes' attributes).
- Each layer imports only the layers below it, and only through their public faces (``dmm``, ``dmm.files``,
  ``dmm.train``, ...; never ``dmm.machine`` from above the core); there are no import cycles between modules.
- ``import dmm`` loads no optax, matplotlib or extension packages.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dmm", "neurons", "attention", "programs")

# layer -> the layers it may import (besides itself)
ALLOWED = {
    "core": set(),
    "files": {"core"},
    "plot": {"core"},
    "train": {"core", "files"},
    "sparsify": {"core", "files", "train"},
    "cli": {"core", "files", "plot", "train"},
    "neurons": {"core"},
    "attention": {"core", "neurons"},
    "programs": {"core", "neurons", "attention"},
}
UPPER = ("files", "plot", "train", "sparsify", "cli")  # subpackages of dmm above the core
# the public faces of each layer: what other layers may import
FACES = {"core": {"dmm", "dmm.backends", "dmm.remat", "dmm.vvalues"}, "neurons": {"neurons"},
         "attention": {"attention"}, "programs": {"programs"}, **{u: {f"dmm.{u}"} for u in UPPER}}
EXTERNAL_PRIVATE_OK = {"_replace", "_fields", "_asdict", "_make"}  # NamedTuple's public API


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = modules()


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "dmm":
        return parts[0]
    if module == "dmm.__main__":  # `python -m dmm` is the command line
        return "cli"
    return parts[1] if len(parts) > 1 and parts[1] in UPPER else "core"


def resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    is_pkg = MODULES[module].name == "__init__.py"
    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import statement of `module`, at any depth."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):  # imports for type checkers only are not imports
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, [], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module, node)
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            rest = [n for n in names if f"{target}.{n}" not in MODULES]
            if rest or not submodules:
                out.append((target, rest, node.lineno))
            out.extend((s, [], node.lineno) for s in submodules)
    return out


def own_private_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("setattr", "object.__setattr__"):
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                names.add(node.args[1].value)
    return {n for n in names if n.startswith("_")}


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_reads_another_modules_private_names(module):
    tree = ast.parse(MODULES[module].read_text())
    own = own_private_names(tree)
    bad = []
    for target, names, line in imports(module):
        if any(private(p) for p in target.split(".")):
            bad.append(f"line {line}: imports the private module {target}")
        bad.extend(f"line {line}: imports {target}.{n}" for n in names if private(n))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in own:
            if node.attr not in EXTERNAL_PRIVATE_OK:
                bad.append(f"line {node.lineno}: reads {ast.unparse(node)}")
    assert not bad, f"{module} reads private names of other modules:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_layer_imports_only_the_public_faces_of_the_layers_below(module):
    mine = layer(module)
    bad = []
    for target, _, line in imports(module):
        if target.split(".")[0] not in PACKAGES:
            continue
        theirs = layer(target)
        if theirs == mine:
            continue
        if theirs not in ALLOWED[mine]:
            bad.append(f"line {line}: the {mine} layer imports {target} (layer {theirs})")
        elif target not in FACES[theirs]:
            bad.append(f"line {line}: imports {target}, not a public face of the {theirs} layer {sorted(FACES[theirs])}")
    assert not bad, f"{module}:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in imports(m) if t in MODULES and t != m} for m in MODULES}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_import_dmm_loads_no_optax_matplotlib_or_extensions():
    code = "import sys, dmm; print(sorted(m for m in ('optax', 'matplotlib', 'programs', 'neurons', 'attention') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_import_attention_does_not_load_the_bridge_study():
    code = "import sys, attention; print([m for m in sys.modules if m.startswith('attention') and 'bridge' in m])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
