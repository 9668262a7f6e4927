"""Docker sandbox fixtures: a session-end leak check.

Every test that starts containers is marked ``docker``; the session ends by checking that no
labelled container or volume made by this process (or by its worker processes) remains.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _no_leaked_docker_resources():
    """After the session: no sandbox container or volume of this process or its children."""
    yield
    from etpo_gym.sandbox.docker import docker_status, list_resources

    if not docker_status()[0]:
        return
    import gc

    gc.collect()  # sandboxes dropped without close() are closed by their finaliser
    pid = os.getpid()
    leaked = list_resources(owner_pid=pid) + list_resources(parent_pid=pid)
    assert not leaked, f"Docker sandbox resources leaked: {leaked}"
