"""The ``etpo-gym`` command (also ``python -m etpo_gym``).

Verbs: ``tasks``, ``agents``, ``try``, ``eval``, ``bench``, ``leaderboard``, ``sandbox``, and
the verbs that installed packages register in the entry-point group ``etpo_gym.commands`` (the
agents package adds ``train``). Heavy modules are imported by the verb that needs them, so ``etpo-gym tasks``
never imports torch. Bad input ends in one line naming the value and what is accepted, exit
status 2, and nothing written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError, EtpoGymError

#: Entry-point group in which packages register verbs of ``etpo-gym`` (see docs/agents.md).
COMMAND_GROUP = "etpo_gym.commands"
BUILTIN_VERBS = ("tasks", "agents", "try", "eval", "bench", "leaderboard", "sandbox")
DESCRIPTION = (
    "Gymnasium environments in which an agent writes data-science code that runs in a sandboxed "
    "Jupyter kernel and is scored on hidden labels; agents, leaderboards and the ETPO trainer."
)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``etpo-gym try: argument --seed: invalid int value: 'x'``."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _task_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task", required=True, metavar="TASK", help="task name (etpo-gym tasks), or a CSV path"
    )
    parser.add_argument("--target", metavar="COLUMN", help="target column of a CSV task")
    parser.add_argument(
        "--drop",
        default="",
        metavar="COLUMNS",
        help="comma-separated columns to ignore (CSV tasks)",
    )


def add_env_args(
    parser: argparse.ArgumentParser, timeout_help: str = "seconds per attempt"
) -> None:
    """``--sandbox``, ``--env`` and ``--timeout``, with the env's defaults."""
    import etpo_gym
    from etpo_gym.sandbox import SANDBOXES

    parser.add_argument(
        "--sandbox",
        default="auto",
        choices=SANDBOXES,
        help="where code runs: auto = Docker when usable, else local (default: %(default)s)",
    )
    parser.add_argument(
        "--env",
        default="DataSci-v0",
        choices=etpo_gym.ENV_IDS,
        metavar="ID",
        help="env id: %(choices)s (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help=f"{timeout_help} (default: %(default)s)",
    )


def _drop(text: str) -> list[str] | None:
    names = [name.strip() for name in text.split(",") if name.strip()]
    return names or None


def chosen_sandbox(requested: str, verb: str) -> str:
    """Resolve ``--sandbox`` once and say on stderr which backend runs the code (and why, for
    ``auto``)."""
    from etpo_gym.leaderboard.runner import resolve_sandbox

    backend, why = resolve_sandbox(requested)
    print(f"etpo-gym {verb}: sandbox {backend}{why}", file=sys.stderr)
    return backend


def cmd_tasks(args: argparse.Namespace) -> int:
    from etpo_gym import get_task, list_tasks

    if args.suite:
        from etpo_gym.leaderboard.suites import get_suite

        kwargs = [spec.env_kwargs() for spec in get_suite(args.suite).tasks]
        tasks = [get_task(k["task"], target=k.get("target"), drop=k.get("drop")) for k in kwargs]
    else:
        tasks = list_tasks()
    rows = [task.summary() for task in tasks]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'task':<32} {'type':<11} {'metric':<8} {'rows':>6} {'feat':>5} {'cls':>4}  input"
    if args.suite:
        header += f"      {'source':<48} families"
    print(header)
    print("-" * len(header))
    for row in rows:
        classes = "-" if row["classes"] is None else str(row["classes"])
        line = (
            f"{row['name']:<32} {row['task_type']:<11} {row['metric']:<8} {row['rows']:>6} "
            f"{row['features']:>5} {classes:>4}  {row['input']:<9}"
        )
        if args.suite:
            line += f" {row['origin'] or row['source']:<48} {', '.join(row['families'])}"
        print(line.rstrip())
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from etpo_gym.agent import describe_agents, registered_agents

    registered = registered_agents()
    specs = describe_agents(registered).split(", ") if registered else []
    for spec, name in zip(specs, sorted(registered)):
        ep = registered[name]
        try:
            lines = (ep.load().__doc__ or "").strip().splitlines() or [""]
            doc = lines[0].replace("``", "")
        except Exception as exc:  # say so, and list the others
            doc = f"(cannot be loaded: {type(exc).__name__}: {exc})"
        package = f"  [{ep.dist.name}]" if ep.dist is not None else ""
        print(f"{spec:<16} {doc or ep.value}{package}")
    print("\nAlso: module:attr or path/to/file.py:attr (an agent object, class or factory).")
    return 0


def cmd_try(args: argparse.Namespace) -> int:
    import gymnasium as gym

    from etpo_gym.leaderboard.results import dumps
    from etpo_gym.tasks import get_task

    try:
        code = sys.stdin.read() if args.code == "-" else Path(args.code).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--code {args.code}: cannot be read ({exc}); pass a file or -") from None
    task = get_task(args.task, target=args.target, drop=_drop(args.drop))
    sandbox = chosen_sandbox(args.sandbox, "try")
    env = gym.make(
        args.env, task=task, sandbox=sandbox, timeout=args.timeout, record_dir=args.record
    )
    try:
        observation, info = env.reset(seed=args.seed)
        if info.get("infra_error"):
            print(f"etpo-gym try: sandbox error: {info['error']}", file=sys.stderr)
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
        print(dumps(record, indent=2))
    else:
        print(f"reward: {reward:.4f}   status: {info['status']}   score: {info['score']}")
        if info["error"]:
            print(f"error: {info['error']}")
        if info.get("notebook"):
            print(f"notebook: {info['notebook']}")
        print(
            f"terminated: {terminated}   truncated: {truncated}   elapsed: {info['elapsed_s']:.2f} s"
        )
        if not (terminated or truncated):  # the episode goes on: what the agent would see next
            print("\n--- next observation (the reflection prompt) ---\n" + observation)
    return 0 if not info.get("infra_error") else 3


def cmd_eval(args: argparse.Namespace) -> int:
    import gymnasium as gym
    from tqdm.auto import tqdm

    from etpo_gym.agent import agent_name, load_agent, resolve_agent, run_episode
    from etpo_gym.leaderboard.board import sem
    from etpo_gym.leaderboard.results import dumps
    from etpo_gym.tasks import get_task

    if args.agent and args.checkpoint:
        raise ConfigError("give --agent or --checkpoint, not both")
    spec = args.agent or (f"etpo:{args.checkpoint}" if args.checkpoint else None)
    if spec is None:
        raise ConfigError("give --agent SPEC (e.g. logreg, lm, etpo:RUN_DIR) or --checkpoint DIR")
    for flag, value in (("--episodes", args.episodes), ("--max-steps", args.max_steps)):
        if value < 1:
            raise ConfigError(f"{flag} {value}: must be >= 1")
    task = get_task(args.task, target=args.target, drop=_drop(args.drop))
    resolve_agent(spec)  # a bad spec fails before anything is said or started
    sandbox = chosen_sandbox(args.sandbox, "eval")
    agent = load_agent(spec)
    env = gym.make(
        args.env, task=task, sandbox=sandbox, max_steps=args.max_steps, timeout=args.timeout
    )
    results = []
    try:
        # The first reset fixes the seed; later episodes draw theirs from it, so that the
        # sandbox can start each next episode's kernel while the agent works.
        for episode in tqdm(
            range(args.episodes), desc=f"eval {agent_name(agent)}", unit="episode",
            disable=args.quiet or args.json,
        ):  # fmt: skip
            seed = args.seed if episode == 0 else None
            results.append(run_episode(env, agent, seed=seed, task=task.name))
    finally:
        env.close()
    scored = [r for r in results if not r.infra_errors]
    rewards = [r.final_reward for r in scored if r.final_reward is not None]
    summary = {
        "agent": spec,
        "name": agent_name(agent),
        "task": task.name,
        "env_id": args.env,
        "sandbox": sandbox,
        "max_steps": args.max_steps,
        "episodes": len(rewards),
        "infra_errors": len(results) - len(scored),
        "mean_reward": sum(rewards) / len(rewards) if rewards else math.nan,
        "sem": sem(rewards),
        "success_rate": sum(r.success for r in scored) / len(scored) if scored else math.nan,
        "mean_steps": sum(r.steps for r in scored) / len(scored) if scored else math.nan,
        "first_seed": args.seed,
        "seeds": [r.seed for r in results],
    }
    if args.json:
        print(dumps(summary))
    else:
        print(
            f"{summary['name']} on {task.name}: mean final reward {summary['mean_reward']:.4f} "
            f"± {summary['sem']:.4f} (SEM, {summary['episodes']} episodes, at most "
            f"{args.max_steps} attempt(s) each), success rate {summary['success_rate']:.2f}, "
            f"infra errors {summary['infra_errors']}"
        )
    return 0


def plugin_commands() -> dict[str, EntryPoint]:
    """Verbs registered by installed packages (group ``etpo_gym.commands``), by name."""
    return {ep.name: ep for ep in entry_points(group=COMMAND_GROUP) if ep.name not in BUILTIN_VERBS}


def _help_line(ep: EntryPoint) -> str:
    try:
        doc = (ep.load().__doc__ or "").strip()
    except Exception as exc:  # a broken plug-in must not break the other verbs
        return f"(cannot be loaded: {type(exc).__name__}: {exc})"
    package = f" ({ep.dist.name})" if ep.dist is not None and ep.dist.name != "etpo-gym" else ""
    return (doc.splitlines()[0] if doc else ep.value) + package


def build_parser(commands: dict[str, EntryPoint] | None = None) -> argparse.ArgumentParser:
    """The parser of every verb; ``commands`` (plug-in verbs) appear in the help only, since
    they parse their own arguments."""
    from etpo_gym import __version__
    from etpo_gym.leaderboard.cli import add_bench, add_leaderboard

    parser = Parser(
        prog="etpo-gym",
        description=DESCRIPTION,
        epilog="Run 'etpo-gym VERB --help' for a verb's options.",
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=26),
    )
    parser.add_argument("--version", action="version", version=f"etpo-gym {__version__}")
    sub = parser.add_subparsers(dest="verb", title="verbs", metavar="VERB")

    text = "list the built-in tasks, or those of a suite"
    p = sub.add_parser("tasks", help=text, description=text[0].upper() + text[1:] + ".")
    p.add_argument("--suite", help="list this suite's tasks with their facts, e.g. real-v1")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_tasks)

    text = "list the agents that installed packages register (bench and eval take them)"
    p = sub.add_parser("agents", help=text, description=text[0].upper() + text[1:] + ".")
    p.set_defaults(func=cmd_agents)

    text = "run one step of code on a task and print the outcome"
    p = sub.add_parser(
        "try",
        help=text,
        description="Run one action (a build_model body or def) on a task in a sandbox and print "
        "the reward, the status and, after a failure, the reflection prompt the agent would see.",
    )
    _task_args(p)
    p.add_argument(
        "--code",
        required=True,
        metavar="FILE",
        help="file with a build_model body or def ('-': stdin)",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="episode seed (default: %(default)s)"
    )
    add_env_args(p, timeout_help="seconds for the step")
    p.add_argument(
        "--record",
        default=None,
        metavar="DIR",
        help="write the episode as a notebook in this folder",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_try)

    p = sub.add_parser(
        "eval",
        help="score an agent on fresh episodes of a task",
        description="Score an agent on fresh episodes of a task: mean ± SEM of the final reward. "
        "With the default --max-steps 1 that is the agent's first attempt (its one-shot reward).",
    )
    p.add_argument(
        "--agent",
        metavar="SPEC",
        help="agent spec: logreg, lm, lm:PATH, etpo:RUN_DIR, module:attr, …",
    )
    p.add_argument(
        "--checkpoint", metavar="DIR", help="an ETPO run or policy directory: --agent etpo:DIR"
    )
    _task_args(p)
    p.add_argument(
        "--episodes", type=int, default=32, metavar="N", help="episodes (default: %(default)s)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=10_000,
        metavar="N",
        help="seed of the first episode (default: %(default)s)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=1,
        metavar="N",
        help="attempts per episode (default: %(default)s)",
    )
    add_env_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    add_bench(sub)
    add_leaderboard(sub)
    sub.add_parser(
        "sandbox",
        help="the Docker sandbox: build, status, reap, serve (ready pods for every process)",
        add_help=False,
    )
    for verb, ep in (commands or {}).items():
        sub.add_parser(verb, help=_help_line(ep), add_help=False)
    return parser


def _run(verb: str, call: Callable[[], Any]) -> int:
    try:
        code = int(call() or 0)
        sys.stdout.flush()
        return code
    except EtpoGymError as exc:
        print(f"etpo-gym {verb}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`etpo-gym tasks --json | head`): no traceback, and no second
        # error when Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``etpo-gym ARGV``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sandbox":
        from etpo_gym.sandbox import manage

        return _run("sandbox", lambda: manage.main(argv[1:]))
    commands = plugin_commands()
    if argv and argv[0] in commands:
        ep = commands[argv[0]]

        def plugin() -> Any:
            try:
                command = ep.load()
            except Exception as exc:
                raise EtpoGymError(f"cannot load this verb ({ep.value}): {exc}") from exc
            return command(argv[1:])

        return _run(argv[0], plugin)
    parser = build_parser(commands)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    return _run(args.verb, lambda: args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
