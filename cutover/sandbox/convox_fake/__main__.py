"""``python -m cutover.sandbox.convox_fake ARGS``: run one convox command."""

import signal
import sys

from cutover.sandbox.convox_fake.dispatch import main

# Like a Go program without signal handlers: SIGINT kills the process.
signal.signal(signal.SIGINT, signal.SIG_DFL)
sys.exit(main())
