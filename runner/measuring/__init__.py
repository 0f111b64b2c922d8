"""Measuring: the figures a run records and the statistics the report rests on.

Owns the timed streaming client (``client``), the environment fingerprint, energy and memory
(``resources``), the node activity log and timing lock (``activity``), the noise floor, the one
pass-rate definition and the statistics. May import the store, backends, runtimes, prompts,
evaluation and everything below them; never serving, planning, running, executors, report or cli.
"""
