"""`python -m qlora_helpers ...`: see `qlora_helpers.cli`."""

import sys

from qlora_helpers.cli import main

sys.exit(main())
