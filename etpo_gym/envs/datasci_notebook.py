"""``DataSciNotebook-v0``: explore the data in a Jupyter kernel, then submit a ``build_model``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from etpo_gym import prompts
from etpo_gym.envs import chat
from etpo_gym.envs.datasci import CHARSET, DataSciEnv, _Outcome, log
from etpo_gym.errors import ConfigError, SandboxError
from etpo_gym.notebook import EpisodeRecorder
from etpo_gym.sandbox import Status
from etpo_gym.sandbox.base import ExecResult
from etpo_gym.tasks.base import Task

#: Traceback lines shown under a failed cell (the end of it: where it failed, and the error).
TRACEBACK_LINES = 8

_LOAD_CELL = """\
# The episode's data: x_train, y_train (training rows) and x_eval (evaluation rows, no labels).
import os

import numpy as np
import pandas as pd

DATA_DIR = os.environ.get("ETPO_DATA_DIR") or {folder!r}


def load(name):
    path = os.path.join(DATA_DIR, name)
    if os.path.exists(path + ".npy"):
        return np.load(path + ".npy", allow_pickle=False)
    return pd.read_pickle(path + ".pkl")


x_train, y_train, x_eval = load("x_train"), load("y_train"), load("x_eval")
"""


def load_cell(folder: str) -> str:
    """The first cell of every episode: loads the data from ``$ETPO_DATA_DIR`` in the sandbox, or
    from ``folder`` (beside the recorded notebook) when a person re-runs it."""
    return _LOAD_CELL.format(folder=folder)


def parse_cell(action: str) -> tuple[bool, str]:
    """``(is_submission, code)`` of an action: a cell, or a submission when its first line is
    :data:`~etpo_gym.prompts.SUBMIT_MARKER` (inside or outside Markdown fences), whose code is then
    the full ``def build_model``."""
    text = str(action).replace("\r\n", "\n")
    code = prompts.strip_fences(text)
    for candidate in (text, code):
        stripped = candidate.lstrip()
        if stripped.startswith(prompts.SUBMIT_MARKER):
            _, _, body = stripped[len(prompts.SUBMIT_MARKER) :].partition("\n")
            return True, prompts.action_to_code(body)
    return False, code


def render_outputs(result: ExecResult, max_chars: int) -> str:
    """What a person sees under a cell, as text: streams, the last expression's value, rich
    outputs (their text form; images as a placeholder), errors with a short traceback, and
    what the host saw (timeout, kernel death, protocol errors). Capped at ``max_chars``: the head
    and the tail are kept around a ``[output truncated: N characters dropped]`` marker."""
    parts: list[str] = []
    error_shown = False
    for output in result.outputs:
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(str(output.get("text", "")))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data") or {}
            if isinstance(data.get("text/plain"), str):
                parts.append(data["text/plain"] + "\n")
            elif "image/png" in data:
                parts.append("[image/png]\n")
        elif kind == "error":
            lines = [str(line) for line in output.get("traceback") or []]
            lines = "\n".join(lines).splitlines()[-TRACEBACK_LINES:]
            last = f"{output.get('ename', '')}: {output.get('evalue', '')}"
            if not lines or last not in lines[-1]:
                lines.append(last)
            parts.append("\n".join(lines) + "\n")
            error_shown = True
    if result.status is Status.TIMEOUT:
        parts.append(f"{result.error} (the cell was stopped)\n")
    elif not result.ok and not error_shown:
        parts.append(result.error + "\n")
    text = "".join(parts)
    if len(text) > max_chars:
        marker_room = 60
        head = (max_chars - marker_room) * 2 // 3
        tail = max_chars - marker_room - head
        dropped = len(text) - head - tail
        text = (
            text[:head]
            + f"\n[output truncated: {dropped} characters dropped]\n"
            + (text[-tail:] if tail > 0 else "")
        )
    return text


class DataSciNotebookEnv(DataSciEnv):
    """Explore a tabular task in a live Jupyter kernel, one code cell per step, then submit.

    ## Description

    The data-science task of ``DataSci-v0`` worked the way a person works in a notebook. One
    kernel lives for the whole episode; at ``reset`` it runs a first cell that loads the data into
    ``x_train``, ``y_train`` and ``x_eval`` (the evaluation rows' features, no labels: the same
    files ``DataSci-v0``'s sandbox holds, so code may use them, as it may there). Each action is
    one code cell; variables persist from cell to cell. A cell whose first line is ``%%submit``
    (:data:`~etpo_gym.prompts.SUBMIT_MARKER`) is a submission: the rest is a
    ``def build_model(x_train, y_train)`` (or its body), which may use anything earlier cells
    defined. It is scored by exactly the code path of ``DataSci-v0`` (the same driver cell, file
    checks and metric), in this kernel; the evaluation labels never enter it.

    ## Action Space

    ``Text``: a code cell, or a submission. Markdown fences are stripped. Any string is
    accepted; garbage is an error shown under the cell.

    ## Observation Space

    ``Text``: at ``reset`` the task prompt (the data's variables and shapes, how to submit, the
    budget); after a cell, what a person would see under it (printed text, the last
    expression's value, rich outputs as text, errors with a short traceback), capped at
    ``max_output_chars`` with a ``[output truncated: N characters dropped]`` marker; after a
    submission its score or its error. With ``observation_format="chat"``: the same texts as
    chat messages (a system message and the prompt, then one user message per step).

    ## Rewards

    A cell: 0, whatever it did. A submission: as ``DataSci-v0`` — the metric on success (never
    below ``error_reward``), ``error_reward`` on any failure. The step that spends the last of a
    budget without a scored submission gets ``error_reward``. Infra errors: 0 and truncated, as in
    ``DataSci-v0``.

    ## Episode End

    Terminated by a scored submission. Truncated when a budget is spent: ``max_steps`` cells
    (submissions included), ``max_submissions`` submissions, or ``max_kernel_seconds`` of kernel
    time (a cell starts only while some is left, and runs at most ``timeout`` seconds).

    ## Info

    That of ``DataSci-v0`` (``schema`` on reset; ``score``, ``status``, ``error``, ``stdout``,
    ``state_lost``, ``isolation``, ...) plus ``kind`` (``"cell"`` or ``"submission"``),
    ``cells_left``, ``submissions_left``, ``kernel_seconds_left``. ``status`` is that of the cell
    (an exception in an exploring cell is ``error`` with reward 0).

    ## Arguments

    Those of ``DataSci-v0`` (``task``, ``sandbox``, ``error_reward``, ``timeout`` per cell,
    ``memory_limit``, ``prompt_style``, ``observation_format``, ``record_dir``, ...; ``protocol``
    must be ``"holdout"``), with these differences:

    | argument | default | meaning |
    |---|---|---|
    | ``max_steps`` | ``20`` | cells per episode, submissions included |
    | ``max_submissions`` | ``3`` | submissions per episode |
    | ``max_kernel_seconds`` | ``600.0`` | kernel time per episode |
    | ``max_output_chars`` | ``4000`` | characters of a cell's output in the observation |

    ``record_dir`` writes a notebook that re-runs top to bottom: the load cell (reading the
    episode's data files, saved beside it in ``NAME_data/``), each cell with its outputs, each
    submission as a cell that defines and calls ``build_model``, each score as markdown.

    ## Version History

    * v0: initial version.
    """

    def __init__(
        self,
        task: str | Task = "breast_cancer",
        *,
        max_steps: int = 20,
        max_submissions: int = 3,
        max_kernel_seconds: float = 600.0,
        max_output_chars: int = 4000,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("protocol", "holdout") != "holdout":
            raise ConfigError(
                f"DataSciNotebook-v0: protocol={kwargs['protocol']!r} is not accepted: the "
                "notebook's kernel keeps its state, so only 'holdout' is"
            )
        if not isinstance(max_submissions, int) or max_submissions < 1:
            raise ConfigError(f"max_submissions={max_submissions!r} must be an integer >= 1")
        if not isinstance(max_kernel_seconds, int | float) or not max_kernel_seconds > 0:
            raise ConfigError(f"max_kernel_seconds={max_kernel_seconds!r} must be a number > 0")
        if not isinstance(max_output_chars, int) or max_output_chars < 200:
            raise ConfigError(f"max_output_chars={max_output_chars!r} must be an integer >= 200")
        self.max_submissions = max_submissions
        self.max_kernel_seconds = float(max_kernel_seconds)
        self.max_output_chars = max_output_chars
        self._submissions = 0
        self._kernel_seconds = 0.0
        self._kernels = 0  # kernels this episode has had: a new one means the state was lost
        self._reload = False
        self._submission = False
        super().__init__(task, max_steps=max_steps, **kwargs)

    # -- Gymnasium API -----------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self._reset_options(options)  # a bad option changes nothing
        self._submissions = 0
        self._kernel_seconds = 0.0
        self._kernels = 0
        self._reload = False
        observation, info = super().reset(seed=seed, options=options)
        if self._recorder is not None:
            try:
                data = self.task.data
                x_train, y_train = data.rows(self._train_idx)
                x_eval, _ = data.rows(self._eval_idx)  # the evaluation labels are never saved
                folder = self._data_folder()
                self._recorder.save_data(
                    folder, {"x_train": x_train, "y_train": y_train, "x_eval": x_eval}
                )
                self._recorder.add_code(load_cell(folder), [])
            except Exception:
                log.warning("recording the episode failed", exc_info=True)
        info.update(self._budget_info())
        return observation, info

    def step(self, action: str) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        started = self._begin_step()
        kernels = self._kernels
        code = ""
        try:
            self._submission, code = parse_cell(action)
            if self._submission:
                self._submissions += 1
            outcome = self._run_step(code)
        except Exception as exc:  # a bug of the host's own: blame the step, keep the env usable
            log.error("running a step failed", exc_info=True)
            error = f"InternalError: the step could not be evaluated ({type(exc).__name__})"
            outcome = _Outcome(Status.ERROR, None, error, error, None)
        result = outcome.result
        if result is not None:
            self._kernel_seconds += result.elapsed_s
        # a restart after this cell, or a fresh kernel before it (an infra retry)
        state_lost = outcome.state_lost or self._kernels > max(kernels, 1)
        if outcome.state_lost:
            self._reload = True  # the next cell first loads the data into the new kernel

        info = self._base_info()
        info.update(
            kind="submission" if self._submission else "cell",
            score=outcome.score,
            status=str(outcome.status),
            error=outcome.error,
            elapsed_s=time.monotonic() - started,
            stdout=(result.stdout[-2000:] if result else ""),
            code=code,
            infra_error=outcome.status is Status.INFRA_ERROR,
            state_lost=state_lost,
        )
        shown = render_outputs(result, self.max_output_chars) if result is not None else ""
        terminated = truncated = False
        if outcome.status is Status.INFRA_ERROR:
            reward, truncated = 0.0, True
            text = "The sandbox failed (not your code); the episode was stopped."
            summary = f"**Infrastructure error** (not scored): {outcome.error}"
        elif self._submission and outcome.status is Status.OK:
            assert outcome.score is not None
            reward, terminated = self._success_reward(outcome.score), True
            text = shown + (
                f"Submission scored: {self.task.metric} {outcome.score:.4f}, reward "
                f"{reward:.4f}. The episode is over."
            )
            summary = f"**Reward {reward:.4f}** — {self.task.metric} {outcome.score:.4f}"
        elif self._submission:
            reward = self.error_reward
            detail = outcome.detail or outcome.error
            if result is None or not any(o.get("output_type") == "error" for o in result.outputs):
                shown += detail + "\n"  # the host's verdict on the predictions
            text = shown + f"Submission failed ({outcome.status}); it was not scored."
            summary = f"**Reward {reward:.4f}** — submission `{outcome.status}`: {outcome.error}"
        else:
            reward = 0.0
            text = shown or "(no output)"
            summary = ""
        if state_lost and outcome.status is not Status.INFRA_ERROR:
            text += (
                "\n(The kernel was restarted: variables, imports and files of earlier cells are "
                "gone; x_train, y_train and x_eval are loaded again.)"
            )
        if not terminated and not truncated:
            spent = self._spent_budget()
            if spent:
                truncated = True
                reward = min(reward, self.error_reward)
                text += f"\n{spent} without a scored submission: the episode is over."
                summary = (
                    summary + "\n\n" if summary else ""
                ) + f"**Reward {reward:.4f}**: {spent}"
            elif self.max_steps - self._step == 1:
                text += "\n(1 cell left.)"
        self._done = terminated or truncated
        info.update(self._budget_info())
        self._observation = self._feedback(text)
        self._record(code, result, outcome, summary, info)
        self._last = {"reward": reward, **info}
        return self._observation, float(reward), terminated, truncated, info

    # -- hooks of DataSci-v0 -----------------------------------------------------------------

    def _prompt(self, task: Task, train_idx: np.ndarray, eval_idx: np.ndarray) -> str:
        budget = (
            f"{self.max_steps} cells in all, {self.max_submissions} submissions, "
            f"{self.max_kernel_seconds:g} s of kernel time, {self.timeout:g} s per cell"
        )
        return prompts.notebook_prompt(
            task, self.prompt_style, len(train_idx), len(eval_idx), budget, prompts.SUBMIT_MARKER
        )

    def _prepare_episode(self) -> None:
        """A fresh kernel with the data in place, and the load cell run in it."""
        super()._prepare_episode()
        self._kernels += 1
        self._run_load_cell()

    def _evaluate(self, code: str) -> _Outcome:
        if self._reload:
            self._run_load_cell()
        if self._submission:
            return super()._evaluate(code)  # the DataSci-v0 scoring path, in this kernel
        result = self.sandbox.execute(code, timeout=self.timeout)
        return _Outcome(result.status, None, result.error, "", result)

    # -- internals ---------------------------------------------------------------------------

    def _run_load_cell(self) -> None:
        """Run the load cell in a fresh kernel; a failure there is the host's (no agent code
        has run in that kernel)."""
        result = self.sandbox.execute(load_cell(self._data_folder()), timeout=self.timeout)
        if not result.ok:
            raise SandboxError(
                f"loading the data into a new kernel failed: {result.error}",
                backend=self.sandbox_name,
            )
        self._reload = False

    def _data_folder(self) -> str:
        return EpisodeRecorder.file_stem(self._episode_name()) + "_data"

    def _spent_budget(self) -> str:
        if self._step >= self.max_steps:
            return f"All {self.max_steps} cells are used"
        if self._submissions >= self.max_submissions:
            return f"All {self.max_submissions} submissions are used"
        if self._kernel_seconds >= self.max_kernel_seconds:
            return f"The {self.max_kernel_seconds:g} s of kernel time are used"
        return ""

    def _budget_info(self) -> dict[str, Any]:
        return {
            "cells_left": self.max_steps - self._step,
            "submissions_left": self.max_submissions - self._submissions,
            "kernel_seconds_left": max(0.0, self.max_kernel_seconds - self._kernel_seconds),
        }

    def _feedback(self, text: str) -> str | list[chat.Message]:
        text = self._clean_output(text)
        return chat.feedback(text) if self.observation_format == "chat" else text

    def _clean_output(self, text: str) -> str:
        """Unknown characters → "?", and within the observation space (the head is kept: the
        output reads top down)."""
        text = "".join(ch if ch in CHARSET else "?" for ch in text)
        limit = self.max_observation_length
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def _record(
        self,
        code: str,
        result: ExecResult | None,
        outcome: _Outcome,
        summary: str,
        info: dict[str, Any],
    ) -> None:
        if self._recorder is None:
            return
        try:
            outputs = result.outputs if result is not None else []
            raises = outcome.status is not Status.OK
            if self._submission:  # re-run, it defines and fits the submitted model
                code = code.rstrip("\n") + "\n\n\nmodel = build_model(x_train, y_train)\n"
            self._recorder.add_code(code, outputs, self._step, raises=raises)
            if summary:
                self._recorder.add_markdown(summary)
            if self._done:
                path = self._finish_notebook()
                if path is not None:
                    info["notebook"] = str(path)
        except Exception:
            log.warning("recording the episode failed", exc_info=True)
