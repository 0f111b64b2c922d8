"""runner: latency and accuracy of code-infill models across runtimes, quantizations and GPUs."""

__version__ = "0.1.0"
