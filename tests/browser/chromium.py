"""Finding, and on a fresh machine installing, the headless Chromium the browser tests drive.

Playwright's own browser download reaches a CDN that CI cannot; Debian's
``chromium`` package comes from the distribution's mirrors, which it can. CI
runs as root, so the test setup installs it with apt-get when it is missing.
``USERSTREAM_CHROMIUM`` names another binary; ``USERSTREAM_BROWSER_INSTALL=0``
forbids installing (the tests then skip, saying why).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_APT_TIMEOUT = 900.0


class BrowserUnavailableError(RuntimeError):
    """No Chromium here and none can be installed; the message says precisely why."""


def find_chromium() -> Path | None:
    configured = os.environ.get("USERSTREAM_CHROMIUM")
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def ensure_chromium() -> Path:
    """A Chromium binary, installing Debian's package first if there is none (root and apt-get needed)."""
    found = find_chromium()
    if found is not None:
        return found
    if os.environ.get("USERSTREAM_CHROMIUM"):
        raise BrowserUnavailableError(f"USERSTREAM_CHROMIUM={os.environ['USERSTREAM_CHROMIUM']} is not a file")
    if os.environ.get("USERSTREAM_BROWSER_INSTALL", "1") == "0":
        raise BrowserUnavailableError("no chromium on PATH and USERSTREAM_BROWSER_INSTALL=0 forbids installing it")
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise BrowserUnavailableError("no chromium on PATH and no apt-get to install Debian's `chromium` package")
    if os.geteuid() != 0:
        raise BrowserUnavailableError(
            "no chromium on PATH, and installing Debian's `chromium` package needs root: "
            "run `sudo apt-get install -y chromium` or set USERSTREAM_CHROMIUM"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt_get, "update"], [apt_get, "install", "-y", "--no-install-recommends", "chromium"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=_APT_TIMEOUT, check=False)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise BrowserUnavailableError(f"`{' '.join(command[1:])}` failed: {' | '.join(tail)}")
    found = find_chromium()
    if found is None:
        raise BrowserUnavailableError("apt-get installed `chromium` but no chromium binary is on PATH")
    return found
