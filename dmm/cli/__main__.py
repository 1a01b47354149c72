"""``python -m dmm.cli``: the ``dmm`` command."""

import sys

from .main import main

sys.exit(main())
