"""The registry of named DMM programs (what `dmm programs` lists and `dmm run NAME` runs): the core's
(`dmm.register_program`, `dmm.registered_programs`) under this package's names. The package is found through the
``dmm.programs`` entry point that `pyproject.toml` declares."""

from __future__ import annotations

import dmm


register = dmm.register_program
registry = dmm.registered_programs
