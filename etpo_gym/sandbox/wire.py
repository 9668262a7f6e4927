"""Jupyter wire messages from an untrusted kernel, assembled frame by frame under byte caps.

A message on the wire is ``[identities..., b"<IDS|MSG>", signature, header, parent_header,
metadata, content, buffers...]``; the signature is HMAC-SHA256 over the four JSON frames. The
:class:`MessageAssembler` is the :class:`~etpo_gym.sandbox.zmtp.FrameSink` of one socket: it
computes the HMAC as bytes arrive, keeps at most a capped prefix of each frame, drops binary
buffers unread, and turns each complete message into a :class:`Message` or a
:class:`Violation`. A frame larger than its cap is read and discarded, never stored.

What counts as a violation (the kernel's fault): a missing or misplaced delimiter, a bad or
missing signature, a header/parent/metadata frame over its cap, JSON that does not parse or is
not an object, a header without ``msg_type``/``msg_id``, binary buffers (the host never asks for
them), content over its cap for a message that is not output. Content over its cap for *output*
(``stream``, ``display_data``, ``execute_result``, ``update_display_data``, ``error``) is not
the kernel breaking the protocol: it is counted as dropped output (a ``stream`` keeps the text
that fit).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

DELIMITER = b"<IDS|MSG>"
#: Message types whose content is output of the code: too big means truncated, not forged.
OUTPUT_TYPES = frozenset(
    {"stream", "display_data", "execute_result", "update_display_data", "error"}
)
_MAX_IDENTITIES = 16
_MAX_IDENTITY = 1024
_SIGNATURE = 64  # hex digits of an HMAC-SHA256
_STREAM_HEAD = re.compile(rb'\A\s*\{\s*"name"\s*:\s*"(stdout|stderr)"\s*,\s*"text"\s*:\s*"')
_JSON_STRING_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*')


@dataclass(frozen=True)
class Limits:
    """Byte caps of one socket's messages.

    Attributes:
        json_frame: header, parent header and metadata frames.
        content: content kept for parsing (larger non-output content is a violation).
        stream: content kept of a ``stream`` message (the text that can still be shown).
    """

    json_frame: int = 64 * 1024
    content: int = 256 * 1024
    stream: int = 256 * 1024


@dataclass
class Message:
    """A correctly signed message. Nothing in it is trusted beyond its own shape.

    Attributes:
        msg_type, msg_id: from the header.
        parent_id, parent_type: ``msg_id`` / ``msg_type`` of the parent header (``""`` if none).
        content: the content, ``None`` when it was over its cap (not kept).
        stream_text: for an oversized ``stream``: ``(name, text that fit)``.
        dropped_bytes: bytes of content and buffers not kept.
        size: the message's size on the wire.
    """

    msg_type: str
    msg_id: str
    parent_id: str
    parent_type: str
    content: dict[str, Any] | None
    stream_text: tuple[str, str] | None
    dropped_bytes: int
    size: int


@dataclass
class Violation:
    """A message that broke the protocol: ``reason`` says how; ``size`` is its size on the wire,
    ``dropped_bytes`` the part of it that was content or binary buffers not kept.

    ``msg_type`` and ``parent_id`` are set only for a correctly signed, well-formed message whose
    one fault is content over its cap (an ``execute_reply`` carrying a 30 MB error message): the
    caller may still tell that the reply to its request came (``""`` otherwise).
    """

    reason: str
    size: int
    dropped_bytes: int = 0
    msg_type: str = ""
    parent_id: str = ""


class _Bad(Exception):
    pass


class MessageAssembler:
    """Frame sink of one socket: complete messages queue up in :attr:`messages`.

    Args:
        key: the HMAC key.
        limits: byte caps; ``stream_room`` may be lowered per execution (see the client).
        identities: whether messages carry identity frames before the delimiter (PUB topics).
    """

    def __init__(self, key: bytes, limits: Limits | None = None, identities: bool = True) -> None:
        self.key = key
        self.limits = limits or Limits()
        self.identities = identities
        self.messages: deque[Message | Violation] = deque()
        #: how much of a ``stream`` content to keep now (the caller lowers it as output fills)
        self.stream_room = self.limits.stream
        self._reset()

    def _reset(self) -> None:
        self._index = -1  # frames after the delimiter; -1: before it
        self._idents = 0
        self._violation = ""
        self._mac = hmac.new(self.key, digestmod=hashlib.sha256)
        self._signature = b""
        self._header: dict[str, Any] | None = None
        self._frames: list[bytes] = []  # header, parent, metadata, content (kept parts)
        self._content_size = 0
        self._content_keep = 0
        self._dropped = 0
        self._buffers = 0
        self._size = 0
        self._keep = 0
        self._frame = bytearray()
        self._frame_size = 0

    # -- FrameSink ---------------------------------------------------------------------------

    def frame_begin(self, size: int, more: bool) -> None:
        self._more = more
        self._frame_size = size
        self._size += size
        self._frame = bytearray()
        index = self._index
        if index < 0:
            self._idents += 1
            self._keep = len(DELIMITER)
            if self._idents > _MAX_IDENTITIES + 1 or (not self.identities and self._idents > 1):
                self._flag("no <IDS|MSG> delimiter")
        elif index == 0:
            self._keep = _SIGNATURE
        elif index in (1, 2, 3):
            self._keep = self.limits.json_frame
            if size > self._keep:
                part = ("header", "parent header", "metadata")[index - 1]
                self._flag(f"{part} frame of {size} bytes (limit {self._keep})")
        elif index == 4:
            self._keep = self._content_limit()
            self._content_size = size
        else:
            self._keep = 0
            self._buffers += 1

    def frame_data(self, chunk: memoryview) -> None:
        if 1 <= self._index <= 4:
            self._mac.update(chunk)
        room = self._keep - len(self._frame)
        if room > 0:
            self._frame += chunk[:room]

    def frame_end(self) -> None:
        index = self._index
        kept = bytes(self._frame)
        self._frame = bytearray()
        if index < 0:
            if self._frame_size == len(DELIMITER) and kept == DELIMITER:
                self._index = 0
            elif self._frame_size > _MAX_IDENTITY:
                self._flag(f"an identity frame of {self._frame_size} bytes")
        elif index == 0:
            self._signature = kept if self._frame_size == _SIGNATURE else b""
            self._index = 1
        elif index <= 4:
            self._frames.append(kept)
            if index == 1:
                self._header = self._parse_header(kept)
            if index == 4:
                self._dropped += self._frame_size - len(kept)
            self._index += 1
        else:
            self._dropped += self._frame_size
        if not self._more:
            self.messages.append(self._finish())
            self._reset()

    # -- internals ---------------------------------------------------------------------------

    def _flag(self, reason: str) -> None:
        if not self._violation:
            self._violation = reason

    def _parse_header(self, data: bytes) -> dict[str, Any] | None:
        if len(data) < self._frame_size:
            return None
        try:
            header = _json_object(data, "header")
        except _Bad:
            return None
        return header

    def _content_limit(self) -> int:
        msg_type = (self._header or {}).get("msg_type")
        if msg_type == "stream":
            return min(self.limits.stream, self.stream_room)
        return self.limits.content

    def _finish(self) -> Message | Violation:
        size, dropped = self._size, self._dropped
        if self._violation:
            return Violation(self._violation, size, dropped)
        if self._index < 0:
            return Violation("no <IDS|MSG> delimiter", size, dropped)
        if self._index < 5:
            return Violation(f"{self._index} frames after the delimiter; 5 needed", size)
        expected = self._mac.hexdigest().encode()
        if not self._signature or not hmac.compare_digest(expected, self._signature):
            return Violation("a message with an invalid signature", size, dropped)
        if self._buffers:
            return Violation(f"{self._buffers} binary buffers (none were asked for)", size, dropped)
        header, parent, metadata, content = self._frames
        try:
            head = _json_object(header, "header")
            parent_head = _json_object(parent, "parent header")
            _json_object(metadata, "metadata")
            msg_type, msg_id = head.get("msg_type"), head.get("msg_id")
            if not isinstance(msg_type, str) or not isinstance(msg_id, str):
                raise _Bad("a header without msg_type and msg_id strings")
            parent_id = parent_head.get("msg_id", "")
            parent_type = parent_head.get("msg_type", "")
            if not isinstance(parent_id, str) or not isinstance(parent_type, str):
                raise _Bad("a parent header whose msg_id or msg_type is not a string")
            stream_text = None
            if len(content) == self._content_size:
                body: dict[str, Any] | None = _json_object(content, "content")
            elif msg_type in OUTPUT_TYPES:
                body = None
                if msg_type == "stream":
                    stream_text = _stream_prefix(content)
            else:
                reason = f"{msg_type} content of {self._content_size} bytes (limit {self.limits.content})"
                return Violation(reason, size, dropped, msg_type[:100], parent_id[:100])
        except _Bad as exc:
            return Violation(str(exc), size, dropped)
        return Message(
            msg_type=msg_type,
            msg_id=msg_id,
            parent_id=parent_id,
            parent_type=parent_type,
            content=body,
            stream_text=stream_text,
            dropped_bytes=self._dropped,
            size=size,
        )


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise _Bad(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise _Bad(f"{what} is not a JSON object")
    return value


def _stream_prefix(data: bytes) -> tuple[str, str] | None:
    """``(name, text)`` from the first bytes of a ``stream`` content that did not fit:
    ``{"name": "stdout", "text": "...`` (the order jupyter_client's packer writes)."""
    match = _STREAM_HEAD.match(data)
    if match is None:
        return None
    rest = data[match.end() :].decode("utf-8", errors="ignore")
    body = _JSON_STRING_BODY.match(rest)
    text = body.group(0) if body else ""
    for cut in range(7):  # an escape sequence (at most 6 characters) may be cut in half
        try:
            return match.group(1).decode(), json.loads('"' + text[: len(text) - cut] + '"')
        except ValueError:
            continue
    return None
