"""`python -m namesmith.cli`: the `namesmith` command."""

import sys

from namesmith.cli.command import main

sys.exit(main())
