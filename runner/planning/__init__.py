"""Planning: what a run will do before it does it.

Owns the plan (``plan``: can each cell run here, what it needs, how long it takes), its estimates and
simulated schedule, the host probe (``doctor``), GPU memory per cell, task selection, baselines and the
dry run. May import serving, measuring, the matrix and everything below them; never running, executors,
report or cli.
"""
