"""``python -m cutover.sandbox.chaos``: see harness.py."""

import sys

from cutover.sandbox.chaos.harness import main

sys.exit(main())
