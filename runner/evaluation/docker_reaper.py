"""Removes a scorer's sandbox containers once the scorer is gone, however it died.

The scorer (``DockerSandbox``) starts this process in its own session and keeps the write end of
its stdin: ``+<id>`` when it creates a container, ``-<id>`` once it has removed it. End of file
means the scorer's process ended; every container still listed is then removed. A container has
no clock of its own, so without this an answer would sleep on after a killed scorer.
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    # the scorer's terminal or process group may be signalled as a whole; this must outlive it
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    live: set[str] = set()
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("+"):
            live.add(line[1:])
        elif line.startswith("-"):
            live.discard(line[1:])
    if not live:
        return
    from runner.infra.docker_engine import docker_client

    client = docker_client(timeout=60)
    for container_id in live:
        try:
            client.api.remove_container(container_id, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


if __name__ == "__main__":
    main()
