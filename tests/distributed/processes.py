"""Process helpers of the distributed tests: which of some processes still run."""

from __future__ import annotations


def still_running(pids: dict[int, float]) -> list[int]:
    """Those of ``pids`` (pid → start time) that still run: the same pid with the same start
    time, so that a reused pid does not count."""
    import psutil

    alive = []
    for pid, created in pids.items():
        try:
            if psutil.Process(pid).create_time() == created:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive
