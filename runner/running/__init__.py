"""Running: one ``runner reproduce`` from matrix to run directory.

``run`` opens the run directory, plans, and hands the cells to an executor (``runner.executors``);
``cell`` is one cell's phases against its server, on whichever node runs it; ``score`` judges answers
under each edition; ``events`` is what a run reports and ``progress`` renders it for people. May import
planning, serving, measuring and everything below them; never report or cli. Inside, ``run`` sits above
the executors and ``cell``, ``score`` and ``events`` below them (a second contract in pyproject.toml).
"""
