"""The one kernel core: execute, escalation, reset, pool, data in/out and close, for every backend.

:class:`KernelSandbox` drives kernels that a :class:`~etpo_gym.sandbox.provisioner.Backend`
launches. It talks to them with the byte-bounded
:class:`~etpo_gym.sandbox.client.KernelClient` and decides every outcome from the host's own
facts first:

1. the kernel process died (``Provisioner.poll``) → ``killed``, or ``oom`` if the provisioner
   saw the OOM killer end it;
2. the host's deadline passed → ``timeout``: ``interrupt_request`` on the control channel, and if
   the cell is not over within ``interrupt_grace`` (or the provisioner says the kernel is not
   fit to keep) a hard restart;
3. the kernel sent something forged, malformed, oversized or unexpected, or closed a socket →
   ``error`` with ``KernelProtocolError: ...``, and a restart (its channel cannot be trusted);
4. the cell raised → ``error``, or ``oom`` for a ``MemoryError`` (then a restart: the memory may
   stay referenced);
5. else ``ok``.

A restart is hard: the kernel is killed and the next ``execute`` adopts a fresh one (usually
pre-started by the pool) with the same seed and inputs; ``ExecResult.restarted`` says the state
was lost. ``reset`` always switches to a kernel in which no code has run.

Kernels start on one long-lived worker thread (a backend's parent-death signal can be tied to
it), are pre-started there for the seeds that :meth:`KernelSandbox.prepare` announces (and for
the current seed when it recurs), and are cleaned up on a janitor thread after being killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from etpo_gym.errors import ConfigError, KernelStartError, SandboxError
from etpo_gym.sandbox.base import ExecResult, Sandbox, Status
from etpo_gym.sandbox.client import MAX_LINE, Collected, KernelClient, ProtocolFailure
from etpo_gym.sandbox.files import check_inputs, save_inputs
from etpo_gym.sandbox.outputs import OutputError, read_npy
from etpo_gym.sandbox.provisioner import Backend, LaunchSpec, Provisioner, kernel_environment

log = logging.getLogger("etpo_gym.sandbox")

#: Longest error message (and traceback line), and longest traceback, in characters, that a
#: kernel sends: together, as JSON (where a control character takes 6 bytes), they fit the host's
#: 256 KiB cap of a message's content; a message cut here keeps its truncation marker within the
#: characters the host keeps of it.
_ERROR_LINE_CHARS = MAX_LINE - 100
_ERROR_TRACEBACK_CHARS = 16000

#: Run in every new kernel before it is handed out: seeds, and the imports every step needs (so
#: that their cost is paid while the kernel waits in the pool, not during a step).
SETUP_CODE = """\
import random as _r, numpy as _np, sys as _s
_r.seed({seed}); _np.random.seed({np_seed})
import pandas as _pd, sklearn as _sk
try:  # format one traceback: IPython loads its formatting machinery (~1 s) now, not mid-step
    raise RuntimeError
except RuntimeError:
    get_ipython().InteractiveTB.structured_traceback(*_s.exc_info())
del _r, _np, _s, _pd, _sk


def _etpo_cap_errors(shell, line_chars={line_chars}, traceback_chars={traceback_chars}):
    # An error's message and traceback are sent twice (iopub error, execute_reply); the host
    # refuses a reply over its cap as a protocol error. Capped here, code that raises an
    # exception with a 30 MB message gets that exception, shortened, as its error.
    def cap(text, limit):
        return text if len(text) <= limit else f"{{text[:limit]}}... [{{len(text) - limit}} characters truncated]"

    def stand_in(err):
        try:
            text = str(err)
            if len(text) <= line_chars:
                return err
            capped = cap(text, line_chars)
            kind = type(type(err).__name__, (Exception,), {{"__str__": lambda self: capped}})
            return kind()
        except Exception:
            return err

    show = shell._showtraceback

    def showtraceback(etype, evalue, stb):
        kept, total = [], 0
        for line in reversed([cap(str(line), line_chars) for line in stb]):
            total += len(line)
            if kept and total > traceback_chars:
                break
            kept.append(line)
        show(etype, stand_in(evalue), kept[::-1])

    def post_run_cell(result=None):
        for name in ("error_before_exec", "error_in_exec"):
            err = getattr(result, name, None)
            if err is not None:
                setattr(result, name, stand_in(err))

    shell._showtraceback = showtraceback
    shell.events.register("post_run_cell", post_run_cell)


_etpo_cap_errors(get_ipython())
del _etpo_cap_errors
"""


def _tidy_outputs(
    outputs: list[dict[str, Any]], tidy: Callable[[str], str]
) -> list[dict[str, Any]]:
    """``outputs`` (as the client keeps them) with ``tidy`` applied to their text."""
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            output["text"] = tidy(output["text"])
        elif kind == "error":
            output["evalue"] = tidy(output["evalue"])
            output["traceback"] = [tidy(line) for line in output["traceback"]]
        elif "text/plain" in output.get("data", {}):
            output["data"]["text/plain"] = tidy(output["data"]["text/plain"])
    return outputs


#: Kernels in a row whose data directory may refuse the inputs before the host blames itself.
_INSTALL_ATTEMPTS = 3


class _Kernel:
    """A started kernel: its provisioner, the host's client, its seed."""

    def __init__(self, provisioner: Provisioner, client: KernelClient, seed: int) -> None:
        self.provisioner = provisioner
        self.client = client
        self.seed = seed

    def alive(self) -> bool:
        return self.provisioner.poll() is None


class _Start:
    """A kernel start in progress on the worker thread (cancellable)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.cancelled = threading.Event()
        self.provisioner: Provisioner | None = None
        self.future: Future[_Kernel] | None = None


class KernelSandbox(Sandbox):
    """A sandbox of kernels launched by ``backend``; see the module docstring.

    Args:
        backend: makes the kernel processes (local, Docker, ...).
        timeout: default per-``execute`` limit in seconds.
        max_output_bytes: output (text, images) kept per execution, in bytes.
        startup_timeout: seconds a new kernel gets to answer and run its set-up cell.
        interrupt_grace: seconds an interrupted cell gets to end before a hard restart.
        pool_size: kernels pre-started for announced seeds (0: start each on demand).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        timeout: float = 60.0,
        max_output_bytes: int = 2**20,
        startup_timeout: float = 60.0,
        interrupt_grace: float = 2.0,
        pool_size: int = 2,
    ) -> None:
        checks = [
            ("timeout", timeout, timeout is not None and timeout > 0, "a positive number of s"),
            ("max_output_bytes", max_output_bytes, max_output_bytes > 0, "a positive integer"),
            ("startup_timeout", startup_timeout, startup_timeout > 0, "a positive number of s"),
            ("interrupt_grace", interrupt_grace, interrupt_grace > 0, "a positive number of s"),
            ("pool_size", pool_size, 0 <= pool_size <= 8, "an integer in 0..8"),
        ]
        for key, value, ok, accepted in checks:
            if not ok:
                raise ConfigError(
                    f"{backend.name} sandbox {key}={value!r} is not accepted: use {accepted}"
                )
        self.backend = backend
        self.name = backend.name
        self.timeout = float(timeout)
        self.max_output_bytes = int(max_output_bytes)
        self.startup_timeout = float(startup_timeout)
        self.interrupt_grace = float(interrupt_grace)
        self.pool_size = int(pool_size)
        self.seed = 0
        self._kernel: _Kernel | None = None
        self._inputs: dict[str, Any] = {}
        self._pool: list[_Start] = []
        self._hint: int | None = None
        self._spare_for_current = False
        self._last_reset_seed: int | None = None
        self._starter: ThreadPoolExecutor | None = None
        self._janitor: ThreadPoolExecutor | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def isolation(self) -> str:
        return self.backend.isolation

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def provisioner(self) -> Provisioner | None:
        """The current kernel's provisioner (``None`` between a restart and the next step)."""
        return None if self._kernel is None else self._kernel.provisioner

    def start(self) -> None:
        self._open()
        if self._kernel is None:
            self._kernel = self._acquire(self.seed)
            self._top_up()

    def reset(self, seed: int | None = None) -> None:
        self._open()
        self.seed = 0 if seed is None else int(seed)
        # The same seed again (a protocol with several splits per step, a benchmark loop): keep a
        # spare for it too; a new seed (a new episode) needs none until it recurs or fails.
        self._spare_for_current = self._last_reset_seed == self.seed
        self._last_reset_seed = self.seed
        if self._hint == self.seed:
            self._hint = None  # used up; the owner announces the next one after this reset
        self._inputs = {}
        if self._kernel is not None:
            kernel, self._kernel = self._kernel, None
            self._retire(kernel)
        self._kernel = self._acquire(self.seed)
        self._top_up()

    def prepare(self, seed: int) -> None:
        if self._closed:
            return
        seed = int(seed)
        if seed == self.seed and self._last_reset_seed == seed:
            self._spare_for_current = True
        else:
            self._hint = seed
        if self._starter is not None:
            self._top_up()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, []
        for start in pool:
            self._discard(start)
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            self._retire(kernel)
        for executor in (self._starter, self._janitor):
            if executor is not None:
                try:
                    executor.shutdown(wait=True, cancel_futures=False)
                except RuntimeError:  # closed from one of its own threads (a finaliser)
                    executor.shutdown(wait=False)
        self._starter = self._janitor = None
        try:
            self.backend.close()
        except Exception:  # closing must not fail; say what was left
            log.warning("closing the %s sandbox backend failed", self.name, exc_info=True)

    def _open(self) -> None:
        if self._closed:
            raise SandboxError("the sandbox is closed", backend=self.name)
        if self._starter is None:
            self.backend.open()
            self._starter = ThreadPoolExecutor(
                self.pool_size + 1, thread_name_prefix=f"etpo-{self.name}-start"
            )
            self._janitor = ThreadPoolExecutor(1, thread_name_prefix=f"etpo-{self.name}-cleanup")

    # -- starting kernels --------------------------------------------------------------------

    def _acquire(self, seed: int) -> _Kernel:
        """A started kernel for ``seed``: from the pool if one is (being) made, else made now."""
        for start in list(self._pool):
            if start.seed != seed:
                continue
            self._pool.remove(start)
            assert start.future is not None
            try:
                kernel = start.future.result(timeout=self.startup_timeout + 30)
            except Exception as exc:  # the background start failed: try once more, here
                log.warning("a pre-started %s kernel failed: %s", self.name, exc)
                self._discard(start)
                break
            if kernel.alive():
                return kernel
            self._retire(kernel)
            break
        return self._start_now(seed)

    def _start_now(self, seed: int) -> _Kernel:
        """A kernel for ``seed`` started now (not from the pool), waited for."""
        start = self._submit(seed)
        assert start.future is not None
        try:
            return start.future.result()
        except BaseException:  # also KeyboardInterrupt while waiting: leave no kernel behind
            self._discard(start)
            raise

    def _submit(self, seed: int) -> _Start:
        assert self._starter is not None
        start = _Start(seed)
        start.future = self._starter.submit(self._start_kernel, start)
        return start

    def _start_kernel(self, start: _Start) -> _Kernel:
        """Launch, connect, handshake, run the set-up cell (on the worker thread)."""
        provisioner = self.backend.provisioner()
        start.provisioner = provisioner
        client: KernelClient | None = None
        seed = start.seed
        try:
            if start.cancelled.is_set():
                raise InterruptedError("kernel start cancelled")
            spec = LaunchSpec(seed=seed, key=secrets.token_hex(32), env=kernel_environment(seed))
            connection = provisioner.launch(spec)
            deadline = time.monotonic() + self.startup_timeout
            client = KernelClient(connection, self.max_output_bytes)

            def alive() -> bool:
                return provisioner.poll() is None

            client.connect(deadline, alive, start.cancelled)
            code = SETUP_CODE.format(
                seed=seed,
                np_seed=seed % 2**32,
                line_chars=_ERROR_LINE_CHARS,
                traceback_chars=_ERROR_TRACEBACK_CHARS,
            )
            setup = client.execute(code, max(1.0, deadline - time.monotonic()), 1.0, alive)
            if not setup.finished or setup.ename or setup.protocol_errors or not alive():
                why = setup.ename and f"{setup.ename}: {setup.evalue}"
                raise KernelStartError(
                    "the new kernel could not run its set-up cell (import numpy, pandas, "
                    f"scikit-learn): {why or setup.protocol_errors or 'no answer'}",
                    backend=self.name,
                    exit_status=provisioner.poll(),
                    log_tail=provisioner.log_tail(),
                )
            return _Kernel(provisioner, client, seed)
        except BaseException as exc:
            if client is not None:
                client.close()
            with contextlib.suppress(Exception):
                provisioner.kill()
            error = self._start_error(exc, provisioner)
            with contextlib.suppress(Exception):
                provisioner.cleanup()
            if error is exc:
                raise
            raise error from exc

    def _start_error(self, exc: BaseException, provisioner: Provisioner) -> BaseException:
        """The typed error a failed start is reported as."""
        if isinstance(exc, SandboxError) or not isinstance(exc, Exception):
            return exc
        if isinstance(exc, TimeoutError):
            reason = f"the new kernel did not answer within {self.startup_timeout:g} s"
        elif isinstance(exc, ChildProcessError):
            reason = "the new kernel exited during start-up"
        elif isinstance(exc, ProtocolFailure):
            reason = f"the new kernel broke the protocol during start-up: {exc}"
        elif isinstance(exc, InterruptedError):
            reason = "kernel start cancelled"
        else:
            log.warning("starting a %s kernel failed", self.name, exc_info=exc)
            reason = f"starting the kernel failed: {type(exc).__name__}: {exc}"
        return KernelStartError(
            reason,
            backend=self.name,
            exit_status=provisioner.poll(),
            log_tail=provisioner.log_tail(),
        )

    def _top_up(self) -> None:
        """Pre-start kernels for the announced seed, and for the current one when it recurs."""
        if self._starter is None or self._closed:
            return
        wanted: list[int] = []
        if self._hint is not None:
            wanted.append(self._hint)
        if self._spare_for_current and self.seed not in wanted:
            wanted.append(self.seed)
        wanted = wanted[: self.pool_size]
        for start in list(self._pool):
            if start.seed not in wanted:
                self._pool.remove(start)
                self._discard(start)
        for seed in wanted:
            if not any(start.seed == seed for start in self._pool):
                self._pool.append(self._submit(seed))

    def _discard(self, start: _Start) -> None:
        """Cancel a start; a kernel it already made is retired."""
        start.cancelled.set()
        if start.provisioner is not None:
            with contextlib.suppress(Exception):
                start.provisioner.kill()
        assert start.future is not None

        def retire(done: Future[_Kernel]) -> None:
            if not done.cancelled() and done.exception() is None:
                self._retire(done.result())

        start.future.add_done_callback(retire)

    def _retire(self, kernel: _Kernel) -> None:
        """Kill ``kernel`` now (no code of it runs after this); free it in the background."""
        kernel.client.close()
        try:
            kernel.provisioner.kill()
        except Exception:
            log.warning("killing a %s kernel failed", self.name, exc_info=True)
        janitor = self._janitor
        try:
            if janitor is None:
                raise RuntimeError("no janitor")
            janitor.submit(self._cleanup, kernel.provisioner)
        except RuntimeError:  # shut down meanwhile
            self._cleanup(kernel.provisioner)

    def _cleanup(self, provisioner: Provisioner) -> None:
        try:
            provisioner.cleanup()
        except Exception:
            log.warning("cleaning up a %s kernel failed", self.name, exc_info=True)

    def _current(self) -> _Kernel:
        """The kernel for the next cell: a restarted one is adopted here, with the inputs."""
        self._open()
        if self._kernel is None:
            kernel = self._acquire(self.seed)
            if self._inputs:
                kernel = self._install(kernel, self._inputs)
            self._kernel = kernel
            self._top_up()
        return self._kernel

    def _install(self, kernel: _Kernel, arrays: Mapping[str, Any]) -> _Kernel:
        """``kernel`` holding ``arrays`` in its data directory, or a fresh kernel in its place.

        Where the host cannot write a kernel's data directory, code has replaced it (at
        isolation ``"none"`` the code of one kernel can reach the directories of the sandbox's
        other kernels, the pre-started spares among them): that kernel is unfit, not the host.
        It is killed with its whole tree, and a fresh kernel with fresh directories takes its
        place. Only when :data:`_INSTALL_ATTEMPTS` fresh kernels in a row cannot take the inputs
        is it the host's failure (``SandboxError``).
        """
        attempt = 1
        while True:
            try:
                save_inputs(kernel.provisioner.data_dir, arrays)
                return kernel
            except OSError as exc:
                self._retire(kernel)
                if attempt == _INSTALL_ATTEMPTS:
                    raise SandboxError(
                        f"cannot write the inputs of {attempt} kernels in a row: {exc}",
                        backend=self.name,
                    ) from exc
                log.warning(
                    "dropped a %s kernel whose data directory cannot take the inputs: %s",
                    self.name,
                    exc,
                )
            except BaseException:  # KeyboardInterrupt, a bug: leave no kernel behind
                self._retire(kernel)
                raise
            attempt += 1
            kernel = self._start_now(self.seed)

    # -- data --------------------------------------------------------------------------------

    def put_data(self, arrays: Mapping[str, Any]) -> None:
        check_inputs(arrays)  # the caller's mistake: say so before any kernel is touched
        kernel = self._current()
        self._kernel = None  # until it (or the kernel that replaces it) holds the inputs
        self._kernel = self._install(kernel, arrays)
        self._inputs = dict(arrays)

    def read_output(
        self,
        name: str,
        *,
        shape: tuple[int, ...] | None = None,
        kinds: str = "biuf",
        max_bytes: int = 64 * 2**20,
    ) -> np.ndarray:
        kernel = self._kernel
        if kernel is None:
            raise FileNotFoundError(f"no {name}: the kernel that wrote it was restarted")
        try:
            dir_fd = kernel.provisioner.open_out_dir()
        except OSError as exc:
            raise OutputError(
                name, f"the output directory was replaced or removed ({exc})"
            ) from None
        try:
            return read_npy(dir_fd, name, shape=shape, kinds=kinds, max_bytes=max_bytes)
        finally:
            os.close(dir_fd)

    # -- execution ---------------------------------------------------------------------------

    def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        kernel = self._current()  # raises SandboxError only here: before any code runs
        limit = self.timeout if timeout is None else float(timeout)
        started = time.monotonic()
        try:
            seen = kernel.client.execute(code, limit, self.interrupt_grace, kernel.alive)
            result, restart = self._judge(kernel, seen, limit)
        except Exception as exc:  # a bug of the host's own: blame the step, keep the env usable
            log.error("handling a %s kernel's output failed", self.name, exc_info=True)
            result = ExecResult(
                Status.ERROR,
                error=f"InternalError: the host failed while running the cell ({type(exc).__name__})",
                elapsed_s=time.monotonic() - started,
            )
            restart = True
        if restart:
            self._kernel = None
            self._retire(kernel)
            result.restarted = True
            self._spare_for_current = True
            self._top_up()
        return result

    def _judge(self, kernel: _Kernel, seen: Collected, limit: float) -> tuple[ExecResult, bool]:
        """The outcome of one execution, host facts first; and whether to restart."""
        tidy = self.backend.path_aliases  # the kernel's Python paths, alike on every machine
        result = ExecResult(
            Status.OK,
            stdout=tidy(seen.stdout),
            outputs=_tidy_outputs(seen.outputs, tidy),
            elapsed_s=seen.elapsed_s,
            deadline_exceeded=seen.deadline_exceeded,
            output_truncated=seen.output_truncated,
            dropped_bytes=seen.dropped_bytes,
            protocol_errors=list(seen.protocol_errors),
            ename=seen.ename,
            evalue=tidy(seen.evalue),
            traceback=tidy("\n".join(seen.traceback)),
        )
        provisioner = kernel.provisioner
        # A closed socket usually means the process is exiting: give it time to be reaped, so
        # that an OOM kill is reported as one (a loaded host can take seconds to deliver the
        # death); a kernel that closes its socket and lives on costs this wait once.
        exit_status = provisioner.wait(10.0) if seen.lost or seen.dead else provisioner.poll()
        if exit_status is not None:
            facts = provisioner.facts()
            result.exit_status = facts.exit_status if facts.exit_status is not None else exit_status
            result.protocol_errors = []
            if facts.oom_killed:
                result.status, result.oom = Status.OOM, True
                result.error = "MemoryError: the kernel was killed for exceeding its memory limit"
            else:
                result.status = Status.KILLED
                result.error = (
                    f"KernelDied: the kernel process died (exit status {result.exit_status})"
                )
            return result, True
        if seen.deadline_exceeded:
            result.status = Status.TIMEOUT
            result.error = f"TimeoutError: execution exceeded the {limit:g} s limit"
            keep = seen.finished and not seen.protocol_errors and provisioner.fit_to_keep()
            return result, not keep
        if seen.protocol_errors or not seen.finished:
            errors = seen.protocol_errors or ["the kernel stopped answering"]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            result.status = Status.ERROR
            result.error = f"KernelProtocolError: {errors[0]}{more}"
            return result, True
        if seen.ename:
            result.error = f"{seen.ename}: {result.evalue}"
            # ename is the exception's class name: numpy's allocation failure is
            # _ArrayMemoryError, a MemoryError subclass.
            if seen.ename.endswith("MemoryError"):
                result.status, result.oom = Status.OOM, True
                return result, True
            result.status = Status.ERROR
            return result, False
        if seen.reply_status != "ok":
            result.status = Status.ERROR
            result.error = f"ExecutionAborted: the kernel answered {seen.reply_status!r}"
        return result, False

    # -- for subclasses and tests ------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """Host path of the current kernel's input directory."""
        return self._current().provisioner.data_dir
