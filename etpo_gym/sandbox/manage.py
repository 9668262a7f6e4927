"""``etpo-gym sandbox build|status|reap``: manage the Docker sandbox image and leftovers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from etpo_gym.errors import SandboxError
from etpo_gym.sandbox.docker import docker_status
from etpo_gym.sandbox.engine import reap_orphans
from etpo_gym.sandbox.image import build_image, default_image


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
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        if args.verb == "build":
            build_image(tag=args.tag, base=args.base, force=args.force, mirror=args.mirror)
            return 0
        if args.verb == "status":
            ok, reason = docker_status()
            print(("usable: " if ok else "not usable: ") + reason)
            return 0 if ok else 1
        print(f"removed {reap_orphans()} orphaned sandbox resources")
        return 0
    except SandboxError as exc:
        print(f"etpo-gym sandbox {args.verb}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
