"""The registry of program builders: named functions that return a `Program` (what ``dmm programs`` lists and
``dmm run NAME`` builds).

Builders come from two places:

- the ``dmm.programs`` entry-point group of installed packages: an entry ``NAME = "module:function"`` declares one
  builder (the way the `programs` package declares its own). `registered_programs` imports them the first time
  it is called; `describe_programs` reads their names, descriptions and parameters from the source without
  importing anything, so listing the programs stays fast. (An entry ``NAME = "module"`` without a function names a
  module whose builders register themselves when it is imported.)
- `register_program`, a decorator, for builders defined at run time (a script, a module given to ``dmm --import``).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path

from .errors import ProgramError
from .program import Program


GROUP = "dmm.programs"
_PROGRAMS: dict[str, Callable[..., Program]] = {}
_ENTRY_POINTS_LOADED = False


@dataclasses.dataclass(frozen=True)
class ProgramInfo:
    """What ``dmm programs`` shows of a builder: its `name`, `summary` (its docstring's first paragraph, on one
    line) and `parameters` (``"name=default, ..."`` as in its signature)."""

    name: str
    summary: str
    parameters: str

    @classmethod
    def of(cls, name: str, fn: Callable[..., Program]) -> ProgramInfo:
        """The description of an imported builder `fn` registered as `name`."""
        params = [f"{p.name}={p.default!r}" if p.default is not inspect.Parameter.empty else p.name
                  for p in inspect.signature(fn).parameters.values()]
        return cls(name, _summary(inspect.getdoc(fn)), ", ".join(params))


def register_program(fn: Callable[..., Program]) -> Callable[..., Program]:
    """Register a function returning a `Program` under its own name (a decorator; returns `fn`). Its docstring's
    first paragraph is its one-line description; its parameters, with their annotations and defaults, are what
    ``dmm run NAME --arg key=value`` sets. Names are global: registering a name twice raises `ProgramError`."""
    if fn.__name__ in _PROGRAMS:
        raise ProgramError(f"program {fn.__name__!r} is registered twice")
    _PROGRAMS[fn.__name__] = fn
    return fn


def registered_programs() -> dict[str, Callable[..., Program]]:
    """Program name -> builder, sorted by name, after importing the builders of the ``dmm.programs`` entry points
    (once; one that fails to import raises `ProgramError` naming its entry point, every time)."""
    global _ENTRY_POINTS_LOADED
    if not _ENTRY_POINTS_LOADED:
        for ep in _entry_points():
            try:
                fn = ep.load()
            except Exception as e:  # a broken plug-in names itself
                raise ProgramError(f"entry point {ep.name!r} of group {GROUP} failed to load: {e}") from e
            if ep.attr:
                if _PROGRAMS.get(ep.name, fn) is not fn:
                    raise ProgramError(f"program {ep.name!r} is registered twice (entry point {ep.value!r})")
                _PROGRAMS[ep.name] = fn
        _ENTRY_POINTS_LOADED = True
    return dict(sorted(_PROGRAMS.items()))


def describe_programs() -> dict[str, ProgramInfo]:
    """Program name -> `ProgramInfo`, sorted by name, for every builder `registered_programs` would return.

    Builders declared as ``module:function`` entry points are described from their source file, found and parsed
    without importing the module (so without JAX); the others (registered at run time, or whose source cannot be
    read) from the imported function."""
    infos: dict[str, ProgramInfo] = {}
    load = False
    for ep in _entry_points():
        info = _from_source(ep.name, ep.module, ep.attr) if ep.attr else None
        if info is None:
            load = True
        else:
            infos[ep.name] = info
    builders = registered_programs() if load else dict(_PROGRAMS)
    for name, fn in builders.items():
        infos.setdefault(name, ProgramInfo.of(name, fn))
    return dict(sorted(infos.items()))


def _entry_points():
    from importlib.metadata import entry_points

    return entry_points(group=GROUP)


def _summary(doc: str | None) -> str:
    return " ".join((doc or "").split("\n\n")[0].split())


def _from_source(name: str, module: str, attr: str) -> ProgramInfo | None:
    """Describe top-level function `attr` of `module` from its source, or None where that cannot be done."""
    path = _source_path(module)
    if path is None or "." in attr:
        return None
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == attr), None)
    if fn is None:
        return None
    args = fn.args
    if args.posonlyargs or args.vararg or args.kwarg:
        return None
    positional = [(a.arg, d) for a, d in zip(args.args, [None] * (len(args.args) - len(args.defaults)) + args.defaults)]
    keyword = list(zip((a.arg for a in args.kwonlyargs), args.kw_defaults))
    constants = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                 if isinstance(t, ast.Name)}  # module constants used as defaults, e.g. TEXT = "..."
    try:  # a default that is no literal (a computed value) is only known to the imported function
        params = [n if d is None else f"{n}={ast.literal_eval(constants.get(getattr(d, 'id', None), d))!r}"
                  for n, d in positional + keyword]
    except ValueError:
        return None
    return ProgramInfo(name, _summary(inspect.cleandoc(ast.get_docstring(fn, clean=False) or "")), ", ".join(params))


def _source_path(module: str) -> Path | None:
    """The source file of `module` (dotted), found through the top-level package's spec without executing it."""
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    places = list(spec.submodule_search_locations or ())
    for i, part in enumerate(rest):
        last = i == len(rest) - 1
        found = None
        for place in places:
            candidate = Path(place) / part
            if last and candidate.with_suffix(".py").is_file():
                return candidate.with_suffix(".py")
            if (candidate / "__init__.py").is_file():
                found = candidate
                break
        if found is None:
            return None
        if last:
            return found / "__init__.py"
        places = [str(found)]
    return None
