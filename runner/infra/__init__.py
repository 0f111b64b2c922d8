"""Infrastructure the runner drives on a host: the Docker engine and its images (``docker_engine``),
compose.yaml as the images' single source of truth (``compose``), and helper processes that die with
the runner (``lifetime``). May import only ``runner.errors`` and ``runner.paths``: the Docker backend,
the evaluation sandbox and model preparation all stand on it.
"""
