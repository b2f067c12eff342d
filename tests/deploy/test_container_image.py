"""The image itself, built by podman from deploy/docker/Dockerfile and run (``make image-check``).

What the offline checks (test_image.py, hadolint) cannot see: a file missing
from the installed tree, a permission problem as the non-root user, a wrong
entrypoint, a write to the read-only root filesystem.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy import podman
from tests.deploy.conftest import report
from tests.unit.test_layout import tree_files
from userstream.embedded_nats import nats_server_binary

# The first test also builds the image (minutes on a cold machine: the base root filesystem, the packages).
pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

# The goal for the image's size (uncompressed, as `podman images` reports it).
SIZE_GOAL_MB = 200
SITE_PACKAGES = "/opt/userstream/lib/python3.11/site-packages"


def run(image: str, *args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    """The image run as compose and Kubernetes run it: read-only root, a tmpfs /tmp, no capabilities."""
    flags = ["--rm", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--network", "none", *podman.ulimits()]
    if entrypoint is not None:
        flags += ["--entrypoint", entrypoint]
    return podman.podman("run", *flags, image, *args)


def test_runs_as_uid_10001_without_root_group(container_image: str) -> None:
    assert run(container_image, "-u", entrypoint="id").stdout.strip() == "10001"
    assert run(container_image, "-G", entrypoint="id").stdout.split() == ["10001"]
    user = podman.podman("image", "inspect", "--format", "{{.Config.User}}", container_image).stdout.strip()
    assert user == "10001:10001"  # numeric: Kubernetes checks runAsNonRoot without resolving names


def test_the_cli_answers_through_tini_on_a_read_only_root(container_image: str) -> None:
    result = run(container_image, "--help")  # ENTRYPOINT tini -- userstream
    for command in ("activity", "acl", "edge", "token"):
        assert command in result.stdout
    for command in ("activity", "acl", "edge"):
        assert "--host" in run(container_image, command, "--help").stdout
    # tini is PID 1: it forwards SIGTERM to the service (the edge drains) and reaps.
    entrypoint = podman.podman("image", "inspect", "--format", "{{json .Config.Entrypoint}}", container_image)
    assert entrypoint.stdout.strip() == '["tini","--","userstream"]'


def test_read_only_friendly_every_service_imports_and_only_tmp_is_written(container_image: str) -> None:
    script = "import userstream.activity.service, userstream.acl.service, userstream.edge.app; print('ok')"
    assert run(container_image, "-c", script, entrypoint="python").stdout.strip() == "ok"
    workdir = podman.podman("image", "inspect", "--format", "{{.Config.WorkingDir}}", container_image)
    assert workdir.stdout.strip() == "/tmp"
    # Even on a writable root, the service user cannot change the application (root owns it).
    probe = podman.podman(
        "run",
        "--rm",
        *podman.ulimits(),
        "--entrypoint",
        "sh",
        container_image,
        "-c",
        "touch /opt/userstream/x 2>/dev/null && echo app-writable; touch /tmp/x && echo tmp-ok",
    )
    assert probe.stdout.split() == ["tmp-ok"]


def test_nats_server_binary_is_the_pinned_release(container_image: str) -> None:
    inside = run(container_image, "--version", entrypoint="nats-server").stdout.strip()
    pinned = subprocess.run(
        [str(nats_server_binary()), "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    assert inside == pinned


def test_installed_tree_holds_every_module_and_data_file(container_image: str) -> None:
    listing = run(
        container_image,
        "-c",
        f"import pathlib; base = pathlib.Path('{SITE_PACKAGES}');"
        "print('\\n'.join(sorted(p.relative_to(base).as_posix() for p in (base / 'userstream').rglob('*')"
        " if p.is_file() and '__pycache__' not in p.parts)))",
        entrypoint="python",
    )
    installed = set(listing.stdout.split())
    expected = {relative for _path, relative in tree_files()}
    assert expected <= installed, sorted(expected - installed)
    # Each module compiled ahead (the read-only root cannot take a __pycache__ at run time).
    compiled = run(
        container_image,
        "-c",
        f"import pathlib; print(len(list(pathlib.Path('{SITE_PACKAGES}/userstream').rglob('__pycache__/*.pyc'))))",
        entrypoint="python",
    )
    modules = sum(1 for _path, relative in tree_files() if relative.endswith(".py"))
    assert int(compiled.stdout) >= modules
    # The health check compose runs, where compose runs it.
    usage = podman.podman(
        "run", "--rm", "--read-only", *podman.ulimits(), "--entrypoint", "python", container_image,
        "/opt/userstream/healthcheck.py",
        check=False,
    )  # fmt: skip
    assert usage.returncode == 2
    assert "usage: healthcheck.py" in usage.stderr


def test_image_size_is_reported(container_image: str, request: pytest.FixtureRequest) -> None:
    size = podman.image_size(container_image)
    base = podman.python_base()
    base_size = podman.image_size(base.name)
    kind = "official" if base.real else "Debian stand-in"
    megabytes = size / 1e6
    report(
        request.config,
        f"image size {megabytes:.0f} MB (goal {SIZE_GOAL_MB} MB): base ({kind}) {base_size / 1e6:.0f} MB"
        f" + userstream {(size - base_size) / 1e6:.0f} MB",
    )
    # The userstream layers alone (the base's size depends on where it came from) stay well within the goal.
    assert size - base_size < SIZE_GOAL_MB * 1e6
