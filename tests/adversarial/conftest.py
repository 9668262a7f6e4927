"""Red-team fixtures: one env pool per backend per module (``reset`` gives each probe a fresh
kernel, so probes share envs instead of starting new ones)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .harness import EnvPool


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], EnvPool]]:
    """``pools(backend)``: this module's env pool for ``backend``, closed at the module's end."""
    made: dict[str, EnvPool] = {}

    def get(backend: str) -> EnvPool:
        if backend not in made:
            made[backend] = EnvPool(backend, tmp_path_factory.mktemp(f"redteam-{backend}"))
        return made[backend]

    yield get
    for pool in made.values():
        pool.close()
