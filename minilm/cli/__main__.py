"""`python -m minilm.cli ...` is the `minilm` command."""

import sys

from .commands import main

sys.exit(main())
