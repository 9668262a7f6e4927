"""Defensive file handling: crafted prediction files, planted symlinks, hostile trees (no kernel)."""

from __future__ import annotations

import io
import os
import pickle
import struct
import threading
import time

import numpy as np
import pandas as pd
import pytest

from etpo_gym.errors import OutputError
from etpo_gym.sandbox.files import open_dir_nofollow, remove_tree, save_inputs
from etpo_gym.sandbox.outputs import read_npy


def _npy(header: str, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    size = struct.pack("<H" if version == (1, 0) else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + size + text + data


def _saved(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True, **kwargs)
    return buffer.getvalue()


def _zip() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, pred=np.ones(4))
    return buffer.getvalue()


@pytest.fixture
def out(tmp_path):
    fd = open_dir_nofollow(tmp_path)
    yield tmp_path, fd
    os.close(fd)


def read(out, content: bytes | None = None, **kwargs) -> np.ndarray:
    path, fd = out
    if content is not None:
        (path / "pred.npy").write_bytes(content)
    return read_npy(fd, "pred.npy", **kwargs)


def test_a_plain_array_is_read_with_its_shape_and_order(out):
    np.testing.assert_array_equal(read(out, _saved(np.arange(4.0)), shape=(4,)), np.arange(4.0))
    matrix = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(read(out, _saved(matrix), shape=(2, 3)), matrix)
    assert read(out, _saved(np.array([True, False])), shape=(2,)).dtype == bool


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (_zip(), "zip archive"),
        (pickle.dumps([0.5] * 4), "a pickle"),
        (b"", "no NUMPY magic"),
        (_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (10**11,), }"), "unreadable"),
        (_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000,), }"), "(4,)"),
        (_saved(np.ones(4, dtype=">f8")), "little-endian"),
        (_saved(np.zeros(4, dtype=[("a", "<f8")])), "structured"),
        (_saved(np.array([{}, {}, {}, {}], dtype=object)), "Python objects"),
        (_saved(np.array(["a", "b", "c", "d"])), "accepted kinds"),
        (_saved(np.ones(4, dtype=np.complex128)), "accepted kinds"),
        (_saved(np.ones((4, 1))), "expected (4,)"),
        (_saved(np.ones(4))[:-8], "is 152 bytes"),
        (_saved(np.ones(4)) + b"extra", "is 165 bytes"),
        (_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", version=(3, 0)), "3.0"),
        (b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{", "-byte header"),
        (_npy("{'descr': '<f8', 'shape': (4,), }"), "unreadable"),
        (_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-4,), }"), "negative"),
        (
            _npy(
                "{'descr': " + "[" * 1000 + "]" * 1000 + ", 'fortran_order': False, 'shape': (4,)}"
            ),
            "unreadable",
        ),
    ],
)
def test_crafted_files_are_refused_before_any_allocation(out, content, reason):
    with pytest.raises(OutputError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read(out, content, shape=(4,))


def test_a_declared_huge_array_is_refused_without_a_shape_too(out):
    huge = _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000,), }")
    with pytest.raises(OutputError, match="holds 800000000000 bytes of data; the limit is"):
        read(out, huge)


def test_links_directories_fifos_and_absent_files(out):
    path, _ = out
    (path / "pred.npy").symlink_to("/etc/hostname")
    with pytest.raises(OutputError, match="symbolic link"):
        read(out)
    (path / "pred.npy").unlink()
    (path / "pred.npy").mkdir()
    with pytest.raises(OutputError, match="a directory"):
        read(out)
    (path / "pred.npy").rmdir()
    os.mkfifo(path / "pred.npy")
    started = time.monotonic()
    with pytest.raises(OutputError, match="not a regular file"):
        read(out)  # no writer: a blocking open would hang here
    assert time.monotonic() - started < 5
    (path / "pred.npy").unlink()
    with pytest.raises(FileNotFoundError):
        read(out)
    with pytest.raises(OutputError, match="plain file name"):
        read_npy(out[1], "../pred.npy")


def test_a_symlinked_directory_is_not_opened(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "real")
    with pytest.raises(OSError):
        os.close(open_dir_nofollow(tmp_path / "out"))


def test_remove_tree_never_follows_links_and_survives_read_only_dirs(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("host file")
    tree = tmp_path / "sandbox"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_text("x")
    (tree / "root-link").symlink_to("/")
    (tree / "outside-link").symlink_to(outside)
    (tree / "a" / "b").chmod(0o500)
    (tree / "a").chmod(0o500)
    deep = tree / "deep"
    deep.mkdir()
    for _ in range(300):  # deeper than the remover goes: left behind, but no crash
        deep = deep / "d"
        deep.mkdir()
    remove_tree(tree)
    remove_tree(tree)  # twice is harmless
    assert (outside / "keep.txt").read_text() == "host file"
    assert not (tree / "a").exists() and not (tree / "root-link").is_symlink()


def test_inputs_are_never_written_through_a_planted_symlink(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("host file")
    (data / "x_train.npy").symlink_to(victim)
    (data / "old.npy").write_text("left by the last kernel")
    save_inputs(data, {"x_train": np.arange(3.0), "frame": pd.DataFrame({"a": [1, 2]})})
    assert victim.read_text() == "host file"
    assert sorted(p.name for p in data.iterdir()) == ["frame.pkl", "x_train.npy"]
    np.testing.assert_array_equal(np.load(data / "x_train.npy"), np.arange(3.0))
    assert oct((data / "x_train.npy").stat().st_mode & 0o777) == "0o444"


def test_saved_frames_load_without_pyarrow(tmp_path):
    """Where pyarrow is installed pandas keeps strings in Arrow arrays; the sandbox image has no
    pyarrow, so the pickles written for it hold Python strings (values, labels, index)."""
    pytest.importorskip("pyarrow")
    arrow = pd.StringDtype("pyarrow", na_value=np.nan)
    frame = pd.DataFrame(
        {"when": pd.array(["2024-01-02 10:00", None], dtype=arrow), "n": [1, 2]},
        index=pd.Index(["r1", "r2"], dtype=arrow),
    )
    frame.columns = frame.columns.astype(arrow)
    assert b"pyarrow" in pickle.dumps(frame)  # what was written before
    data = tmp_path / "data"
    data.mkdir()
    save_inputs(data, {"x_train": frame, "y_train": frame["when"]})
    for name in ("x_train", "y_train"):
        raw = (data / f"{name}.pkl").read_bytes()
        assert b"pyarrow" not in raw
    loaded = pd.read_pickle(data / "x_train.pkl")
    assert loaded["when"].tolist()[0] == "2024-01-02 10:00" and pd.isna(loaded["when"].iloc[1])
    assert list(loaded.columns) == ["when", "n"] and list(loaded.index) == ["r1", "r2"]
    assert frame["when"].dtype.storage == "pyarrow"  # the caller's frame is left as it was


def test_a_file_that_keeps_growing_is_read_within_its_declared_size(out):
    path, fd = out
    (path / "pred.npy").write_bytes(_saved(np.ones(4)))
    stop = threading.Event()

    def grow() -> None:
        with open(path / "pred.npy", "ab") as fh:
            while not stop.is_set():
                fh.write(b"x" * 4096)

    thread = threading.Thread(target=grow)
    thread.start()
    try:
        time.sleep(0.05)
        with pytest.raises(OutputError, match="bytes; a"):
            read_npy(fd, "pred.npy", shape=(4,))
    finally:
        stop.set()
        thread.join()
