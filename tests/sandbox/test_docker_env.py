"""DataSci-v0 on the Docker backend: same scores as the local kernel, no label theft, parallel envs."""

from __future__ import annotations

import os
import time

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import etpo_gym  # noqa: F401 - registers the envs
from etpo_gym.sandbox.docker import list_resources
from etpo_gym.tasks.base import Dataset, Task

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_ready")]

# Uses the seeded global numpy RNG (random forest without random_state, a jitter): both backends
# must seed the kernel alike to agree to the last bit. Not the string hash (Docker's forked
# kernels share their pod's PYTHONHASHSEED) and not the global `random` after an import (a fresh
# interpreter's `import sklearn.ensemble` draws from it; a pod imported it before seeding).
SEEDED_BODY = """\
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.impute import SimpleImputer
import numpy as np
jitter = np.random.randint(1000) / 1e6
model = make_pipeline(SimpleImputer(), RandomForestClassifier(n_estimators=15, max_depth=4 + int(jitter > 5e-4)))
model.fit(np.asarray(x_train, dtype=float) + jitter, y_train)
"""

FRAME_BODY = """\
from sklearn.compose import make_column_transformer, make_column_selector
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder
prep = make_column_transformer(
    (make_pipeline(SimpleImputer(strategy="most_frequent"),
                   OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
     make_column_selector(dtype_include=object)),
    (SimpleImputer(), make_column_selector(dtype_exclude=object)),
)
model = make_pipeline(prep, HistGradientBoostingClassifier(max_iter=30)).fit(x_train, y_train)
"""


def _rewards(backend: str, seeds: tuple[int, ...], body: str, **kwargs) -> list[float]:
    env = gym.make("DataSci-v0", sandbox=backend, timeout=60.0, **kwargs)
    try:
        rewards = []
        for seed in seeds:
            env.reset(seed=seed)
            _, reward, terminated, _, info = env.step(body)
            assert terminated and info["status"] == "ok", (backend, info["error"])
            assert info["sandbox"] == backend
            rewards.append(reward)
        return rewards
    finally:
        env.close()


def test_docker_scores_exactly_like_the_local_kernel():
    seeds = (0, 1)
    docker = _rewards("docker", seeds, SEEDED_BODY, task="breast_cancer")
    local = _rewards("local", seeds, SEEDED_BODY, task="breast_cancer")
    assert docker == local  # bit for bit, not approximately
    assert docker[0] != docker[1]  # and the seed matters, so the equality is not vacuous


def _frame_task(n: int = 300) -> Task:
    """Mixed columns with missing values: the kernel gets a pandas DataFrame."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "age": np.where(rng.random(n) < 0.1, np.nan, rng.normal(40, 12, n)),
            "city": rng.choice(["oslo", "lima", "pune", None], size=n),
            "spend": rng.exponential(100, n),
        }
    )
    logit = 0.05 * (frame["age"].fillna(40) - 40) + (frame["city"] == "lima") - 0.3
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    data = Dataset(X=frame, y=y, feature_names=list(frame.columns), class_names=["no", "yes"])
    return Task(
        name="mixed_frame",
        description="Mixed numeric and string columns with gaps.",
        task_type="binary",
        metric="roc_auc",
        loader=lambda: data,
        source="synthetic",
    )


def test_docker_scores_a_dataframe_task_like_the_local_kernel():
    task = _frame_task()
    assert task.data.is_frame
    assert _rewards("docker", (3,), FRAME_BODY, task=task) == _rewards(
        "local", (3,), FRAME_BODY, task=task
    )


def _random_label_task(n: int = 400) -> Task:
    """Labels independent of the features: an honest model scores about 0.5, a thief 1.0."""
    rng = np.random.default_rng(123)
    data = Dataset(
        X=rng.normal(size=(n, 4)),
        y=rng.integers(0, 2, size=n).astype(np.int64),
        feature_names=["a", "b", "c", "d"],
        class_names=["no", "yes"],
    )
    return Task(
        name="random_labels",
        description="Labels are coin flips.",
        task_type="binary",
        metric="roc_auc",
        loader=lambda: data,
        source="synthetic",
    )


THEFT_PROBE = """\
import os, pickle, numpy as np
n_eval = len(np.load(os.path.join(os.environ["ETPO_DATA_DIR"], "x_eval.npy")))
candidates = []
def consider(value, where):
    try:
        arr = np.asarray(value).reshape(-1)
    except Exception:
        return
    if arr.size == n_eval and set(np.unique(arr).tolist()) <= {0, 1}:
        candidates.append((where, arr.astype(float)))
skip = ("/proc", "/sys", "/usr", "/opt", "/dev")
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if not os.path.join(root, d).startswith(skip)]
    for name in files:
        path = os.path.join(root, name)
        try:
            if name.endswith(".npy"):
                consider(np.load(path, allow_pickle=False), path)
            elif name.endswith(".pkl"):
                consider(pickle.load(open(path, "rb")), path)
        except Exception:
            pass
for pid in os.listdir("/proc"):  # other processes' environments and command lines
    for part in ("environ", "cmdline"):
        try:
            text = open(f"/proc/{pid}/{part}", "rb").read()
        except OSError:
            continue
        if b"y_eval" in text or b"labels" in text:
            candidates.append((f"/proc/{pid}/{part}", None))
for name, value in list(globals().items()):
    consider(value, "globals:" + name)
print("CANDIDATES", [where for where, _ in candidates])
found = [arr for _, arr in candidates if arr is not None]

class Thief:
    def fit(self, x, y):
        return self
    def predict_proba(self, x):
        p = found[0] if found else np.full(len(x), 0.5)
        return np.column_stack([1 - p, p])

model = Thief()
"""


def test_the_label_theft_probe_finds_nothing():
    env = gym.make("DataSci-v0", task=_random_label_task(), sandbox="docker", timeout=60.0)
    try:
        env.reset(seed=5)
        _, reward, terminated, _, info = env.step(THEFT_PROBE)
        assert terminated and info["status"] == "ok", info["error"]
        assert "CANDIDATES []" in info["stdout"]
        assert reward == pytest.approx(0.5)  # constant predictions: nothing was stolen
        env.reset(seed=5)
        _, honest, *_ = env.step(
            "from sklearn.linear_model import LogisticRegression\n"
            "model = LogisticRegression().fit(x_train, y_train)\n"
        )
        assert abs(honest - 0.5) < 0.2  # coin-flip labels: an honest model cannot do well
    finally:
        env.close()


SLOW_BODY = """\
import time
time.sleep(4.0)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x_train, y_train)
"""


def test_two_async_envs_run_in_parallel_and_close_cleanly():
    envs = gym.make_vec(
        "DataSci-v0",
        num_envs=2,
        vectorization_mode="async",
        task="breast_cancer",
        sandbox="docker",
        timeout=60.0,
    )
    try:
        envs.reset(seed=[1, 2])
        envs.step(["model = None", "model = None"])  # warm both kernels (a failing step)
        start = time.monotonic()
        _, rewards, terminated, _, _ = envs.step([SLOW_BODY, SLOW_BODY])
        elapsed = time.monotonic() - start
        assert terminated.all() and (rewards > 0.9).all()
        # Each step sleeps 4 s (no CPU needed, so a busy machine does not blur the picture): in
        # parallel both finish in a little over 4 s, in series it would take over 8.
        assert elapsed < 6.5, elapsed
    finally:
        envs.close()
    assert not list_resources(parent_pid=os.getpid())
