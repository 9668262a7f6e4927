"""Agents by spec: entry points of installed packages (a third-party one made here), Python code
by module or file, and the library's independence from the agents package."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import etpo_gym
from etpo_gym.agent import describe_agents, load_agent, registered_agents, resolve_agent
from etpo_gym.errors import ConfigError

LIBRARY = Path(etpo_gym.__file__).parent
SHIPPED = {
    "logreg",
    "random-forest",
    "hist-gb",
    "knn",
    "naive-bayes",
    "tree",
    "random-template",
    "explorer",
}


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        return [(node.module or "").split(".")[0]]
    return []


def test_the_library_never_imports_the_agents_or_torch():
    """Nowhere in ``etpo_gym``, not even inside a function, an import of the agents package,
    torch or transformers (trainer glue that generates with a model lives in ``etpo_agents``)."""
    for path in LIBRARY.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            for top in _imported(node):
                assert top not in ("etpo_agents", "agents", "torch", "transformers"), (path, top)


def test_shipped_agents_are_registered_and_load():
    registered = registered_agents()
    assert SHIPPED | {"lm", "etpo"} <= set(registered)
    for name in SHIPPED:
        agent = load_agent(name)
        assert agent.name == name and callable(agent.act)
    assert "etpo:RUN_DIR" in describe_agents() and "lm[:MODEL]" in describe_agents()
    resolve_agent("lm")  # resolving builds nothing: no model is loaded here
    resolve_agent("lm:/some/model")


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("gpt5", "unknown agent 'gpt5'; accepted: a registered agent (etpo:RUN_DIR, "),
        ("etpo", "agent 'etpo' needs an argument: etpo:RUN_DIR"),
        ("logreg:x", "agent 'logreg' takes no argument (got 'logreg:x')"),
        ("", "give a name such as logreg"),
        ("nosuchmodule:Agent", "make it importable (run from the directory that holds"),
        ("nosuchmodule:Agent", "path/to/nosuchmodule.py:Agent"),
        ("no/such/file.py:Agent", "no file 'no/such/file.py'"),
        ("etpo_gym.agent:NoSuchThing", "etpo_gym.agent has no attribute 'NoSuchThing'"),
        ("etpo_gym.errors:ConfigError", "is not an agent"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, needle):
    with pytest.raises(ConfigError) as caught:
        load_agent(spec)
    assert needle in str(caught.value)


def test_an_import_error_inside_the_module_is_not_blamed_on_the_path(tmp_path, monkeypatch):
    (tmp_path / "broken_agent.py").write_text("import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"importing broken_agent failed.*no_such_dependency"):
        load_agent("broken_agent:Agent")


def test_file_specs_and_code_objects(tmp_path):
    path = tmp_path / "sub dir" / "my_file_agent.py"
    path.parent.mkdir()
    path.write_text(
        textwrap.dedent(
            """
            class FileAgent:
                name = "from-file"
                def act(self, observation, info):
                    return "model = None"

            def plain(observation, info):
                return "model = None"

            def factory():
                return FileAgent()

            instance = FileAgent()
            """
        )
    )
    assert load_agent(f"{path}:FileAgent").name == "from-file"
    assert load_agent(f"{path}:factory").name == "from-file"
    assert load_agent(f"{path}:instance").name == "from-file"
    assert load_agent(f"{path}:plain")("obs", {}) == "model = None"
    obj = load_agent(f"{path}:FileAgent")
    assert load_agent(obj) is obj  # objects pass through


def _fake_distribution(root: Path) -> None:
    """An installed third-party package as importlib.metadata sees one: a module and a
    .dist-info directory whose entry_points.txt registers an agent and a verb."""
    (root / "third_party_agents.py").write_text(
        textwrap.dedent(
            '''
            class EchoAgent:
                def __init__(self, body="model = None"):
                    self.name = f"echo:{body}"
                    self.body = body
                def act(self, observation, info):
                    return self.body

            def hello(argv):
                """say hello from a third-party package"""
                print("hello", *argv)
                return 0
            '''
        )
    )
    info = root / "third_party_agents-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: third-party-agents\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[etpo_gym.agents]\necho = third_party_agents:EchoAgent\n\n"
        "[etpo_gym.commands]\nhello = third_party_agents:hello\n"
    )


def test_a_third_party_package_registers_agents_and_verbs(tmp_path, monkeypatch):
    _fake_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registered_agents()["echo"].dist.name == "third-party-agents"
    assert load_agent("echo").name == "echo:model = None"
    assert load_agent("echo:x = 1").act("", {}) == "x = 1"

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    cli = [sys.executable, "-m", "etpo_gym"]
    out = subprocess.run([*cli, "hello", "a", "b"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout == "hello a b\n", out.stderr
    out = subprocess.run([*cli, "--help"], capture_output=True, text=True, env=env)
    assert "say hello from a third-party package (third-party-agents)" in out.stdout
    out = subprocess.run([*cli, "agents"], capture_output=True, text=True, env=env)
    assert "echo[:BODY]" in out.stdout and "[third-party-agents]" in out.stdout
