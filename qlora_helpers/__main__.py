"""`python -m qlora_helpers ...`: see `qlora_helpers.cli`."""

import sys

from .cli import main

sys.exit(main())
