"""The client side of a ZMTP 3.0 connection (NULL mechanism) over a unix socket, read
incrementally so that nothing the peer sends is buffered whole.

Why not pyzmq: libzmq delivers a multipart message only once all of it has arrived, so the whole
message sits in the host's memory before the first frame can be looked at, and ``ZMQ_MAXMSGSIZE``
caps single frames only (one message of 100 frames of 15 MiB each costs 1.5 GB). Here the host
reads the socket in small chunks and hands every frame to a :class:`FrameSink` piece by piece;
the sink keeps what it wants (up to its caps) and the rest is dropped as it is read.

Only what a Jupyter client needs is implemented: connecting as DEALER (shell, control) or SUB
(iopub, subscribe to everything) to a kernel's ROUTER / PUB / XPUB sockets, ZMTP 3.0 framing
(RFC 23), the NULL handshake, and sending small multipart messages. The peer is untrusted: any
violation of the protocol raises :class:`ZmtpError`, which the caller treats as the kernel's
fault.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Protocol

#: Greeting: signature, version 3.0, mechanism NULL, as-server 0, filler (RFC 23, 64 bytes).
GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32

_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04
#: The peer's socket types a client socket accepts (ZMTP socket-type compatibility).
_PEERS = {"DEALER": {b"ROUTER"}, "SUB": {b"PUB", b"XPUB"}}
#: Commands (READY and the like) are small; a larger one is a violation, not something to buffer.
_MAX_COMMAND = 4096
CHUNK = 64 * 1024


class ZmtpError(Exception):
    """The peer broke the ZMTP protocol, or the connection ended."""


class FrameSink(Protocol):
    """Receives data frames piece by piece. ``more`` says whether another frame of the same
    message follows this one."""

    def frame_begin(self, size: int, more: bool) -> None: ...

    def frame_data(self, chunk: memoryview) -> None: ...

    def frame_end(self) -> None: ...


def _property(name: bytes, value: bytes) -> bytes:
    return bytes([len(name)]) + name + struct.pack(">I", len(value)) + value


def encode_frame(body: bytes, more: bool = False, command: bool = False) -> bytes:
    """One ZMTP frame: flags, size (1 or 8 bytes), body."""
    flags = (_MORE if more else 0) | (_COMMAND if command else 0)
    if len(body) < 256:
        return bytes([flags, len(body)]) + body
    return bytes([flags | _LONG]) + struct.pack(">Q", len(body)) + body


def encode_message(frames: list[bytes]) -> bytes:
    """A multipart message as one byte string."""
    last = len(frames) - 1
    return b"".join(encode_frame(frame, more=i < last) for i, frame in enumerate(frames))


class ZmtpConnection:
    """One client connection. Blocking sends with a deadline; non-blocking reads.

    Args:
        sock: a connected ``AF_UNIX`` stream socket (the connection owns it).
        socket_type: ``"DEALER"`` or ``"SUB"``.
        sink: receives the data frames once the handshake is done.
    """

    def __init__(self, sock: socket.socket, socket_type: str, sink: FrameSink) -> None:
        if socket_type not in _PEERS:
            raise ValueError(f"socket_type={socket_type!r} is not one of {sorted(_PEERS)}")
        self.sock = sock
        self.socket_type = socket_type
        self.sink = sink
        self.ready = False  # the peer's READY command arrived
        self.peer_type = b""
        self.bytes_received = 0
        self.closed = False
        self._buffer = bytearray(CHUNK)
        self._greeting = bytearray()
        self._header = bytearray()  # flags and size bytes of the frame being read
        self._flags = 0
        self._left = -1  # bytes of the current frame body still to come; -1: reading a header
        self._command = bytearray()
        sock.setblocking(False)

    @classmethod
    def connect(cls, path: str, socket_type: str, sink: FrameSink) -> ZmtpConnection:
        """Connect to the unix socket at ``path`` (e.g. ``/proc/self/fd/N`` of a pinned one)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return cls(sock, socket_type, sink)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    # -- sending -----------------------------------------------------------------------------

    def handshake(self, deadline: float) -> None:
        """Exchange greetings, then READY commands, one after the other as libzmq does (libzmq
        was seen to drop a connection whose greeting, READY and first message came at once).
        Raises ``TimeoutError`` at ``deadline`` or :class:`ZmtpError`."""
        self._write(GREETING, deadline)
        self._receive_until(lambda: len(self._greeting) == len(GREETING), deadline)
        properties = [(b"Socket-Type", self.socket_type.encode())]
        if self.socket_type == "DEALER":
            properties.append((b"Identity", b""))
        body = b"\x05READY" + b"".join(_property(k, v) for k, v in properties)
        self._write(encode_frame(body, command=True), deadline)
        self._receive_until(lambda: self.ready, deadline)

    def _receive_until(self, done: Callable[[], bool], deadline: float) -> None:
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the kernel did not finish the ZMTP handshake")
            select.select([self.sock], [], [], left)
            self.receive(max_bytes=CHUNK)

    def send(self, frames: list[bytes], deadline: float) -> None:
        """Send a multipart message, waiting for the socket at most until ``deadline``
        (``time.monotonic()``). Raises ``TimeoutError`` or :class:`ZmtpError`."""
        if not self.ready:
            raise ZmtpError("send before the handshake")
        self._write(encode_message(frames), deadline)

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            if self.closed:
                raise ZmtpError("the connection is closed")
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the kernel does not read its socket") from None
                select.select([], [self.sock], [], left)
                continue
            except OSError as exc:
                raise ZmtpError(f"sending failed: {os.strerror(exc.errno or 0)}") from None
            view = view[sent:]

    # -- receiving ---------------------------------------------------------------------------

    def receive(self, max_bytes: int = 16 * CHUNK) -> int:
        """Read what is available now (at most ``max_bytes``) and feed it through the parser.

        Returns the number of bytes read (0: nothing available). Raises :class:`ZmtpError` when
        the peer closed the connection or broke the protocol; exceptions of the sink propagate.
        """
        total = 0
        while total < max_bytes:
            try:
                count = self.sock.recv_into(self._buffer, min(CHUNK, max_bytes - total))
            except BlockingIOError:
                break
            except OSError as exc:
                self.close()
                raise ZmtpError(f"reading failed: {os.strerror(exc.errno or 0)}") from None
            if count == 0:
                self.close()
                raise ZmtpError("the kernel closed the connection")
            total += count
            self.bytes_received += count
            self._parse(memoryview(self._buffer)[:count])
        return total

    def _parse(self, data: memoryview) -> None:
        while data:
            if len(self._greeting) < len(GREETING):
                take = len(GREETING) - len(self._greeting)
                self._greeting += data[:take]
                data = data[take:]
                if len(self._greeting) == len(GREETING):
                    self._check_greeting(bytes(self._greeting))
                continue
            if self._left < 0:
                data = self._read_header(data)
                continue
            take = min(self._left, len(data))
            piece, data = data[:take], data[take:]
            self._left -= take
            if self._flags & _COMMAND:
                self._command += piece
            else:
                self.sink.frame_data(piece)
            if self._left == 0:
                self._finish_frame()

    def _check_greeting(self, greeting: bytes) -> None:
        if greeting[0] != 0xFF or greeting[9] != 0x7F:
            raise ZmtpError("the peer's greeting has no ZMTP signature")
        if greeting[10] < 3:
            raise ZmtpError(f"the peer speaks ZMTP {greeting[10]}.{greeting[11]}, not 3.x")
        if greeting[12:32].rstrip(b"\x00") != b"NULL":
            raise ZmtpError("the peer asks for a security mechanism other than NULL")

    def _read_header(self, data: memoryview) -> memoryview:
        if not self._header:
            self._header.append(data[0])
            data = data[1:]
            flags = self._header[0]
            if flags & ~(_MORE | _LONG | _COMMAND):
                raise ZmtpError(f"frame flags {flags:#04x} have reserved bits set")
        need = (9 if self._header[0] & _LONG else 2) - len(self._header)
        take = min(need, len(data))
        self._header += data[:take]
        data = data[take:]
        if take < need:
            return data
        self._flags = self._header[0]
        size = int.from_bytes(self._header[1:], "big")
        self._header.clear()
        if self._flags & _COMMAND:
            if self._flags & _MORE:
                raise ZmtpError("a command frame has the MORE flag")
            if size > _MAX_COMMAND:
                raise ZmtpError(f"a command frame of {size} bytes")
        elif not self.ready:
            raise ZmtpError("a message arrived before the handshake finished")
        else:
            self.sink.frame_begin(size, bool(self._flags & _MORE))
        self._left = size
        if size == 0:
            self._finish_frame()
        return data

    def _finish_frame(self) -> None:
        self._left = -1
        if self._flags & _COMMAND:
            command, self._command = bytes(self._command), bytearray()
            self._handle_command(command)
        else:
            self.sink.frame_end()

    def _handle_command(self, command: bytes) -> None:
        if not command or len(command) < 1 + command[0]:
            raise ZmtpError("a malformed command frame")
        name, body = command[1 : 1 + command[0]], command[1 + command[0] :]
        if name == b"ERROR":
            reason = body[1 : 1 + body[0]].decode(errors="replace") if body else ""
            raise ZmtpError(f"the peer refused the connection: {reason}")
        if name != b"READY":
            return  # PING and later extensions: nothing a client must answer in ZMTP 3.0
        if self.ready:
            raise ZmtpError("a second READY command")
        properties = _parse_properties(body)
        self.peer_type = properties.get(b"socket-type", b"")
        if self.peer_type not in _PEERS[self.socket_type]:
            raise ZmtpError(
                f"the peer is a {self.peer_type.decode(errors='replace') or '?'} socket; a "
                f"{self.socket_type} needs one of {sorted(p.decode() for p in _PEERS[self.socket_type])}"
            )
        self.ready = True


def _parse_properties(body: bytes) -> dict[bytes, bytes]:
    properties = {}
    at = 0
    while at < len(body):
        size = body[at]
        name = body[at + 1 : at + 1 + size]
        at += 1 + size
        if len(name) != size or at + 4 > len(body):
            raise ZmtpError("a malformed READY command")
        (length,) = struct.unpack(">I", body[at : at + 4])
        at += 4
        if at + length > len(body):
            raise ZmtpError("a malformed READY command")
        properties[name.lower()] = body[at : at + length]
        at += length
    return properties
