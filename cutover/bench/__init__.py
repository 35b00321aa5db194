"""``make bench``: issue 10's benchmark of cutover's data path against the plain tools.

reference.py  the reference database (pgbench + a 2-million-row table; BENCH_SCALE) and workload
baselines.py  (a) guide's file path, (b) streamed, (c) pgcopydb clone, (f) psql checksums
child.py      one cutover step (FinalSync / InitialSync / VerifyData .apply) in its own process
clock.py      cutover's own time: wall minus the time external commands ran
report.py     medians, ratios, targets, the rich table and the ``bench:`` / ``ratio:`` lines
harness.py    the run: sandbox, reference data, interleaved rounds, printing
"""
