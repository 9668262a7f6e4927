"""Leaderboard tables and plots, rendered from ``results.jsonl`` and ``run.json`` alone.

Per task and agent: mean ± SEM of the episode's final reward over seeds (SEM = sample standard
deviation, ddof 1, over √n; undefined for one seed), success rate, mean steps, infra errors
(those cells are excluded from every score). The normalised score of an agent on a task is
``(mean − ref) / (best − ref)``, ``ref`` being the ``logreg`` baseline's mean on that task (or
the worst row's when logreg did not run) and ``best`` the best row's: 1 = the best agent, 0 = the
reference; a task on which the best row beats the reference by less than 0.05 has no normalised
score. Overall rows average the per-task figures; the board is ranked by the overall normalised
score, then the mean score.

Agents are keyed by their spec (``logreg``, ``etpo:runs/x``) and shown by their ``name``
(``etpo:x``) where names are unique. ``leaderboard.json`` is strict JSON: ``null`` where a figure
is undefined.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .results import dumps, read_results, read_run, write_atomic

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

    def rank(agent: str) -> tuple[float, float]:
        o = overall[agent]
        return (
            -o["normalised"] if not math.isnan(o["normalised"]) else math.inf,
            -o["mean"] if not math.isnan(o["mean"]) else math.inf,
        )

    ranking = sorted(agents, key=rank)
    return {"per_task": per_task, "overall": overall, "ranking": ranking}


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def display_names(records: list[dict[str, Any]], agents: list[str]) -> dict[str, str]:
    """``{key: name}``: each agent's recorded ``name`` (its most frequent), else its key; a
    name that two agents share is replaced by their keys."""
    names = {}
    for agent in agents:
        counts = Counter(r.get("agent_name") for r in records if r["agent"] == agent)
        counts.pop(None, None)
        names[agent] = counts.most_common(1)[0][0] if counts else agent
    shared = {n for n, c in Counter(names.values()).items() if c > 1}
    return {a: (a if n in shared else n) for a, n in names.items()}


def task_metrics(records: list[dict[str, Any]], tasks: list[str]) -> dict[str, str]:
    """``{task: metric}`` from the records (runs recorded before the metric was: the task's)."""
    metrics = {r["task"]: r["metric"] for r in records if r.get("metric")}
    for task in tasks:
        if task not in metrics:
            try:
                from etpo_gym.tasks import get_task

                metrics[task] = get_task(task).metric
            except Exception:  # a CSV task or one renamed since: no shared scale for it
                continue
    return metrics


def render(out: str | Path) -> dict[str, Any]:
    """Write ``leaderboard.md``, ``.csv``, ``.json`` and the plots into ``out``; returns the summary."""
    out = Path(out)
    meta = read_run(out)
    cfg = meta["config"]
    records = read_results(out / "results.jsonl")
    summary = summarise(records, cfg["agents"], cfg["tasks"])
    names = display_names(records, cfg["agents"])
    expected = len(cfg["agents"]) * len(cfg["tasks"]) * len(cfg["seeds"])
    header = {
        "suite": cfg["suite"],
        "suite_digest": cfg["suite_digest"],
        "env_id": cfg.get("env_id", "DataSci-v0"),
        "env_kwargs": cfg.get("extra", {}),
        "sandbox": cfg["sandbox"],
        "seeds": cfg["seeds"],
        "max_steps": cfg["max_steps"],
        "started": meta.get("started"),
        "rendered": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cells": f"{len(records)}/{expected}",
        "versions": meta.get("versions", {}),
    }
    board = {"header": header, "names": names, **summary}
    write_atomic(out / "leaderboard.json", dumps(board, indent=2) + "\n")
    _write_csv(out / "leaderboard.csv", summary, cfg["tasks"], names)
    write_atomic(out / "leaderboard.md", _markdown(header, summary, cfg["tasks"], names))
    metrics = task_metrics(records, cfg["tasks"])
    _save(board_figure(header, summary, cfg["tasks"], names, metrics), out / "leaderboard.png")
    attempts = out / "reward_by_attempt.png"
    figure = attempts_figure(header, summary["ranking"], names, records)
    if figure is None:
        attempts.unlink(missing_ok=True)  # an older drawing would describe other results
    else:
        _save(figure, attempts)
    return board


def _write_csv(path: Path, summary: dict, tasks: list[str], names: dict[str, str]) -> None:
    columns = ["task", "agent", "n", "mean", "sem", "normalised", "success_rate", "mean_steps",
               "infra_errors", "name"]  # fmt: skip

    def cell(x: Any) -> Any:
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else x

    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for task in tasks:
            for agent, row in summary["per_task"][task].items():
                writer.writerow([cell(v) for v in (task, agent, row["n"], row["mean"], row["sem"],
                                 row.get("normalised"), row["success_rate"], row["mean_steps"],
                                 row["infra_errors"], names[agent])])  # fmt: skip
        for agent, row in summary["overall"].items():
            writer.writerow([cell(v) for v in ("OVERALL", agent, row["tasks"], row["mean"], None,
                             row["normalised"], row["success_rate"], row["mean_steps"],
                             row["infra_errors"], names[agent])])  # fmt: skip


def _seeds_text(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}–{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds)) if len(seeds) != 1 else f"seed {seeds[0]}"


def _markdown(header: dict, summary: dict, tasks: list[str], names: dict[str, str]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in header["versions"].items())
    env = header["env_id"] + (f" {dumps(header['env_kwargs'])}" if header["env_kwargs"] else "")
    lines = [
        f"# Leaderboard: {header['suite']}",
        "",
        f"Suite `{header['suite']}` (digest `{header['suite_digest']}`), env `{env}`, sandbox "
        f"`{header['sandbox']}`, seeds {header['seeds']}, at most {header['max_steps']} steps per "
        f"episode, {header['cells']} cells; started {header['started']}, rendered "
        f"{header['rendered']}.",
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
            f"| {i} | `{names[agent]}` | {_fmt(o['normalised'])} | {_fmt(o['mean'])} | "
            f"{_fmt(o['success_rate'], 2)} | {_fmt(o['mean_steps'], 2)} | {o['infra_errors']} |"
        )
    agents = summary["ranking"]
    lines += ["", "Per task (mean ± SEM):", "",
              "| task | " + " | ".join(f"`{names[a]}`" for a in agents) + " |",
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
    renamed = {k: n for k, n in names.items() if k != n}
    if renamed:
        keys = ", ".join(f"`{n}` = `{k}`" for k, n in renamed.items())
        lines += ["", f"Agents by name; their specs: {keys}."]
    return "\n".join(lines) + "\n"


METRIC_LABELS = {"roc_auc": "ROC AUC", "r2": "R²", "rmse": "−RMSE"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(agents: list[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if len(agents) <= 10 else "tab20")
    return {a: cmap(i % cmap.N) for i, a in enumerate(agents)}


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def board_figure(
    header: dict,
    summary: dict,
    tasks: list[str],
    names: dict[str, str],
    metrics: dict[str, str],
) -> Any:
    """The figure of ``leaderboard.png``: mean ± SEM per task, one colour per agent (legend,
    ranked), tasks with the same metric on the same y-scale."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    agents = summary["ranking"]
    colours = _colours(agents)
    limits: dict[str, list[float]] = {}  # metric (or the task, if unknown) → [low, high]
    for task in tasks:
        group = metrics.get(task, f"task:{task}")
        for row in summary["per_task"][task].values():
            if row["n"]:
                err = 0.0 if math.isnan(row["sem"]) else row["sem"]
                low, high = limits.setdefault(group, [math.inf, -math.inf])
                limits[group] = [min(low, row["mean"] - err), max(high, row["mean"] + err)]
    cols = min(4, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    legend_rows = math.ceil(len(agents) / 5)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.3 * cols, 2.7 * rows + 0.9 + 0.3 * legend_rows), squeeze=False
    )
    for ax, task in zip(axes.flat, tasks):
        data = summary["per_task"][task]
        for i, agent in enumerate(agents):
            row = data[agent]
            if row["n"]:
                err = 0.0 if math.isnan(row["sem"]) else row["sem"]
                ax.errorbar(i, row["mean"], yerr=err, fmt="o", color=colours[agent], capsize=3)
        metric = metrics.get(task)
        low, high = limits.get(metrics.get(task, f"task:{task}"), [0.0, 1.0])
        if math.isfinite(low):
            pad = max(0.02, 0.08 * (high - low))
            ax.set_ylim(low - pad, high + pad)
        ax.set_xticks([])
        ax.set_xlim(-0.7, len(agents) - 0.3)
        ax.set_title(task, fontsize=10)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric or "final reward"), fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colours[a], label=names[a]) for a in agents
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(5, len(agents)), frameon=False,
               fontsize=9)  # fmt: skip
    fig.suptitle(
        f"{header['suite']}: final reward per episode, mean ± SEM over "
        f"{_seeds_text(header['seeds'])}",
        fontsize=11,
    )
    bottom = (0.3 * legend_rows + 0.2) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def attempts_figure(
    header: dict, agents: list[str], names: dict[str, str], records: list[dict]
) -> Any | None:
    """The figure of ``reward_by_attempt.png``: the mean final reward had each episode been cut
    after k attempts (k = 1 … max steps), i.e. what reflection after errors buys; ``None`` when
    every episode ended after one attempt (nothing to show)."""
    scored = [r for r in records if not r.get("infra_errors")]
    if not any(len(r.get("rewards") or []) > 1 for r in scored):
        return None
    plt = _pyplot()
    colours = _colours(agents)
    attempts = range(1, int(header["max_steps"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for agent in agents:
        episodes = [r.get("rewards") or [r["final_reward"]] for r in scored if r["agent"] == agent]
        episodes = [e for e in episodes if e and e[0] is not None]
        if episodes:
            means = [sum(e[min(k, len(e)) - 1] for e in episodes) / len(episodes) for k in attempts]
            ax.plot(list(attempts), means, marker="o", color=colours[agent], label=names[agent])
    ax.set_xticks(list(attempts))
    ax.set_xlabel("attempts allowed per episode")
    ax.set_ylabel("mean final reward")
    ax.set_title(f"{header['suite']}: reward by attempt budget ({_seeds_text(header['seeds'])})",
                 fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
