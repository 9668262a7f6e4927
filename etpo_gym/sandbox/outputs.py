"""Reading a ``.npy`` file that untrusted code wrote, without trusting anything in it.

:func:`read_npy` opens the file through a directory descriptor without following a symlink and
without blocking on a FIFO, refuses anything but a regular file, reads a bounded head, checks the
magic, version and header (parsed by numpy's own header reader), the dtype (plain little-endian
numbers of the accepted kinds: no object, structured, subarray, string or big-endian dtypes) and
the shape against what the caller expects, and the file size against header + n × itemsize —
all before allocating the array, which is then read into a buffer of exactly that size.
"""

from __future__ import annotations

import io
import os
import stat
import struct

import numpy as np
from numpy.lib import format as npy_format

from etpo_gym.errors import OutputError

__all__ = ["OutputError", "read_npy"]

MAGIC = b"\x93NUMPY"
#: Larger headers are refused (numpy writes a few dozen bytes for a plain array).
MAX_HEADER = 4096
_VERSIONS = {(1, 0): ("<H", 10), (2, 0): ("<I", 12)}


def _describe(head: bytes) -> str:
    if head.startswith(b"PK"):
        return "a zip archive (np.savez?), not a .npy array"
    if head[:1] == b"\x80":
        return "a pickle, not a .npy array"
    return "not a .npy file (no NUMPY magic)"


def read_npy(
    dir_fd: int,
    name: str,
    *,
    shape: tuple[int, ...] | None = None,
    kinds: str = "biuf",
    max_bytes: int = 64 * 2**20,
) -> np.ndarray:
    """Read ``name`` in the directory ``dir_fd`` as a numeric array; see the module docstring.

    Args:
        dir_fd: descriptor of the directory (opened without following symlinks).
        name: a plain file name.
        shape: the exact shape expected, or ``None`` for any.
        kinds: accepted dtype kinds (``b`` bool, ``i``/``u`` integers, ``f`` floats).
        max_bytes: largest array accepted.

    Raises:
        FileNotFoundError: there is no such file.
        OutputError: anything else is wrong; the message says what.
    """
    if not name or "/" in name or name.startswith("."):
        raise OutputError(name, "must be a plain file name")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise FileNotFoundError(f"the code wrote no {name}") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the name is a symlink
            raise OutputError(name, "is a symbolic link; write a regular file") from None
        raise OutputError(name, f"cannot be opened ({os.strerror(exc.errno or 0)})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise OutputError(name, f"is {kind}")
        head = os.pread(fd, 16 + MAX_HEADER, 0)
        array_shape, fortran, dtype, offset = _parse_header(name, head)
        _check_dtype(name, dtype, kinds)
        count = 1
        for dim in array_shape:
            count *= dim
        if shape is not None and tuple(array_shape) != tuple(shape):
            raise OutputError(name, f"has shape {array_shape}; expected {tuple(shape)}")
        size = count * dtype.itemsize
        if size > max_bytes:
            raise OutputError(name, f"holds {size} bytes of data; the limit is {max_bytes}")
        if info.st_size != offset + size:
            raise OutputError(
                name,
                f"is {info.st_size} bytes; a {array_shape} {dtype} array is {offset + size}",
            )
        array = np.empty(count, dtype=dtype)
        view = memoryview(array).cast("B")
        done = 0
        while done < size:
            got = os.preadv(fd, [view[done:]], offset + done)
            if not got:
                raise OutputError(name, "shrank while it was being read")
            done += got
    finally:
        os.close(fd)
    return array.reshape(array_shape, order="F" if fortran else "C")


def _parse_header(name: str, head: bytes) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    if not head.startswith(MAGIC) or len(head) < 10:
        raise OutputError(name, _describe(head))
    version = (head[6], head[7])
    if version not in _VERSIONS:
        raise OutputError(name, f".npy format version {version[0]}.{version[1]} is not accepted")
    length_format, start = _VERSIONS[version]
    if len(head) < start:
        raise OutputError(name, "is truncated inside its header")
    (length,) = struct.unpack(length_format, head[8:start])
    if length > MAX_HEADER:
        raise OutputError(name, f"has a {length}-byte header; the limit is {MAX_HEADER}")
    if len(head) < start + length:
        raise OutputError(name, "is truncated inside its header")
    reader = (
        npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    )
    try:
        array_shape, fortran, dtype = reader(
            io.BytesIO(head[8 : start + length]), max_header_size=MAX_HEADER
        )
    except Exception as exc:  # numpy's parser: ValueError, SyntaxError, RecursionError, ...
        raise OutputError(name, f"has an unreadable .npy header ({type(exc).__name__})") from None
    if any(dim < 0 for dim in array_shape):
        raise OutputError(name, f"declares a negative dimension {array_shape}")
    return tuple(array_shape), bool(fortran), dtype, start + length


def _check_dtype(name: str, dtype: np.dtype, kinds: str) -> None:
    if dtype.hasobject:
        raise OutputError(name, "holds Python objects (a pickle); save numbers")
    if dtype.fields is not None or dtype.subdtype is not None:
        raise OutputError(name, f"has a structured dtype {dtype}; save a plain numeric array")
    if dtype.kind not in kinds:
        raise OutputError(name, f"has dtype {dtype}; accepted kinds: {kinds!r} (numbers)")
    if dtype.byteorder == ">" or dtype.itemsize > 8:
        raise OutputError(name, f"has dtype {dtype.str}; save little-endian numbers of <= 8 bytes")
