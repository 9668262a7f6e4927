"""The byte-bounded transport and message assembly, against crafted bytes (no kernel needed)."""

from __future__ import annotations

import hashlib
import hmac
import select
import socket
import threading
import time

import pytest
from jupyter_client.session import Session, json_packer

from etpo_gym.sandbox.wire import Limits, Message, MessageAssembler, Violation
from etpo_gym.sandbox.zmtp import GREETING, ZmtpConnection, ZmtpError, encode_frame

KEY = b"0123456789abcdef"


def signed(msg_type: str, content: dict, parent_id: str = "p1", buffers=()) -> list[bytes]:
    session = Session(key=KEY, signature_scheme="hmac-sha256")
    parent = {"header": {"msg_id": parent_id, "msg_type": "execute_request"}}
    msg = session.msg(msg_type, content, parent=parent)
    return [b"kernel.topic", *session.serialize(msg), *buffers]


def feed(assembler: MessageAssembler, frames: list[bytes], chunk: int = 7) -> Message | Violation:
    """Deliver ``frames`` in small pieces, as the transport does."""
    for index, frame in enumerate(frames):
        assembler.frame_begin(len(frame), index < len(frames) - 1)
        view = memoryview(frame)
        for at in range(0, len(frame), chunk):
            assembler.frame_data(view[at : at + chunk])
        assembler.frame_end()
    assert len(assembler.messages) == 1
    return assembler.messages.popleft()


def resign(frames: list[bytes]) -> list[bytes]:
    mac = hmac.new(KEY, b"".join(frames[3:7]), hashlib.sha256).hexdigest().encode()
    return [*frames[:2], mac, *frames[3:]]


def test_a_signed_message_is_assembled_from_small_pieces():
    got = feed(MessageAssembler(KEY), signed("stream", {"name": "stdout", "text": "hi"}))
    assert isinstance(got, Message)
    assert (got.msg_type, got.parent_id, got.parent_type) == ("stream", "p1", "execute_request")
    assert got.content == {"name": "stdout", "text": "hi"} and got.dropped_bytes == 0


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda f: [*f[:2], b"0" * 64, *f[3:]], "invalid signature"),
        (lambda f: [*f[:2], b"", *f[3:]], "invalid signature"),  # unsigned
        (lambda f: [*f[:6], b'{"name": "stdout", "text": "forged"}'], "invalid signature"),
        (lambda f: resign([*f[:4], b"not json", *f[5:]]), "parent header is not valid JSON"),
        (lambda f: resign([*f[:3], b"[1, 2]", *f[4:]]), "header is not a JSON object"),
        (lambda f: resign([*f[:3], b'{"msg_type": 1}', *f[4:]]), "without msg_type"),
        (lambda f: resign([*f[:6], b"[" * 100_000 + b"]" * 100_000]), "content is not valid JSON"),
        (lambda f: [f[0], *f[2:]], "no <IDS|MSG> delimiter"),
        (lambda f: f[:5], "3 frames after the delimiter"),
        (lambda f: resign([*f[:3], b" " * 70_000, *f[4:]]), "header frame of 70000 bytes"),
    ],
)
def test_forged_and_malformed_messages_are_violations(tamper, reason):
    frames = tamper(signed("stream", {"name": "stdout", "text": "hi"}))
    got = feed(MessageAssembler(KEY), frames)
    assert isinstance(got, Violation) and reason in got.reason


def test_binary_buffers_are_counted_and_never_kept():
    assembler = MessageAssembler(KEY)
    buffer = b"x" * 3_000_000
    got = feed(assembler, signed("display_data", {"data": {}}, buffers=[buffer] * 3), chunk=65536)
    assert isinstance(got, Violation) and "3 binary buffers" in got.reason
    assert got.dropped_bytes == 3 * len(buffer)
    assert len(assembler._frame) == 0  # nothing of them was stored


def test_oversized_output_keeps_what_fits_and_oversized_control_content_is_a_violation():
    limits = Limits(content=1000, stream=100)
    text = "é" * 5000
    got = feed(MessageAssembler(KEY, limits), signed("stream", {"name": "stderr", "text": text}))
    assert isinstance(got, Message) and got.content is None
    name, kept = got.stream_text
    assert name == "stderr" and 0 < len(kept) < 100 and text.startswith(kept)
    assert got.dropped_bytes > 9000
    status = signed("status", {"execution_state": "idle", "pad": "x" * 5000})
    got = feed(MessageAssembler(KEY, limits), status)
    assert isinstance(got, Violation) and "status content of" in got.reason


def test_an_oversized_signed_reply_says_whose_reply_it_is_and_a_forged_one_does_not():
    limits = Limits(content=1000)
    reply = signed("execute_reply", {"status": "error", "evalue": "x" * 5000}, parent_id="req7")
    got = feed(MessageAssembler(KEY, limits), reply)
    assert isinstance(got, Violation) and "execute_reply content of" in got.reason
    assert (got.msg_type, got.parent_id) == ("execute_reply", "req7")
    forged = [*reply[:2], b"0" * 64, *reply[3:]]
    got = feed(MessageAssembler(KEY, limits), forged)
    assert isinstance(got, Violation) and "invalid signature" in got.reason
    assert (got.msg_type, got.parent_id) == ("", "")


def _server(sock: socket.socket, script) -> threading.Thread:
    thread = threading.Thread(target=script, args=(sock,), daemon=True)
    thread.start()
    return thread


class _Collect:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.largest_chunk = 0

    def frame_begin(self, size: int, more: bool) -> None:
        self.sizes.append(size)

    def frame_data(self, chunk: memoryview) -> None:
        self.largest_chunk = max(self.largest_chunk, len(chunk))

    def frame_end(self) -> None:
        pass


def _router(sock: socket.socket, big: int = 0) -> None:
    sock.sendall(GREETING.replace(b"\x03\x00", b"\x03\x01", 1))
    sock.recv(64)
    ready = b"\x05READY\x0bSocket-Type" + (6).to_bytes(4, "big") + b"ROUTER"
    sock.sendall(encode_frame(ready, command=True))
    sock.recv(4096)
    if big:
        block = b"y" * 2**20
        sock.sendall(b"\x02" + big.to_bytes(8, "big"))
        for _ in range(big // len(block)):
            sock.sendall(block)


def test_a_huge_frame_reaches_the_sink_in_small_chunks():
    host, peer = socket.socketpair()
    size = 64 * 2**20
    _server(peer, lambda s: _router(s, big=size))
    sink = _Collect()
    conn = ZmtpConnection(host, "DEALER", sink)
    conn.handshake(time.monotonic() + 10)
    while conn.bytes_received < size:
        select.select([conn], [], [], 5)
        conn.receive()
    assert sink.sizes == [size] and sink.largest_chunk <= 2**16
    conn.close()
    peer.close()


def test_a_peer_that_is_not_zmtp_or_of_the_wrong_type_is_refused():
    host, peer = socket.socketpair()
    _server(peer, lambda s: s.sendall(b"HTTP/1.1 200 OK\r\n" + b"x" * 100))
    with pytest.raises(ZmtpError, match="no ZMTP signature"):
        ZmtpConnection(host, "DEALER", _Collect()).handshake(time.monotonic() + 5)
    peer.close()
    host, peer = socket.socketpair()
    _server(peer, _router)
    with pytest.raises(ZmtpError, match="peer is a ROUTER"):
        ZmtpConnection(host, "SUB", _Collect()).handshake(time.monotonic() + 5)
    peer.close()


def test_stream_content_is_packed_in_the_order_the_prefix_reader_expects():
    packed = json_packer({"name": "stdout", "text": "a"})
    assert packed.startswith(b'{"name": "stdout", "text": ')
