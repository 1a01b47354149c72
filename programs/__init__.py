"""Canonical DMM programs, each a function returning a `dmm.Program` (see `registry()`)."""

from .detector import duplicate_detector as duplicate_detector
from .registry import register as register
from .registry import registry as registry
