"""The container image's build inputs and its health check script.

Without podman: the Dockerfile is linted by hadolint (test_validators), its
build context is checked against the files the build needs, and the health
check that compose runs inside the image is run against real servers. The
image itself is built and run by test_container_image.py (`make image-check`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, ROOT
from userstream.rpc.server import GrpcServer
from userstream.settings import GrpcServerSettings

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").rstrip("/")
        regex = re.escape(body).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def _ignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_build_context_holds_what_the_build_copies_and_nothing_else() -> None:
    patterns = _ignore_patterns()
    sources = []
    for keyword, args in _instructions():
        if keyword == "COPY" and "--from=" not in args:
            *copied, _destination = args.split()
            sources += copied
    assert sources
    for source in sources:
        files = [p for p in (ROOT / source).rglob("*") if p.is_file()] if (ROOT / source).is_dir() else [ROOT / source]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative and ".egg-info" not in relative:
                assert not _ignored(relative, patterns), f"{relative} is copied but excluded from the context"
    # What pip needs to build the package (pyproject's readme included).
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in sources
    for unwanted in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "libs/userstream/__pycache__/x.pyc"):
        assert _ignored(unwanted, patterns), unwanted


def _build_context(destination: Path) -> None:
    """Copy what `docker build` would send (the working tree less the ignored files) to ``destination``."""
    patterns = _ignore_patterns()
    reincluded = [p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")]
    for directory, subdirectories, files in os.walk(ROOT):
        relative_dir = Path(directory).relative_to(ROOT).as_posix().removeprefix(".")
        # Skip whole trees that are ignored and hold nothing re-included (.git, .venv, ...).
        subdirectories[:] = [
            d
            for d in subdirectories
            if not _ignored(f"{relative_dir}/{d}".lstrip("/"), patterns)
            or any(r.startswith(f"{relative_dir}/{d}/".lstrip("/")) for r in reincluded)
        ]
        for name in files:
            relative = f"{relative_dir}/{name}".lstrip("/")
            if not _ignored(relative, patterns):
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, destination / relative)


def test_package_builds_from_the_build_context_alone(tmp_path: Path) -> None:
    """The image's `pip install .` step, on exactly the files the build context holds."""
    context = tmp_path / "context"
    _build_context(context)
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    result = subprocess.run(
        [*pip_wheel, "--wheel-dir", str(wheels), str(context)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = wheels.glob("userstream-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        console_scripts = archive.read(entry_points).decode()
    assert {"userstream/cli.py", "userstream/default_policy.toml", "userstream/proto/__init__.py"} <= names
    for service in (ROOT / "services").iterdir():
        if (service / "__init__.py").is_file():
            assert f"userstream/{service.name}/cli.py" in names
    assert "userstream = userstream.cli:main" in console_scripts


def test_image_runs_as_a_numeric_non_root_user_under_an_init() -> None:
    instructions = _instructions()
    (user,) = [args for keyword, args in instructions if keyword == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    (entrypoint,) = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert entrypoint == '["tini", "--", "userstream"]'


def test_both_stages_use_one_pinned_python_that_the_package_supports() -> None:
    bases = {args.split()[0] for keyword, args in _instructions() if keyword == "FROM"}
    assert len(bases) == 1  # the venv is copied between stages: same interpreter, same path
    (base,) = bases
    match = re.fullmatch(r"python:(3)\.(\d+)-slim-[a-z]+", base)
    assert match, base
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", requires)
    assert minimum
    assert (int(match[1]), int(match[2])) >= (int(minimum[1]), int(minimum[2]))


def test_compose_runs_the_health_check_where_the_image_puts_it() -> None:
    copies = [args for keyword, args in _instructions() if keyword == "COPY"]
    destination = next(args.split()[-1] for args in copies if "healthcheck.py" in args)
    assert destination in COMPOSE_FILE.read_text()


# --- the health check script, against real servers -----------------------------------


async def _healthcheck(*args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(HEALTHCHECK), *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return await process.wait()


@pytest.mark.integration
async def test_grpc_health_check_follows_the_serving_status() -> None:
    server = GrpcServer(GrpcServerSettings(host="127.0.0.1", port=0, shutdown_grace=0.1), [])
    port = await server.start()
    try:
        assert await _healthcheck("grpc", f"127.0.0.1:{port}") == 1  # starts NOT_SERVING
        await server.set_serving(serving=True)
        assert await _healthcheck("grpc", f"127.0.0.1:{port}") == 0
    finally:
        await server.stop()
    assert await _healthcheck("grpc", f"127.0.0.1:{port}") == 1  # nothing listening


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.integration
async def test_http_health_check_wants_a_2xx(http_server: str) -> None:
    assert await _healthcheck("http", f"{http_server}/readyz") == 0
    assert await _healthcheck("http", f"{http_server}/draining") == 1
    assert await _healthcheck("http", "file:///etc/passwd") == 1
    assert await _healthcheck("nonsense") == 2
