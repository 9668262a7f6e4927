"""The host's byte-bounded client of one kernel: shell and control (DEALER), iopub (SUB).

Built on :mod:`~etpo_gym.sandbox.zmtp` and :mod:`~etpo_gym.sandbox.wire`, so whatever the kernel
sends, the host holds at most a few capped frames and the capped output of the current cell.
Outgoing messages are built and signed by ``jupyter_client.session.Session``.

The client reports what it saw (:class:`Collected`); it decides nothing about the outcome and
does not recover — :class:`~etpo_gym.sandbox.kernel.KernelSandbox` does, from the host's own
facts first. Nothing a message says is trusted for scoring or for infrastructure decisions: the
deadline is the host's clock, and a cell counts as finished only when both its ``execute_reply``
(shell) and its ``idle`` status (iopub) arrived.
"""

from __future__ import annotations

import os
import re
import select
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.session import Session

from etpo_gym.sandbox.files import open_dir_nofollow
from etpo_gym.sandbox.provisioner import HOST_CHANNELS, Connection
from etpo_gym.sandbox.wire import Limits, Message, MessageAssembler, Violation
from etpo_gym.sandbox.zmtp import CHUNK, ZmtpConnection, ZmtpError

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
TRACEBACK_LINES = 25
_MAX_LINE = 2000
_MAX_PROTOCOL_ERRORS = 5
_MAX_OUTPUTS = 500
#: iopub message types an ipykernel may send about a cell; others are unexpected.
_KNOWN_IOPUB = frozenset(
    {
        "status",
        "stream",
        "display_data",
        "update_display_data",
        "execute_input",
        "execute_result",
        "error",
        "clear_output",
        "comm_open",
        "comm_msg",
        "comm_close",
        "iopub_welcome",
        "debug_event",
    }
)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="replace"))


class ProtocolFailure(Exception):
    """The kernel broke the protocol during the handshake (before any code ran)."""


@dataclass
class Collected:
    """What the client saw of one execution.

    ``finished``: both the reply and the idle status of the request arrived. ``interrupted``:
    the deadline passed and an ``interrupt_request`` was sent. ``lost``: a socket was closed or
    broke. Output fields are capped; ``dropped_bytes`` counts the rest.
    """

    finished: bool = False
    deadline_exceeded: bool = False
    interrupted: bool = False
    lost: bool = False
    dead: bool = False
    reply_status: str = ""
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)
    stdout: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)
    output_truncated: bool = False
    dropped_bytes: int = 0
    protocol_errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


class _Output:
    """A cell's output under a byte cap: text kept in order, the rest counted."""

    def __init__(self, max_bytes: int) -> None:
        self.room = max_bytes
        self.dropped = 0
        self.stdout: list[str] = []
        self.outputs: list[dict[str, Any]] = []

    def _take(self, text: str) -> str:
        size = _utf8_len(text)
        if size <= self.room:
            self.room -= size
            return text
        kept = text.encode("utf-8", errors="replace")[: max(self.room, 0)]
        self.dropped += size - len(kept)
        self.room = 0
        return kept.decode("utf-8", errors="ignore")

    def _append(self, output: dict[str, Any]) -> None:
        if len(self.outputs) < _MAX_OUTPUTS:
            self.outputs.append(output)

    def stream(self, name: str, text: str) -> None:
        text = self._take(strip_ansi(text))
        if not text:
            return
        self.stdout.append(text)
        last = self.outputs[-1] if self.outputs else None
        if last and last.get("output_type") == "stream" and last.get("name") == name:
            last["text"] += text
        else:
            self._append({"output_type": "stream", "name": name, "text": text})

    def data(self, msg_type: str, content: dict[str, Any]) -> None:
        data = content.get("data")
        kept = {}
        for mime in ("text/plain", "image/png"):
            value = data.get(mime) if isinstance(data, dict) else None
            if not isinstance(value, str):
                continue
            size = _utf8_len(value)
            if size <= self.room:
                self.room -= size
                kept[mime] = value
            else:
                self.dropped += size  # half an image or repr is no use: all or nothing
        if not kept:
            return
        out: dict[str, Any] = {"output_type": msg_type, "data": kept, "metadata": {}}
        if msg_type == "execute_result":
            count = content.get("execution_count")
            out["execution_count"] = count if isinstance(count, int) else None
        self._append(out)

    def text(self) -> str:
        text = "".join(self.stdout)
        if self.dropped:
            text += f"\n[output truncated: {self.dropped} bytes dropped]\n"
        return text


class KernelClient:
    """Connects to one launched kernel and runs cells on it.

    Args:
        connection: where the kernel's sockets are (from the provisioner).
        max_output_bytes: output kept per execution (text, images), in bytes.
    """

    def __init__(self, connection: Connection, max_output_bytes: int = 2**20) -> None:
        self.connection = connection
        self.max_output_bytes = int(max_output_bytes)
        self.session = Session(
            key=connection.key, signature_scheme="hmac-sha256", username="etpo-gym"
        )
        limits = Limits(stream=max(64 * 1024, self.max_output_bytes + 4096))
        self._assemblers = {
            "shell": MessageAssembler(connection.key, limits, identities=False),
            "control": MessageAssembler(connection.key, limits, identities=False),
            "iopub": MessageAssembler(connection.key, limits, identities=True),
        }
        self._conns: dict[str, ZmtpConnection] = {}
        self._sent: set[str] = set()  # msg_ids of our requests: their replies are expected
        self._pins: dict[str, int] = {}

    # -- connecting --------------------------------------------------------------------------

    def connect(
        self,
        deadline: float,
        alive: Callable[[], bool],
        cancelled: threading.Event | None = None,
    ) -> None:
        """Pin the sockets, connect, and wait until the kernel answers on shell and iopub.

        Raises ``TimeoutError`` at ``deadline``, :class:`ProtocolFailure` if the kernel breaks
        the protocol, ``ChildProcessError`` if it died, ``InterruptedError`` if cancelled.
        """

        def check() -> None:
            if cancelled is not None and cancelled.is_set():
                raise InterruptedError("kernel start cancelled")
            if not alive():
                raise ChildProcessError("the kernel exited during start-up")
            if time.monotonic() >= deadline:
                raise TimeoutError("the kernel did not answer in time")

        paths = self._pin_sockets(check)
        try:
            for channel in HOST_CHANNELS:
                kind = "SUB" if channel == "iopub" else "DEALER"
                while True:
                    try:
                        conn = ZmtpConnection.connect(
                            paths[channel], kind, self._assemblers[channel]
                        )
                        break
                    except ConnectionRefusedError:
                        # The socket file exists from bind() on; listen() follows a moment later.
                        check()
                        time.sleep(0.01)
                self._conns[channel] = conn
                conn.handshake(deadline)
            self._conns["iopub"].send([b"\x01"], deadline)  # subscribe to every topic
        except ZmtpError as exc:
            raise ProtocolFailure(str(exc)) from None
        finally:
            self._close_pins()  # connected (or failed): the descriptors have done their job
        try:
            self._wait_ready(check)
        except (ZmtpError, OSError) as exc:
            raise ProtocolFailure(str(exc)) from None

    def _pin_sockets(self, check: Callable[[], None]) -> dict[str, str]:
        """Open each socket file without following symlinks, check it is a socket of the
        expected uid, and connect through ``/proc/self/fd/N``: a symlink planted later (or by
        another kernel) cannot redirect the host."""
        while True:
            try:
                dir_fd = open_dir_nofollow(self.connection.socket_dir, self.connection.root)
            except FileNotFoundError:
                dir_fd = -1
            except OSError as exc:
                raise ProtocolFailure(f"the socket directory is not a directory: {exc}") from None
            if dir_fd >= 0:
                try:
                    for channel in HOST_CHANNELS:
                        if channel not in self._pins:
                            self._pin(dir_fd, channel)
                finally:
                    os.close(dir_fd)
            if len(self._pins) == len(HOST_CHANNELS):
                return {channel: f"/proc/self/fd/{fd}" for channel, fd in self._pins.items()}
            check()
            time.sleep(0.01)

    def _pin(self, dir_fd: int, channel: str) -> None:
        name = self.connection.sockets[channel]
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ProtocolFailure(f"kernel socket {name}: {exc}") from None
        info = os.fstat(fd)
        uid = self.connection.socket_uid
        if not stat.S_ISSOCK(info.st_mode) or (uid is not None and info.st_uid != uid):
            os.close(fd)
            if stat.S_ISSOCK(info.st_mode):
                what = f"owned by uid {info.st_uid}, not {uid}"
            else:
                what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a socket"
            raise ProtocolFailure(f"kernel socket {name} is {what}")
        self._pins[channel] = fd

    def _wait_ready(self, check: Callable[[], None]) -> None:
        """``kernel_info`` until the shell answers and iopub delivers (a subscription takes
        effect a little after the connection: ipykernel 7 then sends ``iopub_welcome``,
        older ones only publish the status of the next request)."""
        replied = published = False
        while not (replied and published):
            if not replied:
                self._send("shell", "kernel_info_request", {}, time.monotonic() + 1.0)
            until = time.monotonic() + 0.25
            while time.monotonic() < until and not (replied and published):
                for channel, item in self._poll(until):
                    if isinstance(item, Violation):
                        raise ProtocolFailure(item.reason)
                    if channel == "shell" and item.msg_type == "kernel_info_reply":
                        replied = True
                    elif channel == "iopub":
                        published = True
            check()

    # -- messages ----------------------------------------------------------------------------

    def _send(self, channel: str, msg_type: str, content: dict[str, Any], deadline: float) -> str:
        msg = self.session.msg(msg_type, content)
        self._sent.add(msg["header"]["msg_id"])
        self._conns[channel].send(self.session.serialize(msg), deadline)
        return msg["header"]["msg_id"]

    def _poll(self, until: float) -> list[tuple[str, Message | Violation]]:
        """Wait until something arrives (or ``until``), read it, and return the messages.
        Raises :class:`ZmtpError` when a connection broke."""
        conns = list(self._conns.values())
        left = max(0.0, until - time.monotonic())
        readable, _, _ = select.select(conns, [], [], left)
        found: list[tuple[str, Message | Violation]] = []
        for channel, conn in self._conns.items():
            if conn in readable:
                conn.receive(max_bytes=CHUNK)
            queue = self._assemblers[channel].messages
            while queue:
                found.append((channel, queue.popleft()))
        return found

    # -- execution ---------------------------------------------------------------------------

    def execute(
        self,
        code: str,
        timeout: float,
        grace: float,
        alive: Callable[[], bool],
    ) -> Collected:
        """Run ``code``; at ``timeout`` send ``interrupt_request`` and wait ``grace`` more.

        Never raises because of the kernel: what went wrong is in the result.
        """
        start = time.monotonic()
        deadline = start + timeout
        end = deadline
        out = _Output(self.max_output_bytes)
        result = Collected()
        iopub = self._assemblers["iopub"]
        iopub.stream_room = iopub.limits.stream
        replied = idle = False
        next_alive_check = start
        try:
            msg_id = self._send(
                "shell",
                "execute_request",
                {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": False,
                },
                deadline,
            )
        except (ZmtpError, TimeoutError, OSError) as exc:
            result.lost = True
            self._protocol_error(result, f"the kernel does not take requests: {exc}")
            msg_id = ""
        while msg_id and not (replied and idle):
            now = time.monotonic()
            if now >= end:
                if result.interrupted:
                    break
                result.deadline_exceeded = result.interrupted = True
                end = now + grace
                try:
                    self._send("control", "interrupt_request", {}, now + min(grace, 1.0))
                except (ZmtpError, TimeoutError, OSError):
                    break  # the kernel cannot be interrupted: the caller restarts it
                continue
            if now >= next_alive_check:
                next_alive_check = now + 0.05
                if not alive():
                    result.dead = True
                    break
            try:
                items = self._poll(min(end, next_alive_check))
            except ZmtpError as exc:
                result.lost = True
                self._protocol_error(result, str(exc))
                break
            for channel, item in items:
                if isinstance(item, Violation):
                    self._protocol_error(result, f"{channel}: {item.reason}")
                    out.dropped += item.dropped_bytes
                    continue
                if channel == "iopub":
                    idle = self._on_iopub(item, msg_id, out, result) or idle
                elif item.parent_id == msg_id and item.msg_type == "execute_reply":
                    replied = True
                    self._on_reply(item, result)
                elif item.parent_id not in self._sent:
                    self._protocol_error(
                        result, f"{channel}: an unrequested {item.msg_type[:40]!r}"
                    )
            iopub.stream_room = min(iopub.limits.stream, max(out.room, 0))
        result.finished = replied and idle
        result.stdout = out.text()
        result.outputs = out.outputs
        if out.dropped:
            result.output_truncated = True
            result.dropped_bytes = out.dropped
            result.outputs.append(
                {
                    "output_type": "stream",
                    "name": "stderr",
                    "text": f"[output truncated: {out.dropped} bytes dropped]\n",
                }
            )
        result.elapsed_s = time.monotonic() - start
        return result

    def _on_iopub(self, msg: Message, msg_id: str, out: _Output, result: Collected) -> bool:
        """Handle one iopub message; whether it is the idle status of our request."""
        out.dropped += msg.dropped_bytes
        if msg.parent_id != msg_id:
            return False  # another request's, a thread of an earlier cell's, or start-up noise
        kind, content = msg.msg_type, msg.content
        if kind not in _KNOWN_IOPUB:
            self._protocol_error(result, f"iopub: an unexpected {kind[:40]!r} message")
            return False
        if content is None:
            if msg.stream_text is not None:
                out.stream(*msg.stream_text)
            return False
        if kind == "status":
            state = content.get("execution_state")
            if not isinstance(state, str):
                self._protocol_error(result, "iopub: a status without execution_state")
            return state == "idle"
        if kind == "stream":
            name, text = content.get("name"), content.get("text")
            if name not in ("stdout", "stderr") or not isinstance(text, str):
                self._protocol_error(result, "iopub: a malformed stream message")
            else:
                out.stream(name, text)
        elif kind in ("display_data", "execute_result", "update_display_data"):
            out.data("display_data" if kind == "update_display_data" else kind, content)
        elif kind == "error":
            if not self._take_error(content, result):
                self._protocol_error(result, "iopub: a malformed error message")
            elif len(out.outputs) < _MAX_OUTPUTS:
                out.outputs.append(
                    {
                        "output_type": "error",
                        "ename": result.ename,
                        "evalue": result.evalue,
                        "traceback": list(result.traceback),
                    }
                )
        return False

    def _on_reply(self, msg: Message, result: Collected) -> None:
        content = msg.content or {}
        status = content.get("status")
        if status not in ("ok", "error", "aborted"):
            self._protocol_error(result, "shell: an execute_reply without a valid status")
            return
        result.reply_status = status
        if status == "error" and not result.ename and not self._take_error(content, result):
            self._protocol_error(result, "shell: a malformed error reply")

    def _take_error(self, content: dict[str, Any], result: Collected) -> bool:
        ename, evalue, tb = content.get("ename"), content.get("evalue"), content.get("traceback")
        if not isinstance(ename, str) or not isinstance(evalue, str) or not isinstance(tb, list):
            return False
        if result.ename:
            return True  # the first error of a cell is the one that counts
        result.ename = strip_ansi(ename)[:200]
        result.evalue = strip_ansi(evalue)[:_MAX_LINE]
        lines = strip_ansi("\n".join(str(line) for line in tb[-TRACEBACK_LINES:])).splitlines()
        result.traceback = [line[:_MAX_LINE] for line in lines[-TRACEBACK_LINES:]]
        return True

    @staticmethod
    def _protocol_error(result: Collected, reason: str) -> None:
        errors = result.protocol_errors
        if len(errors) < _MAX_PROTOCOL_ERRORS:
            errors.append(reason[:300])
        elif len(errors) == _MAX_PROTOCOL_ERRORS:
            errors.append("more protocol errors followed")

    def close(self) -> None:
        """Close the connections (the kernel is not told: the provisioner ends it)."""
        for conn in self._conns.values():
            conn.close()
        self._conns = {}
        self._close_pins()

    def _close_pins(self) -> None:
        for fd in self._pins.values():
            os.close(fd)
        self._pins = {}
