"""``python -m cutover.bench`` (``make bench``)."""

import sys

from cutover.bench.harness import main

sys.exit(main())
