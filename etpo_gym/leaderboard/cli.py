"""``etpo-gym bench`` and ``etpo-gym leaderboard`` (verbs of :mod:`etpo_gym.cli`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError


def _env_kwargs(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--env-kwargs {text!r} is not JSON ({exc.msg}); give an object such as "
            '\'{"prompt_style": "rich"}\''
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            f"--env-kwargs {text!r}: give a JSON object, e.g. '{{\"error_reward\": -2}}'"
        )
    return value


def cmd_bench(args: argparse.Namespace) -> int:
    from .runner import run_benchmark

    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    if not agents:
        raise ConfigError(f"--agents {args.agents!r}: give at least one agent spec")
    env_kwargs = _env_kwargs(args.env_kwargs)
    started = time.perf_counter()
    out = run_benchmark(
        agents,
        args.tasks,
        args.seeds,
        args.out,
        sandbox=args.sandbox,
        jobs=args.jobs,
        max_steps=args.max_steps,
        timeout=args.timeout,
        progress=not args.quiet,
        first_seed=args.first_seed,
        env_id=args.env,
        env_kwargs=env_kwargs,
        log=lambda line: print(f"etpo-gym bench: {line}", file=sys.stderr),
        ray=args.ray,
        ray_cpus=args.ray_cpus,
    )
    print((out / "leaderboard.md").read_text())
    print(f"wall time: {time.perf_counter() - started:.1f} s; results in {out}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .board import render

    render(args.dir)
    sys.stdout.write((Path(args.dir) / "leaderboard.md").read_text())
    return 0


def add_bench(sub: Any) -> None:
    """The ``bench`` verb."""
    from etpo_gym.cli import add_env_args

    from .suites import SUITES

    suites = ", ".join(s.id for s in SUITES.values())
    p = sub.add_parser(
        "bench",
        help="run agents × tasks × seeds into a leaderboard (resumable)",
        description="Run one episode per agent, task and seed into OUT, then write "
        "leaderboard.md/.csv/.json and plots. Re-run the same command to resume a killed run.",
    )
    p.add_argument(
        "--agents",
        required=True,
        metavar="SPECS",
        help="comma-separated agent specs: registered agents (etpo-gym agents lists them), "
        "module:attr, or path/to/file.py:attr",
    )
    p.add_argument(
        "--tasks",
        default="core-v0",
        metavar="SUITE|TASKS",
        help=f"a suite ({suites}) or T1,T2,… (default: %(default)s)",
    )
    p.add_argument(
        "--seeds", type=int, default=3, metavar="N", help="episodes per cell (default: %(default)s)"
    )
    p.add_argument(
        "--first-seed", type=int, default=0, metavar="N", help="first seed (default: %(default)s)"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory (re-run the command to resume)",
    )
    p.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="cells in parallel (default: %(default)s)"
    )
    p.add_argument(
        "--ray",
        default=None,
        metavar="ADDRESS",
        help="run the cells as Ray tasks on a cluster: host:port, ray://host:port, auto (the "
        "cluster on this machine) or local (a private one-node Ray); needs etpo-gym[ray]",
    )
    p.add_argument(
        "--ray-cpus",
        type=float,
        default=1.0,
        metavar="N",
        help="with --ray: CPUs each cell reserves (default: %(default)s, one cell per CPU)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=5,
        metavar="N",
        help="attempts (DataSciNotebook-v0: cells) per episode (default: %(default)s)",
    )
    add_env_args(p)
    p.add_argument(
        "--env-kwargs",
        default="{}",
        metavar="JSON",
        help='more gym.make keywords as a JSON object, e.g. \'{"prompt_style": "rich"}\'',
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)


def add_leaderboard(sub: Any) -> None:
    """The ``leaderboard`` verb."""
    p = sub.add_parser(
        "leaderboard",
        help="re-render a leaderboard from a bench directory",
        description="Re-render leaderboard.md/.csv/.json and the plots from DIR's run.json and "
        "results.jsonl alone, and print leaderboard.md.",
    )
    p.add_argument("dir", metavar="DIR", help="a directory written by etpo-gym bench")
    p.set_defaults(func=cmd_leaderboard)
