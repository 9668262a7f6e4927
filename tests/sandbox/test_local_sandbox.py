"""The local kernel sandbox: real ipykernel processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etpo_gym.errors import ConfigError
from etpo_gym.sandbox import Status, make_sandbox
from etpo_gym.sandbox.local import LocalSandbox, reap_stale_dirs


@pytest.fixture(scope="module")
def sb():
    sandbox = LocalSandbox(
        timeout=20, memory_limit=2 * 2**30, max_output_bytes=20_000, interrupt_grace=5, pool_size=1
    )
    sandbox.start()
    yield sandbox
    sandbox.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_runs_code_and_captures_output(sb):
    result = sb.execute("print('hello'); 6 * 7")
    assert result.status is Status.OK
    assert "hello" in result.stdout
    assert any(out.get("data", {}).get("text/plain") == "42" for out in result.outputs)


def test_error_carries_type_message_and_traceback(sb):
    result = sb.execute("def f():\n    raise ValueError('bad value 17')\nf()")
    assert result.status is Status.ERROR
    assert result.error == "ValueError: bad value 17"
    assert "raise ValueError" in result.traceback
    assert "\x1b[" not in result.traceback


def test_output_is_capped(sb):
    result = sb.execute("print('x' * 200_000)")
    assert result.status is Status.OK
    assert len(result.stdout) < 21_000
    assert result.output_truncated and result.dropped_bytes >= 180_000
    assert f"[output truncated: {result.dropped_bytes} bytes dropped]" in result.stdout


def test_timeout_interrupts_and_keeps_state(sb):
    sb.execute("kept = 123")
    result = sb.execute("import time\ntime.sleep(30)", timeout=1)
    assert result.status is Status.TIMEOUT
    assert not result.restarted
    assert sb.execute("print(kept)").stdout.strip() == "123"


def test_timeout_escalates_to_restart_when_interrupt_is_ignored(sb):
    pid = sb.kernel_pid
    code = textwrap.dedent(
        """
        import signal, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            time.sleep(0.1)
        """
    )
    result = sb.execute(code, timeout=1)
    assert result.status is Status.TIMEOUT
    assert result.restarted
    assert sb.kernel_pid != pid
    assert not _pid_alive(pid)
    assert sb.execute("print('fresh')").stdout.strip() == "fresh"


def test_kernel_death_is_reported_and_recovered(sb):
    result = sb.execute("import os\nos._exit(7)")
    assert result.status is Status.KILLED
    assert result.exit_status == 7 and "exit status 7" in result.error
    assert result.restarted
    assert sb.execute("print(1 + 1)").stdout.strip() == "2"


def test_memory_cap_gives_oom_restarts_and_recovers(sb):
    sb.execute("kept = 1")
    result = sb.execute("import numpy as np\nblob = np.ones(2**33, dtype=np.uint8)")
    assert result.status is Status.OOM and result.oom
    assert "MemoryError" in result.error
    assert result.restarted and result.state_lost  # the memory may stay referenced otherwise
    assert sb.execute("print('kept' in globals())").stdout.strip() == "False"


def test_reset_gives_fresh_state_seed_and_empty_dirs(sb):
    sb.execute("leftover = 1\nopen('junk.txt', 'w').write('x')")
    sb.reset(seed=1234)
    code = (
        "import os, random\n"
        "print('leftover' in globals(), os.path.exists('junk.txt'), os.environ['PYTHONHASHSEED'])"
    )
    assert sb.execute(code).stdout.split() == ["False", "False", "1234"]
    first = sb.execute("import random; print(random.random())").stdout
    sb.reset(seed=1234)
    assert sb.execute("import random; print(random.random())").stdout == first


def test_environment_is_scrubbed(sb):
    os.environ["ETPO_TEST_SECRET"] = "s3cr3t"
    try:
        sb.reset(seed=0)
        out = sb.execute("import os; print(sorted(os.environ))").stdout
    finally:
        del os.environ["ETPO_TEST_SECRET"]
    assert "ETPO_TEST_SECRET" not in out
    assert "ETPO_DATA_DIR" in out


def test_data_in_and_predictions_out(sb):
    sb.reset(seed=0)
    frame = pd.DataFrame({"a": [1.0, None], "b": ["x", "y"]})
    sb.put_data({"x": np.arange(6.0).reshape(3, 2), "frame": frame})
    code = textwrap.dedent(
        """
        import os, numpy as np, pandas as pd
        d = os.environ['ETPO_DATA_DIR']
        x = np.load(os.path.join(d, 'x.npy'))
        f = pd.read_pickle(os.path.join(d, 'frame.pkl'))
        np.save(os.path.join(os.environ['ETPO_OUT_DIR'], 'pred.npy'), x.sum(axis=1))
        print(f['b'].tolist(), int(f['a'].isna().sum()))
        """
    )
    result = sb.execute(code)
    assert result.status is Status.OK, result.error
    assert "['x', 'y'] 1" in result.stdout
    np.testing.assert_array_equal(sb.read_output("pred.npy", shape=(3,)), [1.0, 5.0, 9.0])
    with pytest.raises(ValueError, match=r"shape \(3,\); expected \(4,\)"):
        sb.read_output("pred.npy", shape=(4,))


def test_data_files_are_read_only(sb):
    sb.reset(seed=0)
    sb.put_data({"x": np.zeros(3)})
    code = "import os; open(os.path.join(os.environ['ETPO_DATA_DIR'], 'x.npy'), 'wb').write(b'1')"
    result = sb.execute(code)
    if os.geteuid() == 0 and sb.isolation == "none" and result.status is Status.OK:
        pytest.skip("a kernel left as uid 0 owns the files; mode bits are advisory")
    assert result.status is Status.ERROR
    assert "PermissionError" in result.error or "Read-only file system" in result.error


@pytest.mark.parametrize(
    "code, message",
    [
        ("os.symlink('/etc/hostname', os.path.join(out, 'pred.npy'))", "symbolic link"),
        ("np.save(os.path.join(out, 'pred.npy'), np.array([{'a': 1}], dtype=object))", "objects"),
        ("np.save(os.path.join(out, 'pred.npy'), np.zeros(3_000_000))", "limit"),
        ("os.mkdir(os.path.join(out, 'pred.npy'))", "directory"),
    ],
)
def test_read_output_refuses_hostile_files(sb, code, message):
    sb.reset(seed=0)
    prefix = "import os, numpy as np\nout = os.environ['ETPO_OUT_DIR']\n"
    assert sb.execute(prefix + code).status is Status.OK
    with pytest.raises(ValueError, match=message):
        sb.read_output("pred.npy", max_bytes=1_000_000)


def test_missing_output_is_file_not_found(sb):
    sb.reset(seed=0)
    with pytest.raises(FileNotFoundError):
        sb.read_output("pred.npy")


def test_parent_memory_is_unreadable(sb):
    code = textwrap.dedent(
        """
        import os
        try:
            with open(f"/proc/{os.getppid()}/mem", "rb") as fh:
                fh.read(1)
            print("readable")
        except OSError as exc:
            print("denied", type(exc).__name__)
        """
    )
    assert sb.execute(code).stdout.startswith("denied")


def test_close_frees_kernel_and_directory_and_is_idempotent():
    sandbox = make_sandbox("local", pool_size=0)
    sandbox.start()
    pid, root = sandbox.kernel_pid, sandbox.root
    assert _pid_alive(pid) and root.exists()
    sandbox.close()
    sandbox.close()
    assert sandbox.closed
    deadline = time.monotonic() + 5
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(pid)
    assert not root.exists()


def test_context_manager_closes():
    with LocalSandbox(pool_size=0) as sandbox:
        root = sandbox.root
        assert sandbox.execute("1").ok
    assert sandbox.closed and not root.exists()


def test_killed_owner_leaves_nothing_after_reap(tmp_path):
    script = tmp_path / "owner.py"
    script.write_text(
        "from etpo_gym.sandbox.local import LocalSandbox\n"
        "import sys, time\n"
        "sb = LocalSandbox(pool_size=0); sb.start()\n"
        "print(sb.kernel_pid, sb.root, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pid_text, root_text = owner.stdout.readline().split()
    kernel_pid, root = int(pid_text), Path(root_text)
    assert _pid_alive(kernel_pid) and root.exists()
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 5
    while _pid_alive(kernel_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(kernel_pid), "the kernel outlived its killed owner"
    assert root.exists()
    assert reap_stale_dirs() >= 1
    assert not root.exists()


@pytest.mark.parametrize(
    "kwargs, bad",
    [({"timeout": 0}, "timeout=0"), ({"memory_limit": 1000}, "memory_limit=1000")],
)
def test_bad_settings_are_named(kwargs, bad):
    with pytest.raises(ConfigError, match=bad):
        LocalSandbox(**kwargs)


def test_unknown_backend_is_named():
    with pytest.raises(ConfigError, match="sandbox='podman'"):
        make_sandbox("podman")


def test_prepared_kernel_is_adopted_on_reset_with_that_seed():
    with LocalSandbox(timeout=20, pool_size=1) as sandbox:
        sandbox.reset(seed=1)
        sandbox.prepare(99)
        first = sandbox.kernel_pid
        sandbox.reset(seed=99)
        assert sandbox.kernel_pid != first and not _pid_alive(first)
        out = sandbox.execute(
            "import os, random; print(os.environ['PYTHONHASHSEED'], random.random())"
        )
        with LocalSandbox(timeout=20, pool_size=0) as cold:
            cold.reset(seed=99)
            expected = cold.execute(
                "import os, random; print(os.environ['PYTHONHASHSEED'], random.random())"
            )
        assert out.stdout == expected.stdout and out.stdout.startswith("99 ")
        # a prepared kernel for another seed is not used
        sandbox.prepare(5)
        sandbox.reset(seed=6)
        assert (
            sandbox.execute("import os; print(os.environ['PYTHONHASHSEED'])").stdout.strip() == "6"
        )
