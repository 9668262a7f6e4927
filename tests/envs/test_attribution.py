"""Who is blamed for what (the contract's attribution table), through ``env.step`` on real kernels.

Everything a kernel writes or sends is the agent's: crafted prediction files, non-finite metrics,
forged messages are ``error`` steps with ``error_reward``, and the episode goes on. Only the host's
own facts make an ``infra_error``, after one retry. No exception escapes ``reset``/``step``.
"""

from __future__ import annotations

import numpy as np
import pytest

import etpo_gym  # noqa: F401 - registers the envs
from etpo_gym.envs.datasci import DataSciEnv
from etpo_gym.errors import KernelStartError
from etpo_gym.sandbox.kernel import KernelSandbox
from etpo_gym.sandbox.local import LocalBackend, LocalProvisioner, LocalSandbox
from etpo_gym.tasks.base import Dataset, Task, holdout_split

HONEST = """\
from sklearn.linear_model import LogisticRegression
model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
"""

# Replaces the driver's np.save for one call, so the file it leaves is whatever the body writes.
CRAFT = """\
import io as _io, os as _os, pickle as _pickle, numpy as _np
_real_save = _np.save
def _craft(target, pred, *args, **kwargs):
    _np.save = _real_save  # one shot: the next step is honest again
{body}
_np.save = _craft
from sklearn.dummy import DummyClassifier
model = DummyClassifier().fit(x_train, y_train)
"""

CRAFTED = {
    "zip as pred.npy": "buf = _io.BytesIO(); _np.savez(buf, pred=pred); open(target, 'wb').write(buf.getvalue())",
    "header declaring 1e11 values": (
        "f = open(target, 'wb'); _np.lib.format.write_array_header_1_0(f, {'descr': '<f8', "
        "'fortran_order': False, 'shape': (10**11,)}); f.close()"
    ),
    "fifo": "_os.mkfifo(target)",
    "symlink": "_os.symlink('/etc/hostname', target)",
    "directory": "_os.mkdir(target)",
    "big-endian": "_real_save(target, pred.astype('>f8'))",
    "structured": "_real_save(target, _np.zeros(len(pred), dtype=[('a', '<f8')]))",
    "object": "_real_save(target, _np.array([None] * len(pred), dtype=object), allow_pickle=True)",
    "pickle": "_pickle.dump(pred.tolist(), open(target, 'wb'))",
    "wrong shape": "_real_save(target, pred[:-1])",
    "no file": "pass",
}

FORGED_IOPUB = """\
import hmac, hashlib
k = get_ipython().kernel
parts = [k.session.pack(k.session.msg_header("stream")),
         k.session.pack(k.get_parent("shell")["header"]), b"{}",
         k.session.pack({"name": "stdout", "text": "forged"})]
k.iopub_socket.send_multipart([b"<IDS|MSG>", b"0" * 64, *parts])
model = None
"""


def _body(code: str) -> str:
    return "\n".join("    " + line for line in code.splitlines())


@pytest.fixture
def make_env(backend, open_env):
    def factory(**kwargs):
        return open_env("DataSci-v0", **{"sandbox": backend, "timeout": 60.0, **kwargs})

    return factory


def test_crafted_prediction_files_and_forged_messages_are_the_agents_errors(make_env, backend):
    env = make_env(task="breast_cancer", max_steps=len(CRAFTED) + 3)
    _, info = env.reset(seed=0)
    expected = {"local": ("namespaces", "none"), "docker": ("container",)}[backend]
    assert info["isolation"] in expected and info["isolation"] == env.unwrapped.sandbox.isolation
    for kind, body in CRAFTED.items():
        _, reward, terminated, truncated, info = env.step(CRAFT.format(body=_body(body)))
        assert info["status"] == "error", (kind, info["error"])
        needle = "NoPredictions" if kind == "no file" else "InvalidPredictions"
        assert info["error"].startswith(needle), (kind, info["error"])
        assert reward == -1.0 and not info["infra_error"] and not info["state_lost"]
        assert not (terminated or truncated)
    _, reward, terminated, _, info = env.step(FORGED_IOPUB)
    assert info["status"] == "error" and info["error"].startswith("KernelProtocolError:")
    assert reward == -1.0 and not terminated and not info["infra_error"]
    assert info["state_lost"] and "forged" not in info["stdout"]
    _, reward, terminated, _, info = env.step(HONEST)
    assert info["status"] == "ok" and terminated and reward > 0.9, info["error"]


def test_regression_scores_are_finite_and_never_below_the_error_reward(make_env):
    env = make_env(task="diabetes", error_reward=-1.0)
    env.reset(seed=0)
    huge = "class M:\n    def predict(self, x):\n        return [{}] * len(x)\nmodel = M()"
    _, reward, terminated, _, info = env.step(huge.format("1e200"))
    assert info["status"] == "error" and "r2 of these predictions is not finite" in info["error"]
    assert reward == -1.0 and not terminated
    _, reward, terminated, _, info = env.step(huge.format("1e6"))
    assert info["status"] == "ok" and terminated
    assert reward == -1.0 and info["score"] < -1e6  # R² far below: floored at error_reward


def test_after_an_oom_the_kernel_is_fresh_and_the_observation_says_so(make_env):
    env = make_env(task="breast_cancer", memory_limit=2 * 2**30)
    env.reset(seed=0)
    _, _, _, _, info = env.step("marker = 1\nraise ValueError('keep going')")
    assert info["status"] == "error" and not info["state_lost"]
    obs, reward, _, _, info = env.step("import numpy as np\nblob = np.ones(2**34, dtype=np.uint8)")
    assert info["status"] == "oom" and reward == -1.0 and info["state_lost"]
    assert "kernel was restarted" in obs
    check = "if 'marker' in globals() or 'blob' in globals():\n    raise RuntimeError('state')\n"
    _, reward, terminated, _, info = env.step(check + HONEST)
    assert info["status"] == "ok" and terminated, info["error"]


def _coin_flips(n: int = 160) -> Task:
    rng = np.random.default_rng(11)
    data = Dataset(
        X=rng.normal(size=(n, 3)),
        y=rng.integers(0, 2, size=n).astype(np.int64),
        feature_names=["a", "b", "c"],
        class_names=["no", "yes"],
    )
    return Task(
        name="coin_flips",
        description="Labels are coin flips.",
        task_type="binary",
        metric="roc_auc",
        loader=lambda: data,
        source="synthetic",
    )


# Remembers every training label it sees, in the kernel and in every writable place it knows,
# and predicts a remembered label where it has one: only carried-over labels can beat 0.5.
STASH = """\
import json, os, numpy as np
places = ["stash.json", os.path.join(os.environ["HOME"], "stash.json"),
          os.path.join(os.environ["TMPDIR"], "stash.json")] + {extra}
known = dict(globals().get("_stash", {{}}))
for place in places:
    try:
        known.update(json.load(open(place)))
    except Exception:
        pass
for row, label in zip(np.asarray(x_train), np.asarray(y_train)):
    known[repr(np.round(row, 9).tolist())] = int(label)
globals()["_stash"] = known
for place in places:
    try:
        json.dump(known, open(place, "w"))
    except Exception:
        pass

class Recall:
    def predict_proba(self, x):
        p = np.array([known.get(repr(np.round(r, 9).tolist()), 0.5) for r in np.asarray(x)])
        return np.column_stack([1 - p, p])

model = Recall()
if {fail_first!r} and np.isclose(np.asarray(x_train), {second_split_row!r}).all(axis=1).any():
    raise RuntimeError("stop after the second split, leaving the labels behind")
"""


def test_paper_protocol_no_label_carries_from_one_split_or_step_to_another(make_env, backend):
    task = _coin_flips()
    first, _ = holdout_split(task.data.y, 0, 0.5, stratify=True)
    second, _ = holdout_split(task.data.y, 1, 0.5, stratify=True)
    # A training row of the second split only: step 1 stops there, its kernel full of labels.
    second_row = np.asarray(task.data.X)[min(set(second) - set(first))].tolist()
    extra = ["/tmp/stash.json", "/dev/shm/stash.json"] if backend == "docker" else []
    env = make_env(task=task, protocol="etpo")
    env.reset(seed=3)
    _, _, _, _, info = env.step(
        STASH.format(extra=extra, fail_first=True, second_split_row=second_row)
    )
    assert info["status"] == "error" and "leaving the labels behind" in info["error"]
    _, reward, _, _, info = env.step(
        STASH.format(extra=extra, fail_first=False, second_split_row=second_row)
    )
    assert info["status"] == "ok", info["error"]
    assert info["scores"] == [0.5] * 5 and reward == 0.5  # nothing was remembered


class _FlakyBackend(LocalBackend):
    """A real local backend whose first ``failures`` launches fail as a host fault would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.launches = 0

    def provisioner(self) -> LocalProvisioner:
        provisioner = super().provisioner()
        backend = self
        launch = provisioner.launch

        def flaky(spec):
            backend.launches += 1
            if backend.failures > 0:
                backend.failures -= 1
                raise KernelStartError("injected host failure", backend="local")
            return launch(spec)

        provisioner.launch = flaky  # type: ignore[method-assign]
        return provisioner


def test_an_infra_failure_is_retried_once_then_reported_and_the_env_recovers():
    backend = _FlakyBackend(failures=1)
    env = DataSciEnv(task="breast_cancer", sandbox=KernelSandbox(backend, pool_size=0))
    try:
        _, info = env.reset(seed=0)
        assert not info["infra_error"] and backend.launches == 2  # failed once, retried
        backend.failures = 99
        _, info = env.reset(seed=1)
        assert info["infra_error"] and "injected host failure" in info["error"]
        _, reward, terminated, truncated, info = env.step(HONEST)
        assert info["status"] == "infra_error" and info["infra_error"]
        assert reward == 0.0 and truncated and not terminated
        assert backend.launches == 6  # two attempts in reset, two in the step
        backend.failures = 0
        env.reset(seed=2)
        _, reward, terminated, _, info = env.step(HONEST)
        assert info["status"] == "ok" and terminated and reward > 0.9
    finally:
        env.close()


class _BuggyHost(LocalSandbox):
    """A host whose reading of the predictions has a bug, once."""

    bugs = 1

    def read_output(self, name, **kwargs):
        if self.bugs:
            self.bugs -= 1
            raise RuntimeError("a bug in the host")
        return super().read_output(name, **kwargs)


def test_a_host_bug_is_an_error_step_not_an_exception():
    env = DataSciEnv(task="breast_cancer", sandbox=_BuggyHost(pool_size=0))
    try:
        env.reset(seed=0)
        _, reward, terminated, _, info = env.step(HONEST)
        assert info["status"] == "error" and info["error"].startswith("InternalError")
        assert reward == -1.0 and not terminated and not info["infra_error"]
        _, reward, terminated, _, info = env.step(HONEST)
        assert info["status"] == "ok" and terminated
    finally:
        env.close()
