"""File formats: program files, traces and training checkpoints, each one file written as one atomic commit and read
without pickle, within bounds (`Limits`), every failure a `dmm.FileFormatError` naming the file and the field.

This layer sits on the core (`dmm`); nothing in the core imports it. docs/files.md describes the formats.
"""

from .atomic import DEFAULT_LIMITS as DEFAULT_LIMITS
from .atomic import Limits as Limits
from .programs import load_program as load_program
from .programs import save_program as save_program
from .traces import load_trace as load_trace
from .traces import save_trace as save_trace


# Checkpoints hold JAX pytrees; their functions load on first use (PEP 562), so reading a program or a trace never
# pays for importing JAX.
_LAZY = ("checkpoint_path", "list_checkpoints", "load_checkpoint", "read_checkpoint_meta", "save_checkpoint")


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'dmm.files' has no attribute {name!r}")
    from . import checkpoints

    value = globals()[name] = getattr(checkpoints, name)
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
