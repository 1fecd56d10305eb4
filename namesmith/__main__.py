"""`python -m namesmith` (and `torchrun -m namesmith`): the `namesmith` command."""

import sys

from namesmith.cli import main

sys.exit(main())
