"""The kernel application both sandboxes start: ipykernel's, with send queues that drop nothing.

A ZeroMQ PUB socket (iopub) drops a message when the queue to a slow reader already holds
``SNDHWM`` messages (1000 by default); a ROUTER socket (shell, control) does the same. A cell that
sends many messages while the host is busy would then lose its own ``idle`` status or its
``execute_reply``, and the host, waiting for them, would report a timeout for code that finished.
Without a limit nothing the kernel sends is dropped: a backlog waits in the kernel's own memory,
which the sandbox caps, and the host reads it at its pace under its own byte caps.

This file is copied into the sandbox image beside the supervisor, which imports it; the local
sandbox runs its source with ``python -c``. It imports nothing from ``etpo_gym``.
"""

import sys

if __name__ == "__main__" and sys.path and sys.path[0] == "":
    del sys.path[0]  # as ipykernel_launcher does: nothing is imported from the working directory

import zmq
from ipykernel.kernelapp import IPKernelApp


class SandboxKernelApp(IPKernelApp):
    """``IPKernelApp`` whose bound sockets (shell, control, stdin, iopub) never drop a message."""

    def _bind_socket(self, s, port):
        s.setsockopt(zmq.SNDHWM, 0)  # before the bind: the option applies to later connections
        return super()._bind_socket(s, port)


if __name__ == "__main__":
    SandboxKernelApp.launch_instance()
