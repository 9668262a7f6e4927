"""Running one cell through a ``jupyter_client`` kernel client, shared by every backend.

:func:`run_cell` sends ``execute_request`` and collects iopub messages for that request until the
kernel is idle again, the deadline passes, or the kernel dies. It does not recover: on
``TIMEOUT``/``KILLED`` the backend decides how (interrupt, restart, recreate).
"""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Callable
from typing import Any

import zmq
from jupyter_client.blocking.client import BlockingKernelClient

from etpo_gym.sandbox.base import ExecResult, Status

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
TRACEBACK_LINES = 25


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def make_client(connection_file: str, max_message_bytes: int) -> BlockingKernelClient:
    """A client whose sockets refuse messages over ``max_message_bytes`` (a flood from the kernel
    drops the connection instead of exhausting host memory)."""
    context = zmq.Context()
    context.setsockopt(zmq.MAXMSGSIZE, int(max_message_bytes))
    client = BlockingKernelClient(context=context)
    client.load_connection_file(connection_file)
    return client


def close_client(client: BlockingKernelClient | None) -> None:
    if client is None:
        return
    try:
        client.stop_channels()
    finally:
        client.context.destroy(linger=0)


class _Collector:
    """Accumulates a cell's outputs under a byte cap."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.truncated = False
        self.stdout: list[str] = []
        self.outputs: list[dict[str, Any]] = []

    def _take(self, text: str) -> str:
        room = self.max_bytes - self.used
        if room <= 0:
            self.truncated = True
            return ""
        if len(text) > room:
            self.truncated = True
            text = text[:room]
        self.used += len(text)
        return text

    def stream(self, name: str, text: str) -> None:
        text = self._take(strip_ansi(text))
        if not text:
            return
        self.stdout.append(text)
        last = self.outputs[-1] if self.outputs else None
        if last and last.get("output_type") == "stream" and last.get("name") == name:
            last["text"] += text
        else:
            self.outputs.append({"output_type": "stream", "name": name, "text": text})

    def data(self, msg_type: str, content: dict[str, Any]) -> None:
        data = content.get("data", {})
        kept = {}
        for mime in ("text/plain", "image/png"):
            if mime in data and isinstance(data[mime], str):
                value = self._take(data[mime])
                if value and len(value) == len(data[mime]):
                    kept[mime] = value
        if not kept:
            return
        out: dict[str, Any] = {"output_type": msg_type, "data": kept, "metadata": {}}
        if msg_type == "execute_result":
            out["execution_count"] = content.get("execution_count")
        self.outputs.append(out)

    def text(self) -> str:
        text = "".join(self.stdout)
        if self.truncated:
            text += "\n[output truncated]\n"
        return text


def run_cell(
    client: BlockingKernelClient,
    code: str,
    timeout: float,
    is_alive: Callable[[], bool],
    max_output_bytes: int = 2**20,
    poll_s: float = 0.05,
) -> ExecResult:
    """Execute ``code`` and wait until the kernel is idle, ``timeout`` passes, or it dies.

    Returns an :class:`ExecResult` with status ``OK``, ``ERROR``, ``OOM`` (MemoryError),
    ``TIMEOUT`` (still running: the caller must interrupt or restart) or ``KILLED``.
    """
    start = time.monotonic()
    deadline = start + timeout
    out = _Collector(max_output_bytes)
    error = ""
    tb = ""
    ename = ""
    msg_id = client.execute(code, silent=False, store_history=False, allow_stdin=False)
    while True:
        now = time.monotonic()
        if now >= deadline:
            return ExecResult(
                Status.TIMEOUT,
                stdout=out.text(),
                error=f"TimeoutError: execution exceeded the {timeout:g} s limit",
                elapsed_s=now - start,
                outputs=out.outputs,
            )
        try:
            msg = client.get_iopub_msg(timeout=min(poll_s, deadline - now))
        except queue.Empty:
            if not is_alive():
                return ExecResult(
                    Status.KILLED,
                    stdout=out.text(),
                    error="KernelDied: the kernel process died while running the code",
                    elapsed_s=time.monotonic() - start,
                    outputs=out.outputs,
                )
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "stream":
            out.stream(content.get("name", "stdout"), content.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            out.data(kind, content)
        elif kind == "error":
            ename = content.get("ename", "Error")
            evalue = strip_ansi(content.get("evalue", ""))
            error = f"{ename}: {evalue}"
            lines = strip_ansi("\n".join(content.get("traceback", []))).splitlines()
            tb = "\n".join(lines[-TRACEBACK_LINES:])
            out.outputs.append(
                {
                    "output_type": "error",
                    "ename": ename,
                    "evalue": evalue[:2000],
                    "traceback": lines[-TRACEBACK_LINES:],
                }
            )
        elif kind == "status" and content.get("execution_state") == "idle":
            break
    _drain_reply(client, msg_id)
    elapsed = time.monotonic() - start
    if not error:
        return ExecResult(Status.OK, stdout=out.text(), elapsed_s=elapsed, outputs=out.outputs)
    status = Status.OOM if "MemoryError" in ename else Status.ERROR
    if ename == "KeyboardInterrupt":
        status = Status.TIMEOUT
    return ExecResult(
        status, stdout=out.text(), error=error, traceback=tb, elapsed_s=elapsed, outputs=out.outputs
    )


def _drain_reply(client: BlockingKernelClient, msg_id: str) -> None:
    """Consume the shell reply so that the next request does not read a stale one."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            reply = client.get_shell_msg(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return
        if reply.get("parent_header", {}).get("msg_id") == msg_id:
            return


def wait_idle(client: BlockingKernelClient, timeout: float) -> bool:
    """After an interrupt: read iopub until some request finishes (idle) or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
            return True
    return False
