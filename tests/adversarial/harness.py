"""Run a probe through the public env API and judge the outcome against the contract.

Everything here goes through ``gym.make`` / ``reset`` / ``step`` / ``close`` and ``info``, as an RL
agent's trainer would. The only other things the harness looks at are its own: the peak RSS of
this process, host processes whose name carries the probe's token, and a decoy directory it made.
It never asserts anything about state other processes share (all of /tmp, all containers, all
processes); it only removes what its own probes left, by exact name or token.

:func:`run_attack` returns an :class:`Outcome` whose ``verdict`` is ``contained``, ``tolerated``
(a breach the contract documents at the reported isolation level, honestly labelled), ``needs
<level>`` (a breach of a guarantee that only that stronger isolation level gives, at a weaker
reported level), ``NOT contained`` (with the reasons), or ``skipped`` (the probe does not apply,
or running it could harm the machine at this isolation level).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import math
import os
import re
import secrets
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

import etpo_gym  # noqa: F401 - registers the envs

from .attacks import ANY_AGENT_STATUS, ISOLATION_ORDER, Attack
from .tasks import CEILING, marker_task, paper_split_fingerprint, task

ERROR_REWARD = -1.0
#: What a probe's safety guard raises when it would signal processes outside any sandbox.
REFUSED = "refusing to signal outside a pid namespace"
#: The contract's bound on the host's RSS growth, whatever the kernel sends.
RSS_BOUND = 64 * 2**20
#: Processes (and containers) must be gone this long after reset/close/the owner's death.
GONE_WITHIN_S = 10.0
DEFAULT_TIMEOUT = 60.0
ENV_IDS = {"holdout": "DataSci-v0", "etpo": "DataSciPaper-v0"}

HONEST = """\
def build_model(x_train, y_train):
    import numpy as np
    from sklearn.dummy import DummyClassifier, DummyRegressor
    y = np.asarray(y_train)
    model = DummyRegressor() if y.dtype.kind == "f" else DummyClassifier(strategy="prior")
    return model.fit(x_train, y)
"""

_BREACH = re.compile(r"^BREACH: (.*)$", re.MULTILINE)
#: Classes whose probes change more than the kernel's messages (processes, files, the kernel's
#: life): each such probe is followed by a whole new episode. After any other probe the next
#: probe's own reset on the same env is that check (a failure there names the previous probe).
_STATEFUL_CLASSES = frozenset(
    {
        "kernel_death",
        "resources",
        "persistence",
        "carry_over",
        "symlinks",
        "fake_status",
        "cross_sandbox",
    }
)
_REPORTING_CLASSES = frozenset(
    {
        "data_lookup",
        "persistence",
        "carry_over",
        "resources",
        "privilege",
        "network",
        "cross_sandbox",
    }
)


# -- facts about this process and the processes a probe made ------------------------------------


def _status_kib(field_name: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


class PeakRss:
    """Peak RSS growth of this process over a block (Linux's VmHWM, reset at the start;
    a 10 ms sampler where the peak cannot be reset)."""

    def __init__(self) -> None:
        self.delta = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0

    def __enter__(self) -> PeakRss:
        self._base = _status_kib("VmRSS") * 1024
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._hwm = True
        except OSError:
            self._hwm = False
            self._peak = self._base
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._peak = max(self._peak, _status_kib("VmRSS") * 1024)

    def __exit__(self, *exc: object) -> None:
        if self._hwm:
            peak = _status_kib("VmHWM") * 1024
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            peak = self._peak
        self.delta = max(0, peak - self._base)


def host_pid_namespace() -> str:
    """This process's pid namespace (probes refuse to signal anything when they share it)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"


def token_processes(token: str) -> dict[int, str]:
    """Host processes whose name carries ``token`` (only a probe names them so) and that can
    still run: zombies and processes with a SIGKILL pending (already doomed; a few hundred of
    them take seconds to exit on a loaded machine) are not counted."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            if token not in comm:
                continue
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            status = Path(f"/proc/{entry}/status").read_text()
        except (OSError, IndexError):
            continue
        pending = re.findall(r"^(?:SigPnd|ShdPnd):\s+([0-9a-f]+)$", status, re.MULTILINE)
        doomed = any(int(mask, 16) & (1 << (signal.SIGKILL - 1)) for mask in pending)
        if state not in ("Z", "X") and not doomed:
            found[int(entry)] = comm
    return found


def wait_gone(token: str, within: float = GONE_WITHIN_S) -> dict[int, str]:
    """Poll until no process carries ``token``; what is still alive after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        alive = token_processes(token)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def kill_token_processes(token: str) -> None:
    """SIGKILL what a probe left running (only processes named with its token)."""
    for _ in range(50):  # a re-forking daemon needs a few rounds
        alive = token_processes(token)
        if not alive:
            return
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def remove_tree(path: Path) -> None:
    """Remove ``path`` without following a symlink anywhere."""
    try:
        info = path.lstat()
    except OSError:
        return
    if stat.S_ISDIR(info.st_mode):
        # GNU rm walks iteratively (probes leave trees thousands deep, past Python's recursion
        # limit), never follows a symlink, and as root enters directories of any mode.
        subprocess.run(
            ["rm", "-rf", "--one-file-system", "--", str(path)], check=False, capture_output=True
        )
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def remove_token_files(token: str) -> None:
    """Remove the files probes leave in shared directories, by their exact names."""
    names = [
        f".rt-stash-{token}",
        f"rt-victim-{token}",
        f"rt-stash-{token}",
        f"etpo-gym-local-4194999-rt{token}",
        f"etpo-gym-docker-4194999-1-rt{token}",
        f"etpo-gym-local-4194998-rt{token}",
        f"rt-dir-{token}",
        f"rt-file-{token}",
        f"rt-sub-{token}",
        f"rt-locked-{token}",
    ]
    dirs = {
        tempfile.gettempdir(),
        "/tmp",
        "/var/tmp",
        "/dev/shm",
        "/run/lock",
        "/var/lock",
        "/dev/mqueue",
    }
    for d in dirs:
        for name in names:
            remove_tree(Path(d) / name)
    # The System V segment of the ipc stash, should the reading probe not have run.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        shmid = libc.shmget(int(token[:7], 16), 0, 0)
        if shmid >= 0:
            libc.shmctl(shmid, 0, None)


# -- the decoy: a host directory that symlink probes aim at ----------------------------------------


def make_decoy(parent: Path) -> Path:
    """A directory with two files and a subdirectory whose state :func:`decoy_state` records."""
    decoy = parent / f"decoy-{secrets.token_hex(4)}"
    (decoy / "sub").mkdir(parents=True)
    (decoy / "canary").write_bytes(b"canary: the host must never follow a planted link here\n")
    (decoy / "sub" / "canary2").write_bytes(b"second canary\n")
    decoy.chmod(0o755)
    (decoy / "sub").chmod(0o755)
    (decoy / "canary").chmod(0o644)
    (decoy / "sub" / "canary2").chmod(0o640)
    return decoy


def decoy_state(decoy: Path) -> dict[str, tuple[int, int, int, str]]:
    """(mode, uid, gid, content digest) of the decoy's original entries."""
    state = {}
    for rel in (".", "sub", "canary", "sub/canary2"):
        path = decoy / rel
        try:
            info = path.lstat()
        except OSError:
            state[rel] = (0, 0, 0, "missing")
            continue
        digest = ""
        if stat.S_ISREG(info.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        state[rel] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, digest)
    return state


# -- the outcome -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one attack did on one backend."""

    attack: str
    cls: str
    backend: str
    verdict: str = "contained"
    status: str = ""
    reward: float | None = None
    isolation: str | None = None
    rss_delta: int = 0
    elapsed_s: float = 0.0
    reasons: list[str] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    note: str = ""
    refused: bool = False

    @property
    def needs_stronger(self) -> bool:
        """A breach that only a stronger isolation level than the reported one can prevent."""
        return self.verdict.startswith("needs ")

    @property
    def passed(self) -> bool:
        """Contained, or a breach the contract documents at the labelled isolation level."""
        return self.verdict in ("contained", "tolerated")

    def fail(self, reason: str) -> None:
        self.reasons.append(reason)

    def summary(self) -> str:
        lines = [
            f"{self.attack} on {self.backend}: {self.verdict} (status {self.status!r}, "
            f"reward {self.reward}, isolation {self.isolation!r})"
        ]
        lines += [f"  - {r}" for r in self.reasons]
        lines += [f"  breach: {b}" for b in self.breaches]
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


@dataclass
class Context:
    """The per-run values that fill a probe's placeholders."""

    token: str
    workdir: Path
    scratch: Path
    decoy: Path | None = None
    marker: float = 0.0

    @classmethod
    def new(cls, workdir: Path) -> Context:
        token = secrets.token_hex(4)
        marker = 7_000_000.0 + int(token, 16) / 2**32  # exact in float64, unlike any real feature
        # Short: a sandbox keeps unix sockets under the temporary directory this becomes, and
        # AF_UNIX paths end at 108 bytes (pytest's own directories are long).
        scratch = Path(tempfile.gettempdir()) / f"rt-tmp-{token}"
        return cls(token=token, workdir=workdir, scratch=scratch, marker=marker)

    def fill(self, code: str, task_name: str = "noise") -> str:
        values = {
            "@@TOKEN@@": self.token,
            "@@HOSTNS@@": host_pid_namespace(),
            "@@DECOY@@": str(self.decoy or self.workdir / "no-decoy"),
            "@@MARKER@@": repr(self.marker),
            "@@SCRATCH@@": str(self.scratch),
        }
        if "@@FP4@@" in code:
            values["@@FP4@@"] = paper_split_fingerprint(task_name, 4)
        for key, value in values.items():
            code = code.replace(key, value)
        return code


# -- envs -----------------------------------------------------------------------------------------


class EnvPool:
    """Envs of one backend shared by many probes (``reset`` gives each a fresh kernel).

    An env that let an exception escape is dropped and rebuilt on next use, so one broken probe
    does not take the others with it.
    """

    MAX_ENVS = 3

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self._envs: dict[tuple[Any, ...], gym.Env] = {}
        self._isolation: dict[tuple[Any, ...], str | None] = {}
        self._last: dict[tuple[Any, ...], str] = {}
        self._seeds = itertools.count(101)

    def next_seed(self) -> int:
        return next(self._seeds)

    def _kwargs(self, attack: Attack) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"timeout": DEFAULT_TIMEOUT, "max_steps": 4}
        for key, value in attack.env.items():
            if value == "@@RECORD@@":
                value = str(self.workdir / "notebooks")
            kwargs[key] = value
        return kwargs

    def _key(self, attack: Attack) -> tuple[Any, ...]:
        return (attack.task, attack.protocol, tuple(sorted(self._kwargs(attack).items())))

    def make(self, attack: Attack, task_override: Any = None) -> gym.Env:
        """A new env for ``attack`` that the caller owns (and closes)."""
        return gym.make(
            ENV_IDS[attack.protocol],
            task=task_override or task(attack.task),
            sandbox=self.backend,
            **self._kwargs(attack),
        )

    def env(self, attack: Attack) -> gym.Env:
        """The shared env for ``attack``'s settings (the least recently used of more than
        ``MAX_ENVS`` is closed: each holds a kernel or container and a pre-started spare)."""
        key = self._key(attack)
        if key in self._envs:
            self._envs[key] = self._envs.pop(key)  # most recently used last
        else:
            while len(self._envs) >= self.MAX_ENVS:
                oldest = next(iter(self._envs))
                self._drop(oldest)
            self._envs[key] = self.make(attack)
        return self._envs[key]

    def previous(self, attack: Attack, name: str | None = None) -> str:
        """The probe that last ran on ``attack``'s env (and record ``name`` as the next one)."""
        key = self._key(attack)
        last = self._last.get(key, "")
        if name is not None:
            self._last[key] = name
        return last

    def isolation(self, attack: Attack) -> str | None:
        """The isolation level the env reports for this attack's settings (one honest episode)."""
        key = self._key(attack)
        if key not in self._isolation:
            env = self.env(attack)
            try:
                env.reset(seed=self.next_seed())
                _, _, _, _, info = env.step(HONEST)
            except Exception:
                self.discard(attack)
                raise
            self._isolation[key] = info.get("isolation")
        return self._isolation[key]

    def discard(self, attack: Attack) -> None:
        """Close and forget the env of ``attack``'s settings (the next use builds a new one)."""
        self._drop(self._key(attack))

    def _drop(self, key: tuple[Any, ...]) -> None:
        env = self._envs.pop(key, None)
        self._isolation.pop(key, None)
        if env is not None:
            with contextlib.suppress(Exception):
                env.close()

    def close(self) -> None:
        envs, self._envs = list(self._envs.values()), {}
        for env in envs:
            with contextlib.suppress(Exception):
                env.close()


# -- judging -----------------------------------------------------------------------------------


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _call(out: Outcome, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; an exception is a failure of the host (nothing may escape the env)."""
    try:
        return fn(*args, **kwargs), True
    except Exception as exc:  # every exception counts: the contract says none escapes
        out.fail(f"exception escaped {what}: {type(exc).__name__}: {str(exc)[:300]}")
        return None, False


def _step(out: Outcome, env: gym.Env, action: str, what: str, rss: bool = False):
    """``env.step(action)`` → ``(info, reward, done)``, or ``None`` if it raised."""
    meter = PeakRss()
    with meter:
        result, ok = _call(out, what, env.step, action)
    if rss:
        out.rss_delta = max(out.rss_delta, meter.delta)
    if not ok:
        return None
    obs, reward, terminated, truncated, info = result
    info = dict(info)
    info["_observation"] = obs
    return info, reward, bool(terminated or truncated)


def judge(out: Outcome, attack: Attack, info: dict[str, Any], reward: Any) -> None:
    """Check one step's ``info`` and reward against the attack's contract; collect breaches."""
    status = info.get("status", "")
    out.status, out.reward, out.isolation = status, reward, info.get("isolation")
    error = str(info.get("error", ""))
    stdout = str(info.get("stdout", ""))
    ceiling = CEILING.get(attack.task)
    if status not in attack.statuses:
        out.fail(
            f"status {status!r} ({error[:200]!r}); the contract says {sorted(attack.statuses)}"
        )
    if not _finite(reward):
        out.fail(f"reward {reward!r} is not finite")
    elif status == "ok":
        if reward < ERROR_REWARD:
            out.fail(f"reward {reward:.4g} is below error_reward {ERROR_REWARD}")
    elif reward != ERROR_REWARD:
        out.fail(f"reward {reward!r} for status {status!r}; the contract says {ERROR_REWARD}")
    if attack.error_prefix and status == "error" and not error.startswith(attack.error_prefix):
        out.fail(f"error {error[:160]!r} does not start with {attack.error_prefix!r}")
    if (status in ("oom", "killed") or attack.restarts) and info.get("state_lost") is not True:
        out.fail(f"status {status!r} but info['state_lost'] is {info.get('state_lost')!r}")
    if attack.truncated:
        shown = stdout + str(info.get("_observation", ""))
        if "[output truncated" not in shown:
            out.fail("no '[output truncated' marker in the observation or stdout")
    if (
        status == "ok"
        and attack.cls in _REPORTING_CLASSES
        and "_rt_report()" in attack.code
        and "PROBE-DONE" not in stdout
    ):
        out.fail("the probe's report is missing from stdout (so a breach could hide)")
    if attack.rss and out.rss_delta > RSS_BOUND:
        out.fail(
            f"the host's RSS grew by {out.rss_delta / 2**20:.0f} MiB during the step "
            f"(bound {RSS_BOUND / 2**20:.0f} MiB)"
        )
    if REFUSED in error:
        out.refused = True
    if "INCONCLUSIVE" in stdout:
        out.note = "inconclusive: the probe ran out of its time budget (a loaded machine)"
    out.breaches += _BREACH.findall(stdout)
    scores = info.get("scores") or []
    stolen = [
        s
        for s in [reward, *scores]
        if status == "ok" and ceiling is not None and _finite(s) and s > ceiling
    ]
    if stolen:
        out.breaches.append(
            f"reward above chance on a noise task: {[round(s, 3) for s in stolen]} > {ceiling}"
        )


def _settle_breaches(out: Outcome, attack: Attack) -> None:
    if not out.breaches:
        return
    if out.isolation in attack.tolerated:
        out.note = f"breach documented at isolation {out.isolation!r}"
        return
    label = "no isolation label" if out.isolation is None else f"isolation {out.isolation!r}"
    out.fail(f"breach with {label}: {out.breaches[0]}")


def _honest(out: Outcome, env: gym.Env, attack: Attack, what: str, expect: str = "ok") -> bool:
    """An honest step: ``ok`` at chance (or, with ``expect="any"``, any agent status)."""
    got = _step(out, env, HONEST, what)
    if got is None:
        return False
    info, reward, _ = got
    status = info.get("status")
    if expect == "ok":
        ceiling = CEILING.get(attack.task)
        if status != "ok":
            out.fail(
                f"{what}: honest code got status {status!r} ({str(info.get('error'))[:200]!r})"
            )
            return False
        if (
            not _finite(reward)
            or reward < ERROR_REWARD
            or (ceiling is not None and reward > ceiling)
        ):
            out.fail(f"{what}: honest code got reward {reward!r}")
            return False
    elif status not in ANY_AGENT_STATUS:
        out.fail(f"{what}: status {status!r} ({str(info.get('error'))[:200]!r})")
        return False
    return True


def _next(out: Outcome, env: gym.Env, attack: Attack, done: bool) -> None:
    """The next step of the episode (when it goes on), then, after a stateful probe, a whole new
    episode."""
    if attack.settle_s:
        time.sleep(attack.settle_s)
    if not done:
        _honest(out, env, attack, "next step", attack.next_step)
    # (Not after the paper protocol's two steps: their ten splits already ran in new kernels.)
    if attack.scenario != "splits" and (
        attack.cls in _STATEFUL_CLASSES or attack.scenario != "step"
    ):
        _, ok = _call(out, "the next reset", env.reset)
        if ok:
            _honest(out, env, attack, "next episode")


def _first_reset(out: Outcome, pool: EnvPool, attack: Attack, env: gym.Env) -> bool:
    previous = pool.previous(attack, attack.name)
    _, ok = _call(out, "reset", env.reset)
    if not ok and previous:
        out.reasons[-1] += f" (the previous probe on this env was {previous})"
    return ok


# -- scenarios -------------------------------------------------------------------------------------


def _scenario_step(out: Outcome, pool: EnvPool, attack: Attack, ctx: Context) -> None:
    env = pool.env(attack)
    if not _first_reset(out, pool, attack, env):
        return
    got = _step(out, env, ctx.fill(attack.code, attack.task), "step", rss=True)
    if got is None:
        return
    info, reward, done = got
    judge(out, attack, info, reward)
    _next(out, env, attack, done)


def _scenario_episodes(out: Outcome, pool: EnvPool, attack: Attack, ctx: Context) -> None:
    env = pool.env(attack)
    if not _first_reset(out, pool, attack, env):
        return
    got = _step(out, env, ctx.fill(attack.code, attack.task), "the stashing step")
    if got is None:
        return
    info, _, done = got
    if info.get("status") != "ok":
        out.fail(f"the stashing step got {info.get('status')!r}: {str(info.get('error'))[:200]!r}")
    # No seed: the env's own next seed, for which a pooled backend pre-started a kernel.
    _, ok = _call(out, "the next reset", env.reset)
    if not ok:
        return
    got = _step(out, env, ctx.fill(attack.followup, attack.task), "the stealing step", rss=True)
    if got is None:
        return
    info, reward, done = got
    judge(out, attack, info, reward)
    _next(out, env, attack, done)


def _scenario_splits(out: Outcome, pool: EnvPool, attack: Attack, ctx: Context) -> None:
    env = pool.env(attack)
    if not _first_reset(out, pool, attack, env):
        return
    got = _step(out, env, ctx.fill(attack.code, attack.task), "the stashing step")
    if got is None:
        return
    info, reward, done = got
    if info.get("status") != "error" or "on purpose" not in str(info.get("error")):
        # The probe must fail its last split; anything else means the probe, not the env, broke.
        out.fail(
            f"the stashing step was meant to fail its last split; got {info.get('status')!r}: "
            f"{str(info.get('error'))[:200]!r}"
        )
    out.breaches += _BREACH.findall(str(info.get("stdout", "")))
    if done:
        return
    got = _step(out, env, ctx.fill(attack.followup, attack.task), "the stealing step", rss=True)
    if got is None:
        return
    info, reward, done = got
    judge(out, attack, info, reward)
    _next(out, env, attack, done)


def _scenario_procs(out: Outcome, pool: EnvPool, attack: Attack, ctx: Context) -> None:
    closing = attack.scenario == "procs_close"
    env = pool.make(attack) if closing else pool.env(attack)
    try:
        _, ok = _call(out, "reset", env.reset)
        if not ok:
            return
        got = _step(out, env, ctx.fill(attack.code, attack.task), "step", rss=True)
        if got is None:
            return
        info, reward, _ = got
        judge(out, attack, info, reward)
        if not token_processes(ctx.token) and attack.cls == "persistence":
            out.fail("the probe's processes never appeared (so their removal proves nothing)")
        what = "close()" if closing else "reset()"
        _, ok = _call(out, what, env.close if closing else env.reset)
        left = wait_gone(ctx.token)
        if left:
            out.breaches.append(
                f"{len(left)} processes the kernel started are alive {GONE_WITHIN_S:g} s after "
                f"{what}: {sorted(set(left.values()))}"
            )
        if ok and not closing:
            _honest(out, env, attack, "next episode")
    finally:
        if closing:
            with contextlib.suppress(Exception):
                env.close()


@contextlib.contextmanager
def private_tempdir(path: Path) -> Iterator[None]:
    """Point this process's temporary directory at ``path`` (the host keeps its sandbox
    directories there): what a symlink probe plants for the host's reaper is seen by no other
    process on the machine."""
    path.mkdir(mode=0o755, exist_ok=True)
    saved = tempfile.tempdir
    tempfile.tempdir = str(path)
    try:
        yield
    finally:
        tempfile.tempdir = saved


def _scenario_decoy(out: Outcome, pool: EnvPool, attack: Attack, ctx: Context) -> None:
    ctx.decoy = make_decoy(ctx.workdir)
    before = decoy_state(ctx.decoy)
    with private_tempdir(ctx.scratch):
        _decoy_run(out, pool, attack, ctx)
    after = decoy_state(ctx.decoy)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    if changed:
        out.breaches.append(f"the host followed a planted link: decoy entries changed {changed}")


def _decoy_run(out: Outcome, pool: EnvPool, attack: Attack, ctx: Context) -> None:
    env = pool.make(attack)
    try:
        _, ok = _call(out, "reset", env.reset)
        if not ok:
            return
        got = _step(out, env, ctx.fill(attack.code, attack.task), "step", rss=True)
        if got is None:
            return
        info, reward, done = got
        judge(out, attack, info, reward)
        _next(out, env, attack, done)
        _call(out, "close()", env.close)
        _call(out, "a second close()", env.close)
        if attack.scenario == "stale":
            # A later sandbox start runs the reaper over the host's temporary directory.
            later = pool.make(attack)
            try:
                _, ok = _call(out, "a later env's reset", later.reset, seed=pool.next_seed())
                if ok:
                    _honest(out, later, attack, "a later env's first step")
            finally:
                _call(out, "a later env's close()", later.close)
    finally:
        with contextlib.suppress(Exception):
            env.close()


def _scenario_cross_env(out: Outcome, pool: EnvPool, attack: Attack, ctx: Context) -> None:
    victim = pool.make(attack, task_override=marker_task(ctx.marker))
    try:
        _, ok = _call(out, "the victim's reset", victim.reset, seed=pool.next_seed())
        if not ok:
            return
        got = _step(out, victim, ctx.fill(attack.followup, attack.task), "the victim's step")
        if got is None or got[0].get("status") != "ok":
            out.fail(f"the victim's step failed: {got and got[0].get('error')!r}")
            return
        _scenario_step(out, pool, attack, ctx)
    finally:
        _call(out, "the victim's close()", victim.close)


SCENARIOS: dict[str, Callable[[Outcome, EnvPool, Attack, Context], None]] = {
    "step": _scenario_step,
    "episodes": _scenario_episodes,
    "splits": _scenario_splits,
    "procs": _scenario_procs,
    "procs_close": _scenario_procs,
    "decoy": _scenario_decoy,
    "stale": _scenario_decoy,
    "cross_env": _scenario_cross_env,
}


def run_attack(pool: EnvPool, attack: Attack) -> Outcome:
    """Run ``attack`` on ``pool``'s backend and judge it; never raises for what the env does."""
    out = Outcome(attack=attack.name, cls=attack.cls, backend=pool.backend)
    if pool.backend not in attack.backends:
        out.verdict, out.note = "skipped", f"does not apply to {pool.backend}"
        return out
    started = time.monotonic()
    ctx = Context.new(pool.workdir)
    try:
        _run(out, pool, attack, ctx)
    finally:
        kill_token_processes(ctx.token)
        remove_token_files(ctx.token)
        for path in (ctx.decoy, ctx.scratch):
            if path is not None:
                remove_tree(path)
        out.elapsed_s = time.monotonic() - started
        if any(r.startswith("exception escaped") for r in out.reasons):
            pool.discard(attack)  # the env may be half-broken: the next probe gets a fresh one
    if out.verdict == "skipped":
        return out
    if out.reasons:
        out.verdict = "NOT contained"
        _needs_stronger(out, attack)
    elif out.breaches:
        out.verdict = "tolerated"
    return out


def _needs_stronger(out: Outcome, attack: Attack) -> None:
    """A breach of a guarantee that the reported isolation level cannot give: ``needs <level>``.
    Only breaches qualify: an exception that escaped the env, a wrong status or reward, or a
    grown host RSS fails at every level."""
    if not attack.needs or out.isolation not in ISOLATION_ORDER:
        return
    if ISOLATION_ORDER.index(out.isolation) >= ISOLATION_ORDER.index(attack.needs):
        return
    if all(r.startswith("breach with") for r in out.reasons):
        out.verdict = f"needs {attack.needs}"
        out.note = (
            f"needs isolation {attack.needs!r} (the env reports {out.isolation!r}): "
            f"{out.reasons[0]}"
        )


def _run(out: Outcome, pool: EnvPool, attack: Attack, ctx: Context) -> None:
    if attack.unsafe_at:
        try:
            isolation = pool.isolation(attack)
        except Exception as exc:
            out.fail(f"the env could not be set up: {type(exc).__name__}: {str(exc)[:300]}")
            return
        if isolation in attack.unsafe_at:
            out.verdict = "skipped"
            out.note = f"not run at isolation {isolation!r}: it would signal the host's processes"
            out.isolation = isolation
            return
    SCENARIOS[attack.scenario](out, pool, attack, ctx)
    if out.refused:
        # The probe's own guard: the kernel shares the host's pid namespace (whatever the label
        # says), so signalling "everything" would hit the machine's processes.
        out.reasons.clear()
        out.verdict = "skipped"
        out.note = "not run: the kernel shares the host's pid namespace"
        return
    _settle_breaches(out, attack)


def run_many(pool: EnvPool, attacks: list[Attack]) -> Iterator[Outcome]:
    """Run attacks in order on one pool."""
    for attack in attacks:
        yield run_attack(pool, attack)
