"""DataSci-v0 end to end, against every sandbox backend (real kernels)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import gymnasium as gym
import nbformat
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import etpo_gym
from etpo_gym.envs.datasci import DataSciEnv
from etpo_gym.errors import ConfigError
from etpo_gym.tasks.base import Dataset, Task, holdout_split

LOGREG_BODY = """\
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
model.fit(x_train, y_train)
"""

CONSTANT_DEF = """\
class Constant:
    def fit(self, x, y):
        return self
    def predict_proba(self, x):
        import numpy as np
        return np.tile([0.5, 0.5], (len(x), 1))

def build_model(x_train, y_train):
    return Constant()
"""


@pytest.fixture
def make_env(backend, open_env):
    def factory(**kwargs):
        return open_env("DataSci-v0", **{"sandbox": backend, "timeout": 20.0, **kwargs})

    return factory


def test_correct_body_scores_exactly_like_sklearn(make_env):
    env = make_env(task="breast_cancer")
    obs, info = env.reset(seed=7)
    assert "<FILL_ME>" in obs and "breast_cancer" in obs
    obs, reward, terminated, truncated, info = env.step(LOGREG_BODY)
    assert info["status"] == "ok", info["error"]
    assert terminated and not truncated

    data = etpo_gym.get_task("breast_cancer").data
    train, evaluation = holdout_split(data.y, 7, 0.3)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(data.X[train], data.y[train])
    expected = roc_auc_score(data.y[evaluation], model.predict_proba(data.X[evaluation])[:, 1])
    assert reward == pytest.approx(expected, abs=1e-12)
    assert info["score"] == reward and info["metric"] == "roc_auc"


def test_constant_predictor_scores_one_half(make_env):
    env = make_env(task="breast_cancer")
    env.reset(seed=0)
    _, reward, _terminated, _, info = env.step(CONSTANT_DEF)
    assert info["status"] == "ok"
    assert reward == pytest.approx(0.5)


FAILURES = {
    "syntax": ("model = (", "error", "SyntaxError"),
    "exception": ("raise RuntimeError('boom 42')", "error", "RuntimeError: boom 42"),
    "no model": ("x = 1", "error", "NameError"),
    "no predict_proba": (
        "from sklearn.svm import LinearSVC\nmodel = LinearSVC().fit(x_train, y_train)",
        "error",
        "predict_proba",
    ),
    "wrong shape": (
        "import numpy as np\n"
        "class M:\n"
        "    def predict_proba(self, x):\n"
        "        return np.ones((len(x) + 1, 2)) / 2\n"
        "model = M()",
        "error",
        "shape",
    ),
    "nan": (
        "import numpy as np\n"
        "class M:\n"
        "    def predict_proba(self, x):\n"
        "        return np.full((len(x), 2), np.nan)\n"
        "model = M()",
        "error",
        "NaN",
    ),
    "out of range": (
        "import numpy as np\n"
        "class M:\n"
        "    def predict_proba(self, x):\n"
        "        return np.full((len(x), 2), 2.0)\n"
        "model = M()",
        "error",
        "[0, 1]",
    ),
    "timeout": ("import time\ntime.sleep(600)", "timeout", "TimeoutError"),
    "kernel death": ("import os\nos._exit(1)", "killed", "KernelDied"),
    "oom": ("import numpy as np\nblob = np.ones(2**34, dtype=np.uint8)", "oom", "MemoryError"),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_each_failure_kind_is_reported_and_the_next_step_works(make_env, kind):
    code, status, needle = FAILURES[kind]
    # The timeout leaves the honest follow-up step ample time on a loaded machine.
    env = make_env(task="breast_cancer", timeout=20.0, memory_limit=2 * 2**30)
    env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step(code)
    assert info["status"] == status, info
    assert reward == -1.0
    assert not terminated and not truncated
    assert info["infra_error"] is False
    assert needle in info["error"] or needle in obs
    assert "Your previous code:" in obs and code.splitlines()[0] in obs
    assert obs.rstrip().endswith("return model")
    obs, reward, terminated, truncated, info = env.step(LOGREG_BODY)
    assert info["status"] == "ok", info["error"]
    assert terminated and reward > 0.9


def test_fenced_full_def_and_body_forms_agree(make_env):
    env = make_env(task="wine")
    rewards = []
    indented = textwrap.indent(LOGREG_BODY, "    ")
    forms = [
        LOGREG_BODY,
        "```python\n" + LOGREG_BODY + "```",
        "Here you go:\n```python\ndef build_model(x_train, y_train):\n"
        + indented
        + "    return model\n```\nDone.",
        indented,
    ]
    for action in forms:
        env.reset(seed=3)
        _, reward, _terminated, _, info = env.step(action)
        assert info["status"] == "ok", (action, info["error"])
        rewards.append(reward)
    assert len(set(rewards)) == 1 and rewards[0] > 0.9  # multiclass one-vs-one AUC


def test_same_seed_same_prompt_split_and_score_other_seed_differs(make_env):
    env = make_env(task="breast_cancer")
    results = []
    for seed in (5, 5, 6):
        obs, _ = env.reset(seed=seed)
        _, reward, *_ = env.step(LOGREG_BODY)
        results.append((obs, reward))
    assert results[0] == results[1]
    assert results[0][1] != results[2][1]


def test_max_steps_truncates(make_env):
    env = make_env(task="breast_cancer", max_steps=2)
    env.reset(seed=0)
    assert env.step("raise ValueError")[3] is False
    _, _, terminated, truncated, info = env.step("raise ValueError")
    assert truncated and not terminated and info["step"] == 2
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.step(LOGREG_BODY)


def test_info_contract(make_env):
    env = make_env(task="breast_cancer")
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step("print('hello from the agent')\n" + LOGREG_BODY)
    for key in (
        "score",
        "metric",
        "status",
        "error",
        "elapsed_s",
        "stdout",
        "step",
        "task",
        "infra_error",
    ):
        assert key in info
    assert "hello from the agent" in info["stdout"]
    assert info["elapsed_s"] > 0 and info["step"] == 1 and info["task"] == "breast_cancer"
    assert "def build_model" in info["code"]


def test_paper_protocol_averages_five_splits(make_env):
    env = make_env(task="breast_cancer", protocol="etpo")
    env.reset(seed=0)
    _, reward, _terminated, _, info = env.step(LOGREG_BODY)
    assert info["status"] == "ok", info["error"]
    assert len(info["scores"]) == 5 and len(set(info["scores"])) > 1
    assert reward == pytest.approx(np.mean(info["scores"]))
    assert info["score_std"] == pytest.approx(np.std(info["scores"]))


def test_notebook_recording_validates(make_env, tmp_path):
    env = make_env(task="breast_cancer", record_dir=str(tmp_path))
    env.reset(seed=0)
    env.step("raise ValueError('first try')")
    *_, info = env.step("print('second')\n" + LOGREG_BODY)
    path = info["notebook"]
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    kinds = [cell.cell_type for cell in nb.cells]
    assert kinds == ["markdown", "code", "markdown", "code", "markdown"]
    assert nb.cells[1].outputs[0]["output_type"] == "error"
    assert any("second" in out.get("text", "") for out in nb.cells[3].outputs)
    assert "Reward" in nb.cells[4].source


def test_render_ansi(make_env):
    env = make_env(task="breast_cancer", render_mode="ansi")
    env.reset(seed=0)
    env.step("raise KeyError('k')")
    text = env.render()
    assert "status=error" in text and "KeyError" in text


NOISY = Task(
    name="noisy_probe",
    description="Noisy synthetic labels.",
    task_type="binary",
    metric="roc_auc",
    source="synthetic",
    loader=lambda: _noisy_dataset(),
)


def _noisy_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = ((X[:, 0] + 2.0 * rng.normal(size=400)) > 0).astype(np.int64)
    return Dataset(X=X, y=y, feature_names=[f"f{i}" for i in range(5)], class_names=["0", "1"])


THEFT_PROBE = r"""
import os, re, sys
import numpy as np

n_eval = len(np.load(os.path.join(os.environ["ETPO_DATA_DIR"], "x_eval.npy")))
found, report = [], {}

# 1. files: every .npy the kernel can see under the usual places
seen = 0
data_dir = os.environ["ETPO_DATA_DIR"]
bases = {data_dir, os.path.dirname(data_dir), os.path.expanduser("~"), "/tmp", os.getcwd()} - {"/"}
for base in bases:
    # os.walk does not follow symlinks: other programs' files in a shared /tmp may loop
    for root, _dirs, files in os.walk(base):
        for name in files:
            if not name.endswith(".npy") or seen >= 2000:
                continue
            path = os.path.join(root, name)
            seen += 1
            try:
                arr = np.load(path, allow_pickle=False)
            except Exception:
                continue
            if arr.shape == (n_eval,) and set(np.unique(arr)) <= {0, 1} and "y_train" not in path:
                found.append(arr)
report["npy_files_seen"] = seen
# 2. environment
report["env_hits"] = [k for k, v in os.environ.items() if re.fullmatch(r"[01,\s]{%d,}" % n_eval, v)]
# 3. the kernel's globals
report["global_hits"] = [k for k, v in list(globals().items())
                         if isinstance(v, np.ndarray) and v.shape == (n_eval,) and k != "arr"]
# 4. memory of the parent processes
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
print("PROBE", __import__("json").dumps(report))

guess = found[0].astype(float) if found else np.random.default_rng(0).random(n_eval)

class Cheat:
    def predict_proba(self, x):
        return np.column_stack([1 - guess, guess])

model = Cheat()
"""


def test_code_cannot_obtain_the_evaluation_labels(make_env):
    env = make_env(task=NOISY, timeout=60.0)
    env.reset(seed=0)
    _, honest, *_ = env.step(LOGREG_BODY)
    assert honest < 0.85  # the task really is noisy
    env.reset(seed=0)
    _, reward, _, _, info = env.step(THEFT_PROBE)
    assert info["status"] == "ok", info["error"]
    report = json.loads(info["stdout"].split("PROBE", 1)[1].strip().splitlines()[0])
    assert report["env_hits"] == [] and report["global_hits"] == []
    owner_readable = [pid for pid, state in report["parent_mem"].items() if state == "readable"]
    # the process that holds the labels (this one, or the container's host side) is unreadable
    assert str(__import__("os").getpid()) not in owner_readable
    assert reward < 0.75, f"the probe scored {reward}: labels leaked ({report})"


def test_check_env_passes_for_every_registered_id(backend):
    from gymnasium.utils.env_checker import check_env

    # The ids differ in prompt and protocol, not in backend: every id on the local kernel, the
    # default id on the others (it is the slowest test: check_env resets many times).
    ids = etpo_gym.ENV_IDS if backend == "local" else ("DataSci-v0",)
    for env_id in ids:
        env = gym.make(env_id, task="breast_cancer", sandbox=backend, timeout=20.0)
        try:
            check_env(env.unwrapped, skip_render_check=False)
        finally:
            env.close()


def test_async_vector_env_runs_and_closes(backend):
    import glob
    import os
    import tempfile

    envs = gym.make_vec(
        "DataSci-v0", num_envs=2, vectorization_mode="async", task="breast_cancer", sandbox=backend
    )
    workers = [process.pid for process in envs.unwrapped.processes]
    try:
        obs, _ = envs.reset(seed=[0, 1])
        assert len(obs) == 2
        obs, rewards, terminated, _truncated, _infos = envs.step(
            [LOGREG_BODY, "raise ValueError('x')"]
        )
        assert rewards[0] > 0.9 and rewards[1] == -1.0
        assert list(terminated) == [True, False]
    finally:
        envs.close()
    # Only the directories of this env's own workers: other programs may run sandboxes too.
    left = [
        path
        for pid in workers
        for path in glob.glob(os.path.join(tempfile.gettempdir(), f"etpo-gym-local-{pid}-*"))
    ]
    assert not left, f"vector env left sandbox directories: {left}"


def test_close_twice_and_step_after_close(make_env):
    env = make_env(task="breast_cancer")
    env.reset(seed=0)
    env.close()
    env.close()
    with pytest.raises(gym.error.ClosedEnvironmentError):
        env.unwrapped.step(LOGREG_BODY)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"protocol": "cv"}, "protocol='cv'"),
        ({"max_steps": 0}, "max_steps=0"),
        ({"prompt_style": "fancy"}, "prompt_style='fancy'"),
        ({"render_mode": "human"}, "render_mode='human'"),
    ],
)
def test_bad_arguments_are_named(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        DataSciEnv(task="breast_cancer", sandbox="local", **kwargs)


def test_registered_without_prior_import():
    code = "import gymnasium as gym; env = gym.make('etpo_gym:DataSci-v0', sandbox='local'); print(env.spec.id); env.close()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("DataSci-v0")
