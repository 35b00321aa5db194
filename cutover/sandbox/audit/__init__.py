"""``make audit`` (issue 15): every child's argv and environment, every file, every secret.

recorder.py (with hook.py) records every process a cutover run starts, from outside cutover's
code; secretset.py gathers every secret the sandbox holds; scan.py looks for them in every
place a run writes to; harness.py runs the whole sandbox cutover forward and back and reports.
``python -m cutover.sandbox.audit`` ends with ``audit: L leaks in P places checked`` and exits 1
on any leak.
"""
