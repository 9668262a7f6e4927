"""Every red-team probe on every available backend: contained or not, and at what cost.

Runs the probes of ``tests/adversarial/attacks.py`` through the public env API (``gym.make``,
``reset``, ``step``) and prints one row per attack and backend: the verdict (``contained``;
``tolerated``: a breach the contract documents at the reported isolation level, labelled as such;
``needs <level>``: a breach of a guarantee only that stronger isolation level gives; ``NOT
contained``; ``skipped``), the step's status and reward, the peak growth of this (host)
process's RSS during the attack step, and the wall time of the whole scenario. Then one summary
line per backend, and the first reason of every failure.

    python benchmarks/adversarial.py [--backend local,docker] [--only PATTERN] [--json FILE]

``--only`` is a regular expression matched against the attack name and its class. Run it with
``nice`` on a shared machine: some probes fill memory and disk up to their bounds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from adversarial.attacks import ATTACKS, Attack
from adversarial.harness import EnvPool, Outcome, remove_tree, run_attack


def _backends(requested: str) -> list[str]:
    from etpo_gym.sandbox.docker import docker_status

    names = [b.strip() for b in requested.split(",") if b.strip()]
    unknown = sorted(set(names) - {"local", "docker"})
    if unknown:
        raise SystemExit(f"--backend: {unknown} are not backends; accepted: local, docker")
    usable = []
    for name in names:
        if name == "docker":
            ok, reason = docker_status()
            if not ok:
                print(f"docker: skipped ({reason})", file=sys.stderr)
                continue
        usable.append(name)
    return usable


def _select(pattern: str | None) -> list[Attack]:
    if not pattern:
        return list(ATTACKS)
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise SystemExit(f"--only {pattern!r} is not a regular expression: {exc}") from None
    chosen = [a for a in ATTACKS if rx.search(a.name) or rx.search(a.cls)]
    if not chosen:
        raise SystemExit(f"--only {pattern!r} matches no attack name or class")
    return chosen


def _row(o: Outcome) -> str:
    reward = "" if o.reward is None else f"{o.reward:.4g}"
    rss = f"{o.rss_delta / 2**20:.0f}" if o.rss_delta else "0"
    return (
        f"{o.cls:<20} {o.attack:<36} {o.backend:<7} {o.verdict:<16} {o.status or '-':<12} "
        f"{reward:>9} {rss:>7} {o.elapsed_s:>7.1f}"
    )


HEADER = (
    f"{'class':<20} {'attack':<36} {'backend':<7} {'verdict':<16} {'status':<12} "
    f"{'reward':>9} {'RSS MiB':>7} {'time s':>7}"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="local,docker", help="comma-separated backends")
    parser.add_argument("--only", default=None, help="regex over attack names and classes")
    parser.add_argument("--json", default=None, help="also write every outcome to this file")
    args = parser.parse_args(argv)

    attacks = _select(args.only)
    backends = _backends(args.backend)
    outcomes: list[Outcome] = []
    started = time.monotonic()
    print(HEADER)
    print("-" * len(HEADER))
    workdir = Path(tempfile.mkdtemp(prefix="etpo-redteam-"))
    try:
        for backend in backends:
            pool = EnvPool(backend, workdir)
            try:
                for attack in attacks:
                    outcome = run_attack(pool, attack)
                    outcomes.append(outcome)
                    print(_row(outcome), flush=True)
            finally:
                pool.close()
    finally:
        remove_tree(workdir)
    print()
    for backend in backends:
        mine = [o for o in outcomes if o.backend == backend]
        counts = {
            v: sum(o.verdict == v for o in mine)
            for v in ("contained", "tolerated", "NOT contained", "skipped")
        }
        counts["needs"] = sum(o.needs_stronger for o in mine)
        isolation = sorted({str(o.isolation) for o in mine if o.verdict != "skipped"})
        print(
            f"{backend}: {counts['contained']} contained, {counts['tolerated']} tolerated "
            f"(documented at its isolation level), {counts['needs']} need a stronger isolation "
            f"level than reported, {counts['NOT contained']} NOT contained, "
            f"{counts['skipped']} skipped, of {len(mine)}; isolation reported: {', '.join(isolation)}; "
            f"largest host RSS growth {max((o.rss_delta for o in mine), default=0) / 2**20:.0f} MiB"
        )
    print(f"wall time {time.monotonic() - started:.0f} s")
    failed = [o for o in outcomes if o.verdict == "NOT contained"]
    if failed:
        print("\nwhy not contained (first reason):")
        for o in failed:
            print(f"  {o.backend:<7} {o.attack:<36} {o.reasons[0][:150]}")
    if args.json:
        Path(args.json).write_text(
            json.dumps([o.__dict__ for o in outcomes], indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
