"""Serving: turning a matrix cell into weights a runtime can serve.

Owns model preparation (``models``, ``models_hub``, ``convert``: download, assemble, dequantize, verify),
the matrix's lock of Hugging Face sources (``lock``, ``lock_hub``) and the launch check of every cell.
May import the matrix, backends, runtimes, measuring, prompts, the store and everything below them; never
planning, running, executors, report or cli.
"""
