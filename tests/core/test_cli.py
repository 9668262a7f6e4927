"""The etpo-gym command line (real subprocesses, real kernels)."""

from __future__ import annotations

import json
import subprocess
import sys

CMD = [sys.executable, "-m", "etpo_gym"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, input=stdin, timeout=300)


def test_tasks_json_lists_every_task():
    out = run("tasks", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    names = {row["name"] for row in rows}
    assert {"breast_cancer", "wine"} <= names
    for row in rows:
        assert {"name", "description", "metric", "rows", "features", "classes"} <= set(row)


def test_try_json_runs_one_step(tmp_path):
    code = tmp_path / "body.py"
    code.write_text(
        "from sklearn.ensemble import RandomForestClassifier\n"
        "model = RandomForestClassifier(n_estimators=20, random_state=0).fit(x_train, y_train)\n"
    )
    out = run("try", "--task", "breast_cancer", "--code", str(code), "--seed", "3", "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["status"] == "ok" and record["terminated"] is True
    assert 0.9 < record["reward"] <= 1.0
    assert {"reward", "status", "terminated", "truncated", "observation", "info"} <= set(record)


def test_try_reports_a_failure_with_the_reflection_prompt():
    out = run("try", "--task", "breast_cancer", "--code", "-", stdin="model = undefined_name\n")
    assert out.returncode == 0, out.stderr
    assert "status: error" in out.stdout and "NameError" in out.stdout
    assert "Your previous code:" in out.stdout


def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path):
    cases = [
        (("--task", "no_such_task", "--code", "-"), "unknown task 'no_such_task'"),
        (("--task", "breast_cancer", "--code", str(tmp_path / "nope.py")), "nope.py"),
        (("--task", "breast_cancer", "--sandbox", "dockr", "--code", "-"), "sandbox='dockr'"),
        (("--task", str(tmp_path / "d.csv"), "--code", "-"), "d.csv"),
    ]
    for args, named in cases:
        out = run("try", *args, stdin="model = 1\n")
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith("etpo-gym try: ") and named in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
