"""`python -m dspy_top`: the same as the `dspy-top` command."""

import sys

from dspy_top.cli import main

sys.exit(main())
