"""The etpo-gym command line (real subprocesses, real kernels)."""

from __future__ import annotations

import json
import re
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
    assert out.stderr.startswith("etpo-gym try: sandbox ")  # which backend auto chose


def test_try_after_a_success_shows_no_next_observation():
    body = "from sklearn.linear_model import LogisticRegression\nmodel = LogisticRegression(max_iter=3000).fit(x_train, y_train)\n"
    out = run("try", "--task", "wine", "--sandbox", "local", "--code", "-", stdin=body)
    assert out.returncode == 0, out.stderr
    assert "status: ok" in out.stdout and "terminated: True" in out.stdout
    assert "observation" not in out.stdout
    assert out.stderr == "etpo-gym try: sandbox local\n"


def test_no_arguments_version_and_help_texts():
    out = run()
    assert out.returncode == 2 and "required" not in out.stderr
    for verb in ("tasks", "agents", "try", "eval", "bench", "leaderboard", "sandbox", "train"):
        assert f"\n    {verb}" in out.stderr, verb
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("etpo-gym 0.")
    for verb in (
        [],
        ["tasks"],
        ["agents"],
        ["try"],
        ["eval"],
        ["bench"],
        ["leaderboard"],
        ["train"],
    ):
        text = run(*verb, "--help")
        assert text.returncode == 0, (verb, text.stderr)
        flat = " ".join(text.stdout.split())
        assert "``" not in flat and "(default: )" not in flat and "(default: None)" not in flat
        assert not re.search(r"\(default: [^)]*\) \(default:", flat), verb
    train = " ".join(run("train", "--help").stdout.split())
    assert "(default: runs/<task>__etpo__<seed>__<time>)" in train and "(default: auto)" in train
    tried = run("try", "--help").stdout
    assert "reflection prompt" in tried  # a description, not only a usage line
    sandbox = run("sandbox", "--help").stdout
    assert all(verb in sandbox for verb in ("build", "status", "reap")) and "rest" not in sandbox
    evaluated = run("eval", "--help").stdout
    for flag in ("--agent SPEC", "--episodes N", "--seed N", "--max-steps N", "--sandbox"):
        line = next(x for x in evaluated.splitlines() if x.strip().startswith(flag))
        assert len(line.split(flag, 1)[1].strip()) > 3 or "default" in evaluated, flag
    assert "(default: 32)" in evaluated and "(default: auto)" in evaluated


def test_a_closed_pipe_ends_quietly():
    # The reader is gone before the command writes (as after `| head` has read its fill): the
    # first write fails with EPIPE, however much the pipe buffer could hold.
    proc = subprocess.Popen(
        [*CMD, "tasks", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and err == ""


def test_eval_takes_any_agent_spec(tmp_path):
    out = run("eval", "--agent", "logreg", "--task", "wine", "--episodes", "2", "--seed", "5",
              "--sandbox", "local", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["name"] == "logreg" and summary["episodes"] == 2
    assert summary["success_rate"] == 1.0 and summary["mean_reward"] > 0.9
    assert summary["seeds"][0] == 5 and len(set(summary["seeds"])) == 2
    bad = run("eval", "--task", "wine")
    assert bad.returncode == 2 and "give --agent SPEC" in bad.stderr


def test_train_with_bad_input_leaves_nothing(tmp_path):
    for args, needle in (
        (["--task", "nosuch"], "unknown task 'nosuch'"),
        (["--model", str(tmp_path / "nomodel")], "nomodel"),
        (["--sandbox", "dockr"], "sandbox='dockr'"),
        (["--task", "nosuch", "--out", str(tmp_path / "run")], "unknown task 'nosuch'"),
    ):
        done = subprocess.run([*CMD, "train", *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300)  # fmt: skip
        assert done.returncode == 2 and needle in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == [], args


def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path):
    cases = [
        (("--task", "no_such_task", "--code", "-"), "unknown task 'no_such_task'"),
        (("--task", "breast_cancer", "--code", str(tmp_path / "nope.py")), "nope.py"),
        (("--task", "breast_cancer", "--sandbox", "dockr", "--code", "-"), "'dockr'"),
        (("--task", str(tmp_path / "d.csv"), "--code", "-"), "d.csv"),
        (("--task", "wine", "--env", "CartPole-v1", "--code", "-"), "'CartPole-v1'"),
        (("--task", "wine", "--seed", "x", "--code", "-"), "invalid int value: 'x'"),
    ]
    for args, named in cases:
        out = run("try", *args, stdin="model = 1\n")
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith("etpo-gym try: ") and named in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_bad_verbs_and_directories_are_one_line(tmp_path):
    for args, needle in (
        (("nosuchverb",), "invalid choice: 'nosuchverb'"),
        (("leaderboard", str(tmp_path / "none")), "is not a benchmark directory (no run.json)"),
        (("eval", "--agent", "gpt5", "--task", "wine"), "unknown agent 'gpt5'"),
        (("eval", "--agent", "logreg", "--task", "wine", "--episodes", "0"), "--episodes 0"),
    ):
        out = run(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and needle in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == []
