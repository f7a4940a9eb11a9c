"""`python -m devstack ...` is an alias of `calehr ...` (kept for old notes and scripts)."""

import sys

from cli.app import main

sys.exit(main())
