"""The ExLlamaV2 rehearsal (issue 19): what ``scripts/gpu-rehearsal.sh`` and its bundle maker run.

Run as modules with ``scripts/`` on ``PYTHONPATH`` (``python -m gpu_rehearsal.preflight``): the shell
scripts do. ``pins`` holds every pin and every argument the rehearsal passes to a tool, so that the
preflight and the tests check exactly what the GPU host will run.
"""
