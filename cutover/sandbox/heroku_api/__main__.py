"""``python -m cutover.sandbox.heroku_api --state ... --port ...``."""

import sys

from cutover.sandbox.heroku_api.server import main

sys.exit(main())
