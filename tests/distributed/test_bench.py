"""``bench --ray`` on a real two-node Ray cluster: the same scores as the local runner cell by
cell, exactly-once results when a worker or the driver is killed mid-run, no kernels left behind,
infra errors retried on another node, task data from the object store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from processes import still_running

from etpo_gym.leaderboard import run_benchmark
from etpo_gym.leaderboard.results import read_results
from etpo_gym.leaderboard.runner import CellsFailed

HERE = Path(__file__).parent
SLEEPY = "ray_agents:SleepyConstant"
AGENTS = ["logreg", SLEEPY]


def _kernels_of(pid: int) -> dict[int, float]:
    """The processes under ``pid`` (a worker: its kernels), by pid and start time."""
    import psutil

    try:
        return {p.pid: p.create_time() for p in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return {}


def _wait_gone(pids: dict[int, float], seconds: float = 30) -> list[int]:
    deadline = time.monotonic() + seconds
    while still_running(pids) and time.monotonic() < deadline:
        time.sleep(0.5)
    return still_running(pids)


def _first_pid_file(pid_dir: Path, seconds: float = 300) -> tuple[int, str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for entry in sorted(pid_dir.iterdir()):
            cell = entry.read_text()
            if cell:
                return int(entry.name), cell
        time.sleep(0.05)
    pytest.fail("no test agent started on the cluster in time")


def _by_key(out: Path) -> dict[str, dict[str, Any]]:
    records = read_results(out / "results.jsonl")
    keys = [r["key"] for r in records]
    assert len(keys) == len(set(keys)), f"a cell was recorded twice: {sorted(keys)}"
    return {r["key"]: r for r in records}


@pytest.mark.slow
def test_ray_bench_matches_local_and_survives_a_killed_worker(ray_cluster, pid_files, tmp_path):
    settings = dict(seeds=1, sandbox="local", max_steps=1, timeout=120, progress=False)
    local = _by_key(run_benchmark(AGENTS, "smoke-v0", out=tmp_path / "local", jobs=2, **settings))

    logs: list[str] = []
    box: dict[str, Any] = {}

    def bench() -> None:
        try:
            box["out"] = run_benchmark(
                AGENTS, "smoke-v0", out=tmp_path / "ray", ray="auto", log=logs.append,
                **settings,
            )  # fmt: skip
        except BaseException as exc:
            box["error"] = exc

    runner = threading.Thread(target=bench)
    runner.start()
    pid, cell = _first_pid_file(pid_files)
    kernels = _kernels_of(pid)
    assert kernels, "the sleeping cell's kernel runs under its Ray worker"
    os.kill(pid, signal.SIGKILL)  # mid-episode: the kernel is in its 4 s sleep
    runner.join(timeout=900)
    assert "error" not in box, box.get("error")
    assert not _wait_gone(kernels), "kernels outlived their killed worker"

    remote = _by_key(tmp_path / "ray")
    assert sorted(remote) == sorted(local) and len(local) == 4
    for key, row in local.items():  # deterministic agents: identical outcomes
        assert remote[key]["final_reward"] == row["final_reward"], key
        assert remote[key]["statuses"] == row["statuses"] and row["statuses"] == ["ok"], key
        assert Path(remote[key]["notebook"]).is_file()  # written by the driver
    task, seed = cell.split("|")
    killed = remote[f"{task}|{SLEEPY}|{seed}"]
    assert killed["attempts"] == 2 and "WorkerCrashedError" in killed["retries"][0]["error"]
    assert len({r["ray_node"] for r in remote.values()}) == 2  # both nodes ran cells
    assert logs[0] == "sandbox local" and logs[1].startswith("ray: 4 cell(s) on 2 node(s)")


@pytest.mark.slow
def test_killed_driver_then_rerun_records_every_cell_once(ray_cluster, pid_files, tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "etpo_gym", "bench", "--agents", ",".join(AGENTS), "--tasks",
        "smoke-v0", "--seeds", "1", "--max-steps", "1", "--sandbox", "local", "--out", str(out),
        "--quiet", "--ray", "auto",
    ]  # fmt: skip
    env = ray_cluster.driver_env()
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(read_results(out / "results.jsonl")) < 1:
            if driver.poll() is not None:
                pytest.fail(f"bench ended early: {driver.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        workers = [int(p.name) for p in pid_files.iterdir()]
        kernels = {k: v for pid in workers for k, v in _kernels_of(pid).items()}
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    partial = read_results(out / "results.jsonl")
    assert 1 <= len(partial) < 4
    # the driver's cells end with it, and their kernels with them
    assert not _wait_gone(kernels, 60), "kernels outlived the killed driver's cells"
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    records = _by_key(out)
    assert len(records) == 4 and {p["key"] for p in partial} <= set(records)
    assert all(r["statuses"] == ["ok"] for r in records.values())
    assert "4/4" in (out / "leaderboard.md").read_text()


@pytest.mark.slow
def test_cells_that_cannot_run_lose_no_other_cell(ray_cluster, tmp_path):
    """An agent that cannot be built on the workers: its cells are named, every other cell is
    recorded as it finishes."""
    broken = f"{HERE.parent / 'leaderboard' / 'agents_for_tests.py'}:broken_agent"
    out = tmp_path / "run"
    with pytest.raises(CellsFailed, match="2 of 4 cell") as caught:
        run_benchmark(
            [broken, "logreg"], "smoke-v0", seeds=1, out=out, sandbox="local", max_steps=1,
            timeout=120, progress=False, ray="auto",
        )  # fmt: skip
    assert all(key.split("|")[1] == broken for key in caught.value.failed)
    assert "cannot be built here" in next(iter(caught.value.failed.values()))
    records = _by_key(out)
    assert len(records) == 2 and all(key.split("|")[1] == "logreg" for key in records)
    assert (out / "leaderboard.md").is_file()


@pytest.mark.slow
@pytest.mark.docker
def test_a_node_without_docker_has_its_cells_retried_elsewhere(ray_cluster, docker_ready, tmp_path):
    """A third node whose Docker engine is missing: its cells come back as infra errors and are
    run again on the nodes that have one; none is scored there, none is lost."""
    node = ray_cluster.add_node(DOCKER_HOST="unix:///nonexistent/docker.sock")
    try:
        out = run_benchmark(
            ["logreg"], "breast_cancer,wine,skill_scale", seeds=1, out=tmp_path / "run",
            sandbox="docker", max_steps=1, timeout=120, progress=False, ray="auto",
        )  # fmt: skip
    finally:
        ray_cluster.cluster.remove_node(node)
    records = _by_key(out)
    assert len(records) == 3
    assert all(r["statuses"] == ["ok"] and not r["infra_errors"] for r in records.values())
    bad = node.node_id
    retried = [r for r in records.values() if r.get("retries")]
    assert retried, "with three cells at once on three 1-CPU nodes, one ran on the bad node"
    for row in retried:
        assert row["retries"][0]["node"] == bad and row["ray_node"] != bad
        assert "Docker engine does not answer" in row["retries"][0]["error"]
    assert all(r["ray_node"] != bad for r in records.values())


@pytest.mark.slow
def test_task_data_comes_from_the_object_store_not_from_files(ray_cluster, tmp_path, monkeypatch):
    """A CSV task that only the driver read: its file is gone before any cell runs."""
    import numpy as np

    from etpo_gym.leaderboard import suites

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    data = tmp_path / "data"
    data.mkdir()
    csv = data / "toy.csv"
    lines = ["id,a,b,c,label"] + [
        f"{i},{a:.4f},{b:.4f},{c:.4f},{int(a + b > 0)}" for i, (a, b, c) in enumerate(x)
    ]
    csv.write_text("\n".join(lines) + "\n")
    spec = (suites.TaskSpec("toy", "toy.csv", "label", ("id",)),)
    suite = suites.Suite("toycsv", "v0", spec, suites.suite_digest(spec, data))
    monkeypatch.setattr(suites, "REAL_DATA", data)
    monkeypatch.setenv("ETPO_REAL_DATA", str(data))  # where the driver alone reads the CSV
    monkeypatch.setitem(suites.SUITES, "toycsv", suite)
    monkeypatch.setitem(suites.ALL_SUITES, suite.id, suite)

    def drop_files(line: str) -> None:
        if line.startswith("ray:"):  # the tasks are in the object store; no cell has run yet
            csv.unlink()

    out = run_benchmark(
        ["logreg"], "toycsv-v0", seeds=2, out=tmp_path / "run", sandbox="local", max_steps=1,
        timeout=120, progress=False, ray="auto", log=drop_files,
    )  # fmt: skip
    assert not csv.exists()
    records = _by_key(out)
    assert len(records) == 2
    assert all(r["statuses"] == ["ok"] and r["final_reward"] > 0.9 for r in records.values())
