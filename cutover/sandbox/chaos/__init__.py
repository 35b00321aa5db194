"""``make chaos`` (issue 15): kill -9 cutover at every point of a sandbox cutover, resume, and
compare the world with an uninterrupted run's. harness.py runs it; points.py says where to kill,
drive.py runs and kills cutover, world.py reads the world, procs.py finds what a run left running.
"""
