"""The one kernel core against real kernels on every backend: what the kernel sends is untrusted.

The code in the kernel knows the session key, so it can send correctly signed messages too; these
tests forge, break and flood the kernel's own channels from inside and check that the host
records a protocol error (never an exception, never an infrastructure failure), recovers, and
keeps its own memory bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from etpo_gym.sandbox import Status, make_sandbox

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]

# Helpers the forging cells start with: the kernel's own session, sockets and current parent.
FORGE = """\
import hmac, hashlib
k = get_ipython().kernel
parent = k.get_parent("shell")

def frames(msg_type, content, sign=True):
    parts = [k.session.pack(k.session.msg_header(msg_type)), k.session.pack(parent["header"]),
             b"{}", k.session.pack(content)]
    mac = hmac.new(k.session.key, b"".join(parts), hashlib.sha256).hexdigest().encode()
    return [b"<IDS|MSG>", mac if sign else b"", *parts]

def resign(f):
    f[1] = hmac.new(k.session.key, b"".join(f[2:6]), hashlib.sha256).hexdigest().encode()
    return f
"""

FORGERIES = {
    "bad signature": "f = frames('stream', {'name': 'stdout', 'text': 'forged'}); f[1] = b'0' * 64",
    "unsigned": "f = frames('stream', {'name': 'stdout', 'text': 'forged'}, sign=False)",
    "malformed parent": "f = frames('stream', {'name': 'stdout', 'text': 'x'}); f[3] = b'{'; resign(f)",
    "unknown type": "f = frames('surprise', {})",
    "status without state": "f = frames('status', {'execution_state': 7})",
}


@pytest.fixture(scope="module", params=BACKENDS)
def sb(request):
    if request.param == "docker":
        request.getfixturevalue("docker_ready")
    sandbox = make_sandbox(request.param, timeout=60, pool_size=1, interrupt_grace=5)
    sandbox.reset(seed=0)
    yield sandbox
    sandbox.close()


def run(sandbox, code: str, **kwargs):
    return sandbox.execute(textwrap.dedent(code), **kwargs)


def test_isolation_is_stated(sb):
    if sb.name == "local":
        from etpo_gym.sandbox.confine import namespaces_status

        assert sb.isolation == ("namespaces" if namespaces_status()[0] else "none")
    else:
        assert sb.isolation == "container"


@pytest.mark.parametrize("kind", list(FORGERIES))
def test_a_forged_or_malformed_iopub_message_is_a_protocol_error(sb, kind):
    assert run(sb, "kept = 1").ok
    code = FORGE + FORGERIES[kind] + "\nk.iopub_socket.send_multipart(f)\nprint('real output')"
    result = run(sb, code)
    assert result.status is Status.ERROR, result.error
    assert result.error.startswith("KernelProtocolError: iopub: "), result.error
    assert result.protocol_errors and result.restarted  # the channel cannot be trusted any more
    assert "forged" not in result.stdout
    after = run(sb, "print('kept' in globals())")
    assert after.ok and after.stdout.strip() == "False"


def test_a_forged_shell_reply_is_a_protocol_error(sb):
    code = (
        FORGE
        + "k.session.send(k.shell_stream, 'execute_reply', {'status': 'ok'},"
        + " parent={'header': {'msg_id': 'nobody', 'msg_type': 'execute_request'}},"
        + " ident=k._parent_ident['shell'])\nimport time; time.sleep(0.5)"
    )
    result = run(sb, code)
    assert result.status is Status.ERROR
    assert result.error == "KernelProtocolError: shell: an unrequested 'execute_reply'"
    assert run(sb, "print('next')").stdout.strip() == "next"


def test_a_signed_fake_idle_does_not_end_the_cell_early(sb):
    code = (
        FORGE
        + "k.session.send(k.iopub_socket, 'status', {'execution_state': 'idle'}, parent=parent)\n"
        + "import time; time.sleep(0.5)\nprint('the cell went on')\nraise ValueError('late')"
    )
    result = run(sb, code)
    assert result.status is Status.ERROR and result.error == "ValueError: late"
    assert "the cell went on" in result.stdout and not result.restarted


def test_kernel_death_is_killed_with_its_exit_status(sb):
    result = run(sb, "import os\nos._exit(5)")
    assert result.status is Status.KILLED and result.exit_status == 5 and result.restarted
    assert "exit status 5" in result.error
    assert run(sb, "print(6 * 7)").stdout.strip() == "42"


def test_messages_the_kernel_queues_while_the_host_reads_nothing_all_arrive(sb):
    """Between two cells nobody reads the kernel's output: a thread of the first cell sends
    20 000 signed messages then. ZeroMQ's default queue limit (1 000 messages) would drop most of
    them, and in a cell the same loss takes the idle status or the reply with it, so that code
    which finished is reported as a timeout. The kernel application queues without a limit."""
    count = 20_000
    code = FORGE + textwrap.dedent(
        f"""
        import threading
        def flood():
            for _ in range({count}):
                k.session.send(k.iopub_socket, 'stream', {{'name': 'stdout', 'text': 'q'}},
                               parent=parent)
            open('flood-done', 'w').close()
        threading.Thread(target=flood).start()
        """
    )
    assert run(sb, code).ok
    iopub = sb._kernel.client._conns["iopub"]  # the host's raw byte count of the channel
    before = iopub.bytes_received
    time.sleep(3)  # the thread floods while the host reads nothing
    wait = "import os, time\nwhile not os.path.exists('flood-done'):\n    time.sleep(0.05)"
    assert run(sb, wait).ok  # its idle status comes after every message the thread sent
    size = len(json.dumps({"name": "stdout", "text": "q"})) + 4 * 64  # content, HMAC, headers
    assert iopub.bytes_received - before >= count * size


def test_the_kernels_python_paths_read_alike_on_every_machine_and_backend(sb):
    """Where the kernel's Python lies (a virtual environment here, /opt/venv in the image) is
    neither shown to the agent nor different between backends."""
    code = """
    import json, sklearn, sys
    print(sklearn.__file__, json.__file__, "python%d.%d" % sys.version_info[:2])
    json.loads("{")
    """
    result = run(sb, code)
    assert result.status is Status.ERROR and result.ename == "JSONDecodeError"
    shown = result.stdout + result.traceback + str(result.outputs)
    version = result.stdout.split()[-1]  # the kernel's Python (the image's may differ)
    assert result.stdout.split()[:2] == [
        "site-packages/sklearn/__init__.py",
        f"{version}/json/__init__.py",
    ]
    assert f"File {version}/json/decoder.py:" in result.traceback
    for hidden in ("/opt/venv", "/usr/lib/python", sys.prefix, sys.base_prefix):
        assert hidden not in shown


def test_path_aliases_keep_site_packages_inside_the_standard_library_apart():
    from etpo_gym.sandbox.provisioner import PathAliases

    aliases = PathAliases.of_paths(
        {"purelib": "/p/lib/python3.9/site-packages", "stdlib": "/p/lib/python3.9"}
    )
    text = "/p/lib/python3.9/site-packages/a.py /p/lib/python3.9/b.py /q/lib/python3.9/c.py"
    assert aliases(text) == "site-packages/a.py python3.9/b.py /q/lib/python3.9/c.py"
    assert aliases(aliases(text)) == aliases(text)
    assert PathAliases()(text) == text


# Run in a fresh process whose own peak memory (VmHWM, reset before each flood) is the measure.
BOUND_SCRIPT = """\
import json, sys
from etpo_gym.sandbox import make_sandbox

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

sb = make_sandbox(sys.argv[1], timeout=120, pool_size=0)
sb.reset(seed=0)
sb.execute("x = 1")
report = {}
for name, code in json.loads(sys.argv[2]).items():
    open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
    before = status("VmRSS:")
    r = sb.execute(code)
    report[name] = {"status": str(r.status), "error": r.error, "growth": status("VmHWM:") - before,
                    "dropped": r.dropped_bytes, "tail": r.stdout[-120:]}
sb.close()
print(json.dumps(report))
"""

FLOODS = {
    # One correctly signed message with 100 binary buffers of 15 MiB (1.5 GB on the wire).
    "buffers": FORGE
    + "buf = b'x' * (15 * 2**20)\n"
    + "k.session.send(k.iopub_socket, 'display_data', {'data': {}, 'metadata': {}},"
    + " parent=parent, buffers=[buf] * 100)\nprint('sent')",
    # 50 MB of prints, then a normal end: the cell earned "ok".
    "prints": "import sys\nfor _ in range(50):\n    sys.stdout.write('x' * 1_000_000)\nprint('done')",
}


def test_the_host_memory_stays_bounded_whatever_the_kernel_sends(backend):
    done = subprocess.run(
        [sys.executable, "-c", BOUND_SCRIPT, backend, json.dumps(FLOODS)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    buffers, prints = report["buffers"], report["prints"]
    assert buffers["status"] == "error" and "binary buffers" in buffers["error"]
    assert buffers["dropped"] >= 100 * 15 * 2**20
    assert prints["status"] == "ok" and prints["dropped"] > 48_000_000
    assert prints["tail"].endswith(f"[output truncated: {prints['dropped']} bytes dropped]\n")
    for name in ("buffers", "prints"):
        assert report[name]["growth"] < 64 * 2**20, (name, report[name]["growth"])


def test_a_huge_exception_message_is_an_error_with_the_message_capped(sb):
    result = run(sb, "raise ValueError('x' * 30_000_000)", timeout=120)
    assert result.status is Status.ERROR, result.error
    assert result.ename == "ValueError" and not result.protocol_errors, result.protocol_errors
    assert result.evalue.endswith("characters truncated]") and len(result.evalue) <= 2000


def test_an_oversized_error_reply_ends_the_cell_as_a_protocol_error(sb):
    """Code that undoes the kernel's own cap sends a 60 MB ``execute_reply``: the host records
    it as the reply, too big to read (a protocol error), instead of waiting for the deadline."""
    code = """
    shell = get_ipython()
    shell._showtraceback = type(shell)._showtraceback.__get__(shell)
    shell.events.callbacks["post_run_cell"].clear()
    raise ValueError('x' * 30_000_000)
    """
    result = run(sb, code, timeout=120)
    assert result.status is Status.ERROR, result.error
    assert result.error.startswith("KernelProtocolError: shell: execute_reply content of")
    assert result.restarted
