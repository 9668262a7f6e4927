"""Agents importable by spec (``module:attr``) from the runner's tests."""

from __future__ import annotations

BODY = "    from sklearn.dummy import DummyClassifier\n    model = DummyClassifier(strategy='prior').fit(x_train, y_train)\n"


class ConstantAgent:
    name = "constant"

    def act(self, observation: str, info: dict) -> str:
        return BODY


def plain_function(observation: str, info: dict) -> str:
    return BODY


def broken_agent():
    """A factory that cannot build its agent (as a model that fails to load in a worker)."""
    raise RuntimeError("this agent cannot be built here")
