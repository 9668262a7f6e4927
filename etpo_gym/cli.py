"""The ``etpo-gym`` command (also ``python -m etpo_gym``).

Verbs: ``tasks``, ``try``, ``train`` and ``eval`` (the ETPO agent; needs the ``[agent]`` extra),
``bench`` and ``leaderboard``, ``sandbox build``. Heavy modules are imported by the verb that needs
them, so ``etpo-gym tasks`` never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError, EtpoGymError


def _task_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="task name, or a path to a .csv file")
    parser.add_argument("--target", help="target column (CSV tasks)")
    parser.add_argument("--drop", default="", help="comma-separated columns to ignore (CSV tasks)")


def _drop(text: str) -> list[str] | None:
    names = [name.strip() for name in text.split(",") if name.strip()]
    return names or None


def cmd_tasks(args: argparse.Namespace) -> int:
    from etpo_gym import list_tasks

    rows = [task.summary() for task in list_tasks()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'task':<22} {'type':<11} {'metric':<8} {'rows':>6} {'feat':>5} {'cls':>4}  input"
    print(header)
    print("-" * len(header))
    for row in rows:
        classes = "-" if row["classes"] is None else str(row["classes"])
        print(
            f"{row['name']:<22} {row['task_type']:<11} {row['metric']:<8} {row['rows']:>6} "
            f"{row['features']:>5} {classes:>4}  {row['input']}"
        )
    return 0


def cmd_try(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import etpo_gym  # noqa: F401 - registers the envs

    try:
        code = sys.stdin.read() if args.code == "-" else Path(args.code).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--code {args.code}: cannot be read ({exc}); pass a file or -") from None
    env = gym.make(
        args.env,
        task=args.task,
        target=args.target,
        drop=_drop(args.drop),
        sandbox=args.sandbox,
        timeout=args.timeout,
        record_dir=args.record,
    )
    try:
        observation, info = env.reset(seed=args.seed)
        if info.get("infra_error"):
            print(f"sandbox error: {info['error']}", file=sys.stderr)
        observation, reward, terminated, truncated, info = env.step(code)
    finally:
        env.close()
    if args.json:
        record: dict[str, Any] = {
            "reward": reward,
            "status": info["status"],
            "terminated": terminated,
            "truncated": truncated,
            "observation": observation,
            "info": info,
        }
        print(json.dumps(record, indent=2, default=str))
    else:
        print(f"reward: {reward:.4f}   status: {info['status']}   score: {info['score']}")
        if info["error"]:
            print(f"error: {info['error']}")
        if info.get("notebook"):
            print(f"notebook: {info['notebook']}")
        print(
            f"terminated: {terminated}   truncated: {truncated}   elapsed: {info['elapsed_s']:.2f} s"
        )
        print("\n--- next observation ---\n" + observation)
    return 0 if not info.get("infra_error") else 3


def cmd_agent(args: argparse.Namespace, rest: list[str]) -> int:
    try:
        from etpo_agents.etpo.cli import main as etpo_main
    except ImportError as exc:
        print(
            f"etpo-gym {args.verb}: the ETPO agent needs the [agent] extra "
            f"(pip install 'etpo-gym[agent]'): {exc}",
            file=sys.stderr,
        )
        return 2
    return int(etpo_main([args.verb, *rest]) or 0)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from etpo_gym.sandbox import manage

    return int(manage.main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etpo-gym", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("tasks", help="list the built-in tasks")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("try", help="run one step of code on a task and print the outcome")
    _task_args(p)
    p.add_argument("--code", required=True, help="file with a build_model body or def ('-': stdin)")
    p.add_argument("--sandbox", default="local", help="local, docker or auto (default: local)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per step")
    p.add_argument("--env", default="DataSci-v0", help="registered env id")
    p.add_argument("--record", default=None, help="directory for the episode notebook")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_try)

    for verb, text in (("train", "train the ETPO agent"), ("eval", "evaluate an ETPO checkpoint")):
        p = sub.add_parser(verb, help=text, add_help=False)
        p.set_defaults(func=None)

    for verb, text in (("bench", "run a leaderboard"), ("leaderboard", "render a leaderboard")):
        p = sub.add_parser(verb, help=text, add_help=False)
        p.set_defaults(func=None)

    p = sub.add_parser("sandbox", help="manage the Docker sandbox image (sandbox build)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in ("train", "eval"):
        return cmd_agent(argparse.Namespace(verb=argv[0]), argv[1:])
    if argv and argv[0] in ("bench", "leaderboard"):
        from etpo_gym.leaderboard.cli import main as board_main

        return int(board_main(argv) or 0)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EtpoGymError as exc:
        print(f"etpo-gym {args.verb}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
