"""``etpo-gym train`` and ``etpo-gym eval``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from etpo_gym.errors import EtpoGymError

from .config import EtpoConfig, field_docs


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etpo-gym train", description="Train the ETPO agent on a DataSci task."
    )
    defaults = EtpoConfig()
    docs = field_docs()
    for field in dataclasses.fields(EtpoConfig):
        if field.name == "extra_env_kwargs":
            continue
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        kind = type(default) if default is not None else str
        doc = docs.get(field.name, "").replace("``", "").replace("%", "%%")
        if default not in (None, "") and "default" not in doc:
            doc += " (default: %(default)s)"
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=doc
            )
            continue
        parser.add_argument(flag, type=kind, default=default, help=doc)
    parser.add_argument("--resume", default=None, help="continue the run in this directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etpo-gym eval", description="Score a policy's first attempts on fresh seeds."
    )
    parser.add_argument("--checkpoint", required=True, help="run dir, checkpoint dir or HF dir")
    parser.add_argument("--task", required=True)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--sandbox", default="local")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _checked(cfg: EtpoConfig) -> EtpoConfig:
    """``cfg`` with its task and model checked and its sandbox resolved (and said) before a run
    directory exists; the run records the backend it used."""
    import etpo_gym
    from etpo_gym.leaderboard.runner import resolve_sandbox

    from .models import resolve_model_path
    from .trainer import run_name

    resolve_model_path(cfg.model)
    if cfg.env_id.split(":")[-1] in etpo_gym.ENV_IDS:
        etpo_gym.get_task(cfg.task, target=cfg.target)
        backend, why = resolve_sandbox(cfg.sandbox)
        print(f"etpo-gym train: sandbox {backend}{why}", file=sys.stderr)
        cfg = dataclasses.replace(cfg, sandbox=backend)
    return dataclasses.replace(cfg, out=cfg.out or str(Path("runs") / run_name(cfg)))


def _train_or_clean_up(cfg: EtpoConfig, resume: str | None, quiet: bool) -> Path:
    """Train; a new run that fails before its first update leaves no directory behind."""
    from .trainer import train

    fresh = resume is None and not Path(cfg.out).exists()
    try:
        return train(cfg, resume=resume, progress=not quiet)
    except BaseException:
        if fresh and not (Path(cfg.out) / "metrics.jsonl").exists():
            shutil.rmtree(cfg.out, ignore_errors=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("train", "eval"):
        print("usage: etpo-gym {train,eval} ...", file=sys.stderr)
        return 2
    verb, rest = argv[0], argv[1:]
    try:
        if verb == "train":
            args = vars(_train_parser().parse_args(rest))
            resume, quiet = args.pop("resume"), args.pop("quiet")
            if resume:  # the run's own settings; only --steps may be raised
                saved = Path(resume) / "config.json"
                if not saved.is_file():
                    raise EtpoGymError(f"--resume {resume}: not a run directory (no config.json)")
                cfg = EtpoConfig.from_json(saved)
                if "--steps" in rest:
                    cfg = dataclasses.replace(cfg, steps=args["steps"])
            else:
                cfg = _checked(EtpoConfig(**args))
            out = _train_or_clean_up(cfg, resume, quiet)
            lines = (out / "metrics.jsonl").read_text().splitlines()
            last = json.loads(lines[-1]) if lines else {}
            print(f"run: {out}")
            for key in (
                "charts/mean_reward",
                "charts/valid_rate",
                "charts/best_reward",
                "stats/kl",
            ):
                if last.get(key) is not None:
                    print(f"  {key}: {last[key]:.4f}")
            return 0
        from .trainer import evaluate

        args = _eval_parser().parse_args(rest)
        if args.episodes < 1:
            raise EtpoGymError(f"--episodes {args.episodes}: must be >= 1")
        cfg = EtpoConfig(task=args.task, sandbox=args.sandbox)
        result = evaluate(
            args.checkpoint,
            args.task,
            args.episodes,
            seed=args.seed,
            cfg=cfg,
            device=args.device,
            temperature=args.temperature,
        )
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"{result['task']}: mean reward {result['mean_reward']:.4f} ± {result['sem']:.4f} "
                f"(SEM, {result['episodes']} episodes), valid rate {result['valid_rate']:.2f}"
            )
        return 0
    except EtpoGymError as exc:
        print(f"etpo-gym {verb}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
