"""``python -m ppl_bmc.cli``: the ``ppl-bmc`` command."""

import sys

from ppl_bmc.cli import main

sys.exit(main())
