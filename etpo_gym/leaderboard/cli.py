"""``etpo-gym bench`` and ``etpo-gym leaderboard``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from etpo_gym.errors import EtpoGymError


def _bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="etpo-gym bench",
        description="Run agents × tasks × seeds (one episode each) into DIR; resumable.",
    )
    p.add_argument(
        "--agents", required=True, help="comma-separated agent specs, e.g. logreg,hist-gb,lm"
    )
    p.add_argument(
        "--tasks", default="core-v0", help="a suite (core-v0, real-v0, smoke-v0) or T1,T2"
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell (0..N-1)")
    p.add_argument("--out", required=True, help="output directory (re-run the command to resume)")
    p.add_argument("--sandbox", default="local", help="local, docker or auto")
    p.add_argument("--env", default="DataSci-v0", help="env id, e.g. DataSciNotebook-v0")
    p.add_argument("--jobs", type=int, default=1, help="cells in parallel (processes)")
    p.add_argument("--max-steps", type=int, default=5, help="attempts per episode")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per attempt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("bench", "leaderboard"):
        print("usage: etpo-gym {bench,leaderboard} ...", file=sys.stderr)
        return 2
    verb, rest = argv[0], argv[1:]
    try:
        if verb == "leaderboard":
            p = argparse.ArgumentParser(
                prog="etpo-gym leaderboard",
                description="Re-render a leaderboard from DIR's results.",
            )
            p.add_argument("dir")
            args = p.parse_args(rest)
            from .board import render

            render(args.dir)
            print((Path(args.dir) / "leaderboard.md").read_text())
            return 0
        args = _bench_parser().parse_args(rest)
        from .runner import run_benchmark

        started = time.perf_counter()
        out = run_benchmark(
            [a.strip() for a in args.agents.split(",") if a.strip()],
            args.tasks,
            args.seeds,
            args.out,
            sandbox=args.sandbox,
            jobs=args.jobs,
            max_steps=args.max_steps,
            timeout=args.timeout,
            progress=not args.quiet,
            env_id=args.env,
        )
        print((out / "leaderboard.md").read_text())
        print(f"wall time: {time.perf_counter() - started:.1f} s; results in {out}")
        return 0
    except EtpoGymError as exc:
        print(f"etpo-gym {verb}: {exc}", file=sys.stderr)
        return 2
