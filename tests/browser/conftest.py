"""Headless Chromium against a real ``userstream dev``: the browser client and the demo page as people use them.

The Chromium is Debian's (installed by the setup when missing: see chromium.py),
driven by Playwright's Python package with ``executable_path``; Playwright's
own browser download is never used.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright

from tests.browser.chromium import BrowserUnavailableError, ensure_chromium
from tests.integration.dev.running import DevRun, start_dev

# Flags for a machine with no network but the package registries, running as root.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> Path:
    try:
        return ensure_chromium()
    except BrowserUnavailableError as error:
        pytest.skip(f"no headless Chromium: {error}")


@pytest.fixture(scope="module")
def dev(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRun]:
    """One dev stack for the module, without traffic: the tests make every change themselves."""
    run = start_dev(tmp_path_factory.mktemp("browser"), "--no-traffic")
    try:
        run.wait_ready()
        yield run
    finally:
        run.stop()
        run.close_output()


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, chromium_sandbox=False
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """One browser profile: its tabs share Web Locks, BroadcastChannel and localStorage."""
    created = await browser.new_context()
    try:
        yield created
    finally:
        await created.close()


def dev_api(run: DevRun, method: str, path: str, body: object | None = None) -> dict[str, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # our own loopback URL
        run.edge_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def open_streams(run: DevRun) -> int:
    with urllib.request.urlopen(run.edge_url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("userstream_edge_open_streams "):
                return int(float(line.split()[1]))
    raise AssertionError("no userstream_edge_open_streams metric")


def wait_for(predicate: object, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.05)
