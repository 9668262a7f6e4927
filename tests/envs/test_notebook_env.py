"""DataSciNotebook-v0 end to end on real kernels: explore, submit, budgets, restarts, recording,
and no label in the kernel over a whole episode."""

from __future__ import annotations

import json
import os

import gymnasium as gym
import nbformat
import numpy as np
import pytest

import etpo_gym
from etpo_gym.envs.datasci_notebook import TRACEBACK_LINES, DataSciNotebookEnv, parse_cell
from etpo_gym.errors import ConfigError
from etpo_gym.tasks.base import Dataset, Task, holdout_split

PIPELINE_CELL = """\
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

def pipeline():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
"""
SUBMISSION = "%%submit\nmodel = pipeline().fit(x_train, y_train)\n"


@pytest.fixture
def make_env(backend, open_env):
    def factory(env_id="DataSciNotebook-v0", **kwargs):
        return open_env(env_id, **{"sandbox": backend, "timeout": 60.0, **kwargs})

    return factory


def test_explore_then_submit_is_scored_exactly_as_datasci(make_env):
    env = make_env(task="breast_cancer")
    obs, info = env.reset(seed=7)
    assert "%%submit" in obs and "(398, 30)" in obs and "171 evaluation rows" in obs
    assert info["schema"]["rows"] == {"train": 398, "eval": 171}
    assert info["cells_left"] == 20 and info["submissions_left"] == 3

    obs, reward, terminated, truncated, info = env.step("x_train.shape")
    assert obs == "(398, 30)\n" and reward == 0.0 and info["kind"] == "cell"
    assert info["status"] == "ok" and not (terminated or truncated)
    obs, reward, *_ = env.step("counts = np.bincount(y_train)\nprint(x_eval.shape, counts.sum())")
    assert obs == "(171, 30) 398\n" and reward == 0.0
    obs, reward, terminated, _, info = env.step(PIPELINE_CELL)  # a helper for the submission
    assert obs == "(no output)" and info["cells_left"] == 17
    obs, reward, terminated, truncated, info = env.step(SUBMISSION)
    assert info["status"] == "ok" and info["kind"] == "submission", info["error"]
    assert terminated and not truncated and "Submission scored: roc_auc" in obs

    # the same model as a DataSci-v0 action on the same seed: the very same reward
    reference = make_env("DataSci-v0", task="breast_cancer")
    reference.reset(seed=7)
    body = PIPELINE_CELL + "model = pipeline().fit(x_train, y_train)\n"
    _, expected, *_ = reference.step(body)
    assert reward == expected and info["score"] == expected and 0.9 < reward <= 1.0


def test_cells_show_what_a_person_would_see_capped(make_env):
    env = make_env(task="wine", timeout=3.0, max_output_chars=1000)
    env.reset(seed=0)
    assert env.step("a = 41")[0] == "(no output)"
    assert env.step("a + 1")[0] == "42\n"
    obs, reward, _, _, info = env.step("print('x' * 20000)")
    assert "[output truncated: " in obs and len(obs) <= 1000 + 100 and info["status"] == "ok"
    obs, reward, terminated, _, info = env.step("def f():\n    return 1 / 0\nf()")
    assert info["status"] == "error" and reward == 0.0 and not terminated
    assert obs.rstrip().endswith("ZeroDivisionError: division by zero")
    assert len(obs.strip().splitlines()) <= TRACEBACK_LINES + 1
    obs, reward, _, _, info = env.step("import time\ntime.sleep(30)")
    assert info["status"] == "timeout" and "TimeoutError" in obs and reward == 0.0
    obs, *_ = env.step("a")  # the kernel survived the interrupt
    assert obs == "41\n"


def test_budgets_end_the_episode_with_the_error_reward(make_env):
    env = make_env(task="breast_cancer", max_steps=2)
    env.reset(seed=0)
    _, reward, _, truncated, info = env.step("1")
    assert not truncated and info["cells_left"] == 1
    obs, reward, terminated, truncated, info = env.step("2")
    assert truncated and not terminated and reward == -1.0 and "All 2 cells are used" in obs

    env = make_env(task="breast_cancer", max_submissions=1, max_kernel_seconds=1.0)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("%%submit\nraise ValueError('nope')")
    assert info["status"] == "error" and reward == -1.0 and truncated and not terminated
    assert "ValueError: nope" in obs and "All 1 submissions are used" in obs
    env.reset(seed=0)
    obs, reward, _, truncated, info = env.step("import time\ntime.sleep(1.5)")
    assert truncated and reward == -1.0 and "kernel time are used" in obs
    assert info["kernel_seconds_left"] == 0.0


def test_after_a_kernel_death_the_data_is_loaded_again(make_env):
    env = make_env(task="breast_cancer", memory_limit=2 * 2**30)
    env.reset(seed=0)
    env.step("keep = 1")
    obs, reward, terminated, _, info = env.step("import numpy as np\nb = np.ones(2**34, np.uint8)")
    assert info["status"] == "oom" and info["state_lost"] and reward == 0.0 and not terminated
    assert "kernel was restarted" in obs
    obs, _, _, _, info = env.step("print('keep' in globals(), x_train.shape, len(y_train))")
    assert obs == "False (398, 30) 398\n" and not info["state_lost"]
    _, reward, terminated, _, _ = env.step(PIPELINE_CELL + "\n" + "x = 1")
    _, reward, terminated, _, info = env.step(SUBMISSION)
    assert terminated and reward > 0.9, info["error"]


def test_recorded_notebook_reruns_top_to_bottom(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.chdir(tmp_path)  # a relative record_dir, as from the command line
    env = gym.make("DataSciNotebook-v0", task="skill_missing", sandbox="local", record_dir="nb")
    try:
        env.reset(seed=3)
        env.step("print(x_train.shape)")
        env.step("x_train.isna().sum().sum() + not_defined")  # tagged: a re-run goes past it
        env.step("%%submit\nraise ValueError('not yet')")
        body = (
            "from sklearn.ensemble import HistGradientBoostingClassifier\n"
            "model = HistGradientBoostingClassifier(random_state=0).fit(x_train, y_train)\n"
        )
        *_, info = env.step("%%submit\n" + body)
    finally:
        env.close()
    path = info["notebook"]
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    kinds = [cell.cell_type for cell in nb.cells]
    assert kinds == ["markdown", "code", "code", "code", "code", "markdown", "code", "markdown"]
    assert "Reward" in nb.cells[-1].source and "roc_auc" in nb.cells[-1].source

    folder = tmp_path / "nb"
    data_dir = folder / (os.path.basename(path)[: -len(".ipynb")] + "_data")
    assert sorted(os.listdir(data_dir)) == ["x_eval.pkl", "x_train.pkl", "y_train.npy"]
    task = etpo_gym.get_task("skill_missing")
    train_idx, _ = holdout_split(task.data.y, 3, 0.3)
    assert np.array_equal(np.load(data_dir / "y_train.npy"), task.data.y[train_idx])

    # a person's re-run: a plain kernel in the notebook's folder, no sandbox, no ETPO_DATA_DIR
    os.environ.pop("ETPO_DATA_DIR", None)
    rerun = nbformat.read(path, as_version=4)
    NotebookClient(rerun, timeout=120, resources={"metadata": {"path": str(folder)}}).execute()
    outputs = [cell.get("outputs", []) for cell in rerun.cells if cell.cell_type == "code"]
    assert outputs[1][0]["text"] == nb.cells[2].outputs[0]["text"]  # the same shape printed
    assert outputs[2][0]["output_type"] == "error"  # the tagged error cell, passed over
    assert not any(out["output_type"] == "error" for out in outputs[-1])  # the model fits


def test_bad_arguments_and_actions():
    with pytest.raises(ConfigError, match="protocol='etpo'"):
        DataSciNotebookEnv(protocol="etpo", sandbox="local")
    with pytest.raises(ConfigError, match="max_submissions=0"):
        DataSciNotebookEnv(max_submissions=0, sandbox="local")
    assert parse_cell("x = 1") == (False, "x = 1")
    assert parse_cell("```python\nprint(1)\n```") == (False, "print(1)\n")
    for action in (
        "%%submit\nmodel = 1",
        "```python\n%%submit\nmodel = 1\n```",
        "  %%submit\nmodel = 1",
    ):
        submission, code = parse_cell(action)
        assert submission and code.startswith("def build_model(x_train, y_train):\n    model = 1")


def _noisy_task() -> Task:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = ((X[:, 0] + 2.0 * rng.normal(size=400)) > 0).astype(np.int64)
    data = Dataset(X=X, y=y, feature_names=[f"f{i}" for i in range(5)], class_names=["0", "1"])
    return Task(
        name="noisy_probe",
        description="Noisy synthetic labels.",
        task_type="binary",
        metric="roc_auc",
        source="synthetic",
        loader=lambda: data,
    )


# A whole episode of cells, each looking somewhere else for the evaluation labels; every find is
# kept in `found`, and the last submission predicts with it.
THEFT_CELLS = [
    """\
import gc, json, os, re, sys
n_eval = len(x_eval)
found, report = [], {}
def looks_like_labels(value):
    try:
        arr = np.asarray(value)
        return arr.shape == (n_eval,) and arr.dtype.kind in "biuf" and set(np.unique(arr)) <= {0, 1}
    except Exception:
        return False
report["data_files"] = sorted(os.listdir(os.environ["ETPO_DATA_DIR"]))
print(report["data_files"])
""",
    """\
seen = 0
bases = {os.environ["ETPO_DATA_DIR"], os.path.dirname(os.environ["ETPO_DATA_DIR"]),
         os.environ.get("ETPO_OUT_DIR", ""), os.path.expanduser("~"), "/tmp", os.getcwd()} - {"/", ""}
for base in bases:
    for root, _dirs, files in os.walk(base):
        for name in files:
            if seen >= 3000:
                break
            seen += 1
            path = os.path.join(root, name)
            try:
                value = np.load(path, allow_pickle=False) if name.endswith(".npy") else pd.read_pickle(path)
            except Exception:
                continue
            if looks_like_labels(value) and "y_train" not in name:
                found.append(np.asarray(value))
report["files_seen"] = seen
print(seen, len(found))
""",
    """\
report["env_hits"] = [k for k, v in os.environ.items() if re.fullmatch(r"[01,\\s]{%d,}" % n_eval, v)]
report["global_hits"] = [k for k, v in list(globals().items()) if looks_like_labels(v)]
print(report["env_hits"], report["global_hits"])
""",
    """\
hits = [o for o in gc.get_objects() if isinstance(o, (list, tuple)) and looks_like_labels(o)]
arrays = [o for o in gc.get_objects() if isinstance(o, np.ndarray) and looks_like_labels(o)]
report["gc_hits"] = len(hits) + len(arrays)
found += [np.asarray(o) for o in hits + arrays]
print(report["gc_hits"])
""",
    """\
mem = {}
pid = os.getppid()
while pid > 1:
    try:
        with open(f"/proc/{pid}/mem", "rb") as fh:
            fh.read(1)
        mem[pid] = "readable"
    except OSError as exc:
        mem[pid] = type(exc).__name__
    try:
        pid = int(open(f"/proc/{pid}/stat").read().split(")")[1].split()[1])
    except OSError:
        break
report["parent_mem"] = mem
print(mem)
""",
    # a failed submission: whatever the host's driver leaves behind is looked for next
    "%%submit\nraise RuntimeError('look around after the driver ran')",
    """\
for name in list(globals()):
    if looks_like_labels(globals()[name]):
        found.append(np.asarray(globals()[name]))
out_dir = os.environ.get("ETPO_OUT_DIR", "")
report["out_files"] = sorted(os.listdir(out_dir)) if out_dir and os.path.isdir(out_dir) else []
arrays = [o for o in gc.get_objects() if isinstance(o, np.ndarray) and looks_like_labels(o)]
found += arrays
print("PROBE", json.dumps(report, default=str))
""",
    """\
%%submit
guess = found[0].astype(float) if found else np.random.default_rng(0).random(len(x_eval))

class Cheat:
    def predict_proba(self, x):
        return np.column_stack([1 - guess, guess])

model = Cheat()
""",
]


def test_labels_never_enter_the_kernel_over_a_whole_episode(make_env):
    task = _noisy_task()
    env = make_env(task=task, max_steps=len(THEFT_CELLS) + 2)
    env.reset(seed=0)
    outputs = []
    for cell in THEFT_CELLS:
        obs, reward, terminated, _truncated, info = env.step(cell)
        outputs.append(obs)
        assert info["status"] in ("ok", "error"), (cell[:40], obs)
    assert terminated, outputs[-1]
    assert json.loads(outputs[0].strip().replace("'", '"')) in (
        ["x_eval.npy", "x_train.npy", "y_train.npy"],
    )
    report = json.loads(outputs[6].split("PROBE", 1)[1].strip())
    assert report["env_hits"] == [] and report["global_hits"] == []
    assert report["gc_hits"] == 0 and report["files_seen"] > 0
    readable = [pid for pid, state in report["parent_mem"].items() if state == "readable"]
    assert str(os.getpid()) not in readable  # the process holding the labels is unreadable
    assert reward < 0.75, f"the probe scored {reward}: labels leaked ({report})"


@pytest.mark.docker
def test_check_env_passes_on_docker(docker_ready):
    from gymnasium.utils.env_checker import check_env

    # local: test_datasci_env.py checks every registered id; the chat and tool-call variants:
    # test_chat_tools.py (backend-independent)
    env = gym.make("DataSciNotebook-v0", task="wine", sandbox="docker", timeout=20.0)
    try:
        check_env(env.unwrapped, skip_render_check=False)
    finally:
        env.close()
