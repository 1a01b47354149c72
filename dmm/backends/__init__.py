"""Down-movement backends (see `dmm.backends.base`): ``"dense"`` (`dense.py`) and ``"sparse"`` (ELL, `ell.py`)."""

from .base import Backend as Backend
from .base import Block as Block
from .base import register_backend as register_backend
from .base import registered_backends as registered_backends
from .base import resolve_backend as resolve_backend
from .dense import DENSE as DENSE
from .ell import ELL as ELL
