"""``python -m normae.cli`` (and ``torchrun -m normae.cli``): the ``normae`` command."""

import sys

from normae.cli.main import main

sys.exit(main())
