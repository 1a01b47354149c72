"""``python -m dmm``: the ``dmm`` command (`dmm.cli`)."""

import sys

from dmm.cli import main

sys.exit(main())
