"""``etpo-gym sandbox build|status|reap|serve``: manage the Docker sandbox image, leftovers and
the machine's pod server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from etpo_gym.errors import ConfigError, SandboxError
from etpo_gym.sandbox import podserver
from etpo_gym.sandbox.docker import docker_status
from etpo_gym.sandbox.engine import reap_orphans
from etpo_gym.sandbox.image import build_image, default_image
from etpo_gym.sandbox.podserver import DEFAULT_SOCKET


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; returns the exit status (0 success, 1 failure)."""
    parser = argparse.ArgumentParser(prog="etpo-gym sandbox", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("build", help="build the sandbox image unless it is already built")
    p.add_argument("--tag", default=None, help=f"image tag (default: {default_image()})")
    p.add_argument(
        "--base", default=None, help="base image (default: python:X.Y-slim or bootstrap)"
    )
    p.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    p.add_argument("--mirror", default=None, help="Debian mirror for debootstrap (default: apt's)")
    sub.add_parser("status", help="say whether the Docker sandbox can be used here, and why not")
    sub.add_parser("reap", help="remove sandbox containers and volumes left by dead processes")
    p = sub.add_parser(
        "serve",
        help="keep Docker sandbox pods ready for every process of this machine (until SIGTERM)",
        description="Keep pods ready, imports done, and hand them to the Docker sandboxes of "
        "other processes (their pod_server='auto' finds this socket). Pods with other settings "
        "than these are started by their process as without a server.",
    )
    p.add_argument("--socket", default=DEFAULT_SOCKET, help=f"socket path ({DEFAULT_SOCKET})")
    p.add_argument("--pods", type=int, default=2, help="pods kept ready (default 2)")
    p.add_argument(
        "--memory-limit", type=int, default=None, help="bytes per pod (the sandbox's default)"
    )
    p.add_argument("--cpus", type=float, default=None, help="CPU limit per pod")
    p.add_argument("--image", default=None, help="image tag (default: the project's)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        if args.verb == "build":
            build_image(tag=args.tag, base=args.base, force=args.force, mirror=args.mirror)
            return 0
        if args.verb == "status":
            ok, reason = docker_status()
            print(("usable: " if ok else "not usable: ") + reason)
            path = podserver.resolve("auto")
            if ok and path is not None:
                try:
                    facts = podserver.server_status(path)
                    print(
                        f"pod server at {path}: ready pods: {facts['ready']} (pid {facts['pid']})"
                    )
                except SandboxError as exc:
                    print(f"pod server: {exc}")
            return 0 if ok else 1
        if args.verb == "serve":
            chosen = {"memory_limit": args.memory_limit, "cpus": args.cpus, "image": args.image}
            settings = {key: value for key, value in chosen.items() if value is not None}
            return podserver.main(args.socket, args.pods, settings)
        print(f"removed {reap_orphans()} orphaned sandbox resources")
        return 0
    except SandboxError as exc:
        print(f"etpo-gym sandbox {args.verb}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"etpo-gym sandbox {args.verb}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
