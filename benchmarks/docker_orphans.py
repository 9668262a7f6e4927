"""How long after its owner's SIGKILL a Docker sandbox's containers and volumes are gone.

Each run starts an owner process with a sandbox (a kernel that ran a cell, and a pre-started
spare in a second pod), kills it with SIGKILL and times until the engine lists none of its
labelled containers and volumes; nothing else starts a sandbox meanwhile.

    python benchmarks/docker_orphans.py [RUNS]
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

from etpo_gym.sandbox.docker import list_resources

OWNER = """\
import time
from etpo_gym.sandbox.docker import DockerSandbox
sb = DockerSandbox(pool_size=1)
sb.reset(seed=0); sb.prepare(1)
assert sb.execute("x = 1").ok
time.sleep(3)  # the spare's pod is up by now
print("ready", flush=True)
time.sleep(600)
"""


def main() -> None:
    times = []
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        count = len(list_resources(owner_pid=owner.pid))
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        killed = time.monotonic()
        while list_resources(owner_pid=owner.pid):
            time.sleep(0.05)
        times.append(time.monotonic() - killed)
        print(f"{count} containers and volumes gone {times[-1]:.2f} s after the SIGKILL")
    print(
        f"median {statistics.median(times):.2f} s, max {max(times):.2f} s, "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
