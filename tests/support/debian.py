"""Debian packages that some tests need (PostgreSQL, podman, promtool), installed on demand.

CI runs as root on a fresh machine with only Python, make and git: a test that
needs a server binary from Debian installs it here, once per machine, with
apt-get. As a non-root developer without the package the test is skipped with
the command to run instead. One lock file serialises concurrent installs (two
test sessions, or a helper and a test) so that dpkg's own lock never fails one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

_LOCK = Path("/tmp/userstream-apt.lock")
# Where Debian puts administrators' commands (iptables, the PostgreSQL cluster tools' helpers): on root's PATH
# in a login shell, but not in every environment a test runs in (`env -i PATH=/usr/bin:/bin`, some CI runners).
_SYSTEM_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_APT_TIMEOUT = 900.0
_updated = False


def ensure_commands(commands: dict[str, str]) -> None:
    """Make every command in ``{command: debian package}`` available, or skip the test saying how.

    A command already on PATH (or at the given absolute path) needs nothing. The system's sbin folders join
    this process's PATH first, so that the command and the tools it runs itself (podman runs iptables) are found.
    """
    _with_system_dirs()
    missing = {command: package for command, package in commands.items() if not _available(command)}
    if not missing:
        return
    packages = sorted(set(missing.values()))
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"needs {', '.join(sorted(missing))}: sudo apt-get install {' '.join(packages)}")
    install(packages)
    still_missing = [command for command in missing if not _available(command)]
    if still_missing:
        pytest.fail(f"apt-get installed {packages} but {still_missing} is still not found")


def install(packages: Iterable[str]) -> None:
    """``apt-get install`` the packages (root only), running ``apt-get update`` once per process first."""
    global _updated  # noqa: PLW0603 -- once per test session is the point
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _updated:
            subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=_APT_TIMEOUT, capture_output=True)
            _updated = True
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            check=True,
            env=env,
            timeout=_APT_TIMEOUT,
            capture_output=True,
        )


def _with_system_dirs() -> None:
    entries = os.environ.get("PATH", "").split(os.pathsep)
    missing = [folder for folder in _SYSTEM_DIRS if folder not in entries]
    if missing:
        os.environ["PATH"] = os.pathsep.join([*entries, *missing])


def _available(command: str) -> bool:
    if command.startswith("/"):
        return Path(command).exists()
    return shutil.which(command) is not None
