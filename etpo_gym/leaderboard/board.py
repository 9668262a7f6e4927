"""Leaderboard tables and plots, rendered from ``results.jsonl`` and ``run.json`` alone.

Per task and agent: mean ± SEM of the episode's final reward over seeds (SEM = sample standard
deviation, ddof 1, over √n; undefined for one seed), success rate, mean steps, infra errors
(those cells are excluded from every score). The normalised score of an agent on a task is
``(mean − ref) / (best − ref)``, ``ref`` being the ``logreg`` baseline's mean on that task (or
the worst row's when logreg did not run) and ``best`` the best row's: 1 = the best agent, 0 = the
reference; a task on which the best row beats the reference by less than 0.05 has no normalised
score. Overall rows average the per-task figures; the board is ranked by the overall normalised
score, then the mean score.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from etpo_gym.errors import ConfigError

REFERENCE = "logreg"
MIN_SPREAD = 0.05


def sem(values: list[float]) -> float:
    """Standard error of the mean (ddof = 1); NaN for fewer than two values."""
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


def normalised(
    means: dict[str, float], reference: str = REFERENCE, min_spread: float = MIN_SPREAD
) -> dict[str, float]:
    """Per-agent normalised score on one task (see the module docstring); NaN for every agent
    when the best row beats the reference by less than ``min_spread`` (the task does not
    separate the agents from the reference, and a ratio would only amplify noise)."""
    if not means:
        return {}
    best = max(means.values())
    ref = means.get(reference, min(means.values()))
    if best - ref < min_spread:
        return dict.fromkeys(means, float("nan"))
    return {a: (m - ref) / (best - ref) for a, m in means.items()}


def summarise(records: list[dict[str, Any]], agents: list[str], tasks: list[str]) -> dict:
    """Per-task rows and overall rows from cell records."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        cells[(r["task"], r["agent"])].append(r)
    per_task: dict[str, dict[str, dict[str, Any]]] = {}
    for task in tasks:
        rows = {}
        for agent in agents:
            rs = cells.get((task, agent), [])
            scored = [r for r in rs if not r.get("infra_errors")]
            rewards = [
                float(r["final_reward"]) for r in scored if r.get("final_reward") is not None
            ]
            rows[agent] = {
                "n": len(rewards),
                "mean": sum(rewards) / len(rewards) if rewards else float("nan"),
                "sem": sem(rewards),
                "success_rate": (
                    sum(bool(r.get("success")) for r in scored) / len(scored)
                    if scored
                    else float("nan")
                ),
                "mean_steps": (
                    sum(r.get("steps", 0) for r in scored) / len(scored) if scored else float("nan")
                ),
                "infra_errors": sum(int(r.get("infra_errors", 0)) for r in rs),
            }
        means = {a: row["mean"] for a, row in rows.items() if row["n"]}
        for agent, score in normalised(means).items():
            rows[agent]["normalised"] = score
        per_task[task] = rows
    overall = {}
    for agent in agents:
        rows = [per_task[t][agent] for t in tasks if per_task[t][agent]["n"]]

        def avg(key: str, rows: list[dict[str, Any]] = rows) -> float:
            values = [r[key] for r in rows if key in r and not math.isnan(r[key])]
            return sum(values) / len(values) if values else float("nan")

        overall[agent] = {
            "tasks": len(rows),
            "mean": avg("mean"),
            "normalised": avg("normalised"),
            "success_rate": avg("success_rate"),
            "mean_steps": avg("mean_steps"),
            "infra_errors": sum(per_task[t][agent]["infra_errors"] for t in tasks),
        }
    ranking = sorted(
        agents,
        key=lambda a: (
            -overall[a]["normalised"] if not math.isnan(overall[a]["normalised"]) else 1e9
        ),
    )
    return {"per_task": per_task, "overall": overall, "ranking": ranking}


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def render(out: str | Path) -> dict[str, Any]:
    """Write ``leaderboard.md``, ``.csv``, ``.json`` and the plots into ``out``; returns the summary."""
    from .runner import read_results

    out = Path(out)
    if not (out / "run.json").is_file():
        raise ConfigError(f"{out} is not a benchmark directory (no run.json)")
    meta = json.loads((out / "run.json").read_text())
    cfg = meta["config"]
    records = read_results(out / "results.jsonl")
    summary = summarise(records, cfg["agents"], cfg["tasks"])
    expected = len(cfg["agents"]) * len(cfg["tasks"]) * len(cfg["seeds"])
    header = {
        "suite": cfg["suite"],
        "suite_digest": cfg["suite_digest"],
        "sandbox": cfg["sandbox"],
        "seeds": cfg["seeds"],
        "max_steps": cfg["max_steps"],
        "started": meta.get("started"),
        "rendered": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cells": f"{len(records)}/{expected}",
        "versions": meta.get("versions", {}),
    }
    board = {"header": header, **summary}
    (out / "leaderboard.json").write_text(json.dumps(board, indent=2, default=str) + "\n")
    _write_csv(out / "leaderboard.csv", summary, cfg["tasks"])
    (out / "leaderboard.md").write_text(_markdown(header, summary, cfg["tasks"]))
    _plots(out, summary, cfg["tasks"], records)
    return board


def _write_csv(path: Path, summary: dict, tasks: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "task",
                "agent",
                "n",
                "mean",
                "sem",
                "normalised",
                "success_rate",
                "mean_steps",
                "infra_errors",
            ]
        )
        for task in tasks:
            for agent, row in summary["per_task"][task].items():
                writer.writerow([task, agent, row["n"], row["mean"], row["sem"], row.get("normalised", ""),
                                 row["success_rate"], row["mean_steps"], row["infra_errors"]])  # fmt: skip
        for agent, row in summary["overall"].items():
            writer.writerow(["OVERALL", agent, row["tasks"], row["mean"], "", row["normalised"],
                             row["success_rate"], row["mean_steps"], row["infra_errors"]])  # fmt: skip


def _markdown(header: dict, summary: dict, tasks: list[str]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in header["versions"].items())
    lines = [
        f"# Leaderboard: {header['suite']}",
        "",
        f"Suite `{header['suite']}` (digest `{header['suite_digest']}`), sandbox `{header['sandbox']}`, "
        f"seeds {header['seeds']}, at most {header['max_steps']} steps per episode, "
        f"{header['cells']} cells; started {header['started']}, rendered {header['rendered']}.",
        f"Versions: {versions}.",
        "",
        "Score: the episode's final reward (the task metric on success, −1 after a failed last "
        "attempt), mean ± SEM over seeds. Normalised: (score − logreg) / (best − logreg) per "
        "task (1 = best row, 0 = the logistic-regression baseline; none where the best row beats "
        "logreg by less than 0.05), averaged over tasks. "
        "Infra-error cells are excluded from scores and counted separately.",
        "",
        "| rank | agent | normalised | mean score | success | mean steps | infra errors |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for i, agent in enumerate(summary["ranking"], 1):
        o = summary["overall"][agent]
        lines.append(
            f"| {i} | `{agent}` | {_fmt(o['normalised'])} | {_fmt(o['mean'])} | "
            f"{_fmt(o['success_rate'], 2)} | {_fmt(o['mean_steps'], 2)} | {o['infra_errors']} |"
        )
    agents = summary["ranking"]
    lines += ["", "Per task (mean ± SEM):", "", "| task | " + " | ".join(f"`{a}`" for a in agents) + " |",
              "|---|" + "---:|" * len(agents)]  # fmt: skip
    for task in tasks:
        rows = summary["per_task"][task]
        best = max((r["mean"] for r in rows.values() if r["n"]), default=None)
        cells = []
        for a in agents:
            r = rows[a]
            text = f"{_fmt(r['mean'])} ± {_fmt(r['sem'])}"
            if r["n"] and best is not None and abs(r["mean"] - best) < 1e-12:
                text = f"**{text}**"
            if r["infra_errors"]:
                text += f" ({r['infra_errors']} infra)"
            cells.append(text)
        lines.append(f"| `{task}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plots(out: Path, summary: dict, tasks: list[str], records: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = summary["ranking"]
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        data = summary["per_task"][task]
        means = [data[a]["mean"] for a in agents]
        errs = [0.0 if math.isnan(data[a]["sem"]) else data[a]["sem"] for a in agents]
        ax.bar(range(len(agents)), means, yerr=errs, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(agents)), agents, rotation=45, ha="right", fontsize=7)
        ax.set_title(task, fontsize=9)
        ax.axhline(0, color="grey", linewidth=0.5)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "leaderboard.png", dpi=100)
    plt.close(fig)

    # reward by attempt within an episode (reflection): how each agent improves after errors
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for agent in agents:
        by_step: dict[int, list[float]] = defaultdict(list)
        for r in records:
            if r["agent"] == agent and not r.get("infra_errors"):
                for i, reward in enumerate(r.get("rewards", [])):
                    by_step[i + 1].append(reward)
        if by_step:
            steps = sorted(by_step)
            ax.plot(
                steps, [sum(by_step[s]) / len(by_step[s]) for s in steps], marker="o", label=agent
            )
    ax.set_xlabel("attempt in episode")
    ax.set_ylabel("mean reward")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "reward_by_attempt.png", dpi=100)
    plt.close(fig)
