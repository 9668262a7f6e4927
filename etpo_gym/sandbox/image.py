"""Build the Docker sandbox image (``etpo-gym sandbox build``, ``docker/build.sh``).

The build context ships inside the package (``etpo_gym/sandbox/container/``: the ``Dockerfile``
and the in-container ``supervisor.py``), so an installed wheel can build the image. It is built
with the classic builder through the Docker SDK:

* **base**: ``--base IMAGE`` if given; else ``python:X.Y-slim`` (X.Y = this interpreter) when it is
  present or can be pulled; else a Debian base bootstrapped here with ``debootstrap`` from the
  mirror that apt on this machine uses, and ``docker import``-ed (machines with no registry);
* **packages**: ipykernel, numpy, scipy, pandas, scikit-learn pinned to the versions installed on
  the host, so that the sandbox scores code exactly as the local kernel does;
* **CA bundle**: the host's bundle named by ``PIP_CERT`` / ``REQUESTS_CA_BUNDLE`` /
  ``SSL_CERT_FILE`` is given to pip in the throw-away first stage only; the first-stage images
  are deleted after the build, and the final image is checked not to contain it;
* **index**: ``http(s)`` index URLs from ``pip config`` / ``PIP_INDEX_URL`` /
  ``PIP_EXTRA_INDEX_URL`` are passed as build arguments (never one with credentials in it);
* **tag**: ``etpo-gym-sandbox:<project version>-<digest>``, the digest being a hash of every
  build input (the Dockerfile, the supervisor, the pinned requirements): a changed input makes a
  new tag, so a stale image is never reused and checkouts with other inputs keep their own
  images. An image with the tag is reused (``--force`` rebuilds).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from etpo_gym.errors import ImageBuildError, SandboxUnavailable
from etpo_gym.sandbox.engine import connect_engine

IMAGE_REPO = "etpo-gym-sandbox"
BOOTSTRAP_BASE = "etpo-gym-base"
BUILD_STAGE_LABEL = "etpo-gym.build-stage"
REQUIREMENTS_LABEL = "etpo-gym.requirements"
DIGEST_LABEL = "etpo-gym.inputs-digest"
#: Packages the kernel needs, pinned to the host's versions when installed here.
PACKAGES = ("ipykernel", "numpy", "scipy", "pandas", "scikit-learn")
CA_VARIABLES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
#: The build context shipped as package data: the Dockerfile and the files it copies in.
CONTEXT_DIR = Path(__file__).resolve().parent / "container"
CONTEXT_FILES = ("Dockerfile", "supervisor.py", "kernel_app.py")

Log = Callable[[str], None]


def project_version() -> str:
    """The installed etpo-gym version (``0.0.0`` from an uninstalled source tree)."""
    try:
        return version("etpo-gym")
    except PackageNotFoundError:
        return "0.0.0"


def inputs_digest() -> str:
    """12 hex digits of SHA-256 over every build input: the context files and the pins."""
    digest = hashlib.sha256()
    for name in CONTEXT_FILES:
        data = (CONTEXT_DIR / name).read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    digest.update(" ".join(requirements()).encode())
    return digest.hexdigest()[:12]


def default_image() -> str:
    """The image the Docker sandbox uses: ``$ETPO_SANDBOX_IMAGE``, else
    ``etpo-gym-sandbox:<version>-<inputs digest>``."""
    return os.environ.get("ETPO_SANDBOX_IMAGE") or (
        f"{IMAGE_REPO}:{project_version()}-{inputs_digest()}"
    )


def requirements() -> list[str]:
    """``PACKAGE==VERSION`` for each kernel package installed on the host, else ``PACKAGE``."""
    pins = []
    for package in PACKAGES:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def host_ca_bundle() -> Path | None:
    """The CA bundle pip on this host is configured with, if any."""
    for variable in CA_VARIABLES:
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            return Path(value)
    configured = _pip_config().get("cert")
    if configured and Path(configured).is_file():
        return Path(configured)
    return None


def _pip_config() -> dict[str, str]:
    """``pip config list`` as ``{"index-url": ..., "extra-index-url": ..., "cert": ...}``."""
    try:
        listing = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[str, str] = {}
    for line in listing.splitlines():
        match = re.match(r"^[^.]+\.([a-z-]+)='(.*)'$", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def index_settings(log: Log = print) -> dict[str, str]:
    """Build arguments ``PIP_INDEX_URL`` / ``PIP_EXTRA_INDEX_URL`` mirroring the host's pip index
    settings. Only ``http(s)`` URLs are kept (``file://`` paths do not exist inside the build) and
    a URL carrying credentials is dropped: they would stay in the image's build history."""
    config = _pip_config()
    settings: dict[str, str] = {}
    for key, variable in (
        ("index-url", "PIP_INDEX_URL"),
        ("extra-index-url", "PIP_EXTRA_INDEX_URL"),
    ):
        raw = os.environ.get(variable) or config.get(key, "")
        kept = []
        for url in raw.split():
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                continue
            if parts.username or parts.password:
                log(f"not passing {variable} {parts.hostname}: it carries credentials")
                continue
            kept.append(url)
        if kept:
            settings[variable] = " ".join(kept)
    return settings


def _codename() -> str:
    """This machine's Debian release name (``bookworm``), or ``""``."""
    os_release = Path("/etc/os-release")
    if os_release.exists():
        match = re.search(r"^VERSION_CODENAME=(\w+)", os_release.read_text(), re.M)
        if match:
            return match.group(1)
    return ""


def debian_mirror() -> tuple[str, str]:
    """``(mirror URL, suite)`` of the Debian archive that apt on this machine uses."""
    suite = _codename()
    candidates: list[tuple[str, list[str]]] = []
    sources = Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1)
                for line in stanza.splitlines()
                if re.match(r"^[A-Za-z-]+:", line)
            )
            uris = fields.get("URIs", "").split()
            suites = fields.get("Suites", "").split()
            candidates += [(uri, suites) for uri in uris]
    lists = [Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if match:
                candidates.append((match.group(1), [match.group(2)]))
    for uri, suites in candidates:
        if uri.rstrip("/").endswith("/debian") and (not suite or suite in suites):
            return uri, suite or suites[0]
    raise SandboxUnavailable(
        "cannot find a Debian mirror in apt's sources (/etc/apt/sources.list*) to bootstrap a "
        "base image from; pass --base IMAGE or --mirror URL",
        backend="docker",
    )


def connect(timeout: int = 600) -> Any:
    """A Docker SDK client with a long timeout (builds are slow), or
    :class:`~etpo_gym.errors.EngineUnavailable` saying why not."""
    return connect_engine(timeout=timeout)


def _image_exists(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def bootstrap_base(
    client: Any, name: str | None = None, mirror: str | None = None, log: Log = print
) -> str:
    """A Debian base image made with ``debootstrap`` + ``docker import`` (no registry needed).

    Reused when ``name`` already exists. Needs root and the ``debootstrap`` program.
    """
    if mirror is None:
        found_mirror, suite = debian_mirror()
    else:
        found_mirror, suite = mirror, _codename() or "bookworm"
    name = name or f"{BOOTSTRAP_BASE}:{suite}"
    if _image_exists(client, name):
        log(f"base {name}: already present")
        return name
    if shutil.which("debootstrap") is None:
        raise SandboxUnavailable(
            "no base image can be pulled and debootstrap is missing: apt-get install debootstrap "
            "(scripts/ensure-docker.sh does), or pass --base IMAGE",
            backend="docker",
        )
    if os.geteuid() != 0:
        raise SandboxUnavailable(
            "bootstrapping a base image with debootstrap needs root; pass --base IMAGE instead",
            backend="docker",
        )
    log(f"base {name}: debootstrap {suite} from {found_mirror} (about a minute)")
    with tempfile.TemporaryDirectory(prefix="etpo-gym-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        command = [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,python3-pip",
            suite,
            str(rootfs),
            found_mirror,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ImageBuildError(
                name,
                f"debootstrap failed with exit status {done.returncode}",
                log_tail=(done.stdout + done.stderr)[-3000:],
            )
        # apt's package lists and caches are of no use in a sandbox.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(archive), "."], check=True
        )
        repository, _, tag = name.partition(":")
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag or "latest")
    log(f"base {name}: imported")
    return name


def choose_base(client: Any, base: str | None, mirror: str | None = None, log: Log = print) -> str:
    """The base image to build on (see the module docstring)."""
    import docker.errors

    wanted = base or f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    if _image_exists(client, wanted):
        return wanted
    try:
        log(f"base {wanted}: pulling")
        client.images.pull(wanted)
        return wanted
    except docker.errors.APIError as exc:
        if base is not None:
            raise SandboxUnavailable(
                f"the base image {base} is neither present nor pullable: {exc}", backend="docker"
            ) from exc
        log(f"base {wanted}: cannot be pulled ({str(exc).splitlines()[0][:160]})")
    return bootstrap_base(client, mirror=mirror, log=log)


def _context(ca: Path | None) -> io.BytesIO:
    """The build context: the package's context files and the CA bundle (an empty file when
    there is none)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        files = [(name, (CONTEXT_DIR / name).read_bytes()) for name in CONTEXT_FILES]
        for name, data in [*files, ("pip-ca.pem", ca.read_bytes() if ca else b"")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def remove_build_stage_images(client: Any) -> int:
    """Delete every image of the throw-away first stage (they may hold the CA bundle)."""
    import docker.errors

    removed = 0
    images = client.images.list(all=True, filters={"label": f"{BUILD_STAGE_LABEL}=1"})
    for image in images:
        try:
            client.images.remove(image.id, force=True, noprune=False)
            removed += 1
        except docker.errors.NotFound:
            removed += 1  # already gone with a child removed before it
        except docker.errors.APIError:
            pass
    client.images.prune(filters={"dangling": True, "label": f"{BUILD_STAGE_LABEL}=1"})
    return removed


def build_image(
    tag: str | None = None,
    base: str | None = None,
    force: bool = False,
    mirror: str | None = None,
    client: Any = None,
    log: Log = print,
) -> str:
    """Build the sandbox image unless it is already built; returns its tag.

    Raises :class:`SandboxUnavailable` (no engine, no base) or :class:`ImageBuildError` (the
    build failed; ``log_tail`` holds the end of its log).
    """
    missing = [name for name in CONTEXT_FILES if not (CONTEXT_DIR / name).is_file()]
    if missing:
        raise SandboxUnavailable(
            f"the image's build context is incomplete ({', '.join(missing)} missing in "
            f"{CONTEXT_DIR}): reinstall etpo-gym",
            backend="docker",
        )
    tag = tag or default_image()
    client = client or connect()
    wanted = " ".join(requirements())
    digest = inputs_digest()
    if not force and _image_exists(client, tag):
        have = client.images.get(tag).labels.get(DIGEST_LABEL)
        if have == digest:
            log(f"image {tag}: already built (inputs {digest}: {wanted})")
            return tag
        log(f"image {tag}: built from other inputs ({have}, now {digest}); rebuilding")
    base_image = choose_base(client, base, mirror, log)
    ca = host_ca_bundle()
    buildargs = {
        "BASE": base_image,
        "REQUIREMENTS": wanted,
        "VERSION": project_version(),
        "INPUTS_DIGEST": digest,
        **index_settings(log),
    }
    log(f"image {tag}: building on {base_image} with {wanted}" + (f", CA {ca}" if ca else ""))
    started = time.monotonic()
    lines: list[str] = []
    error = ""
    try:
        stream = client.api.build(
            fileobj=_context(ca),
            custom_context=True,
            tag=tag,
            buildargs=buildargs,
            rm=True,
            forcerm=True,
            pull=False,
            # The build reaches the package index the way the host does (proxy, DNS).
            network_mode="host",
            decode=True,
        )
        for chunk in stream:
            text = chunk.get("stream") or chunk.get("status") or ""
            if text.strip():
                lines.append(text.rstrip())
                if text.startswith("Step "):
                    log("  " + text.strip())
            if "error" in chunk:
                error = chunk["error"]
    finally:
        remove_build_stage_images(client)
    if error or not _image_exists(client, tag):
        raise ImageBuildError(
            tag, error or "no image was produced", log_tail="\n".join(lines[-40:])
        )
    _check_no_ca(client, tag)
    log(f"image {tag}: built in {time.monotonic() - started:.0f} s")
    return tag


def _check_no_ca(client: Any, tag: str) -> None:
    """Refuse an image whose history mentions the CA file (it must live in stage 1 only)."""
    history = client.api.history(tag)
    if any("pip-ca.pem" in (layer.get("CreatedBy") or "") for layer in history):
        client.images.remove(tag, force=True)
        raise ImageBuildError(tag, "the image contains the CA bundle in a layer; removed it")
