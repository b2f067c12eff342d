"""Running a long-lived service in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
import uvloop

from userstream import gc_tuning

log = structlog.get_logger("userstream.process")


class Service(Protocol):
    async def start(self) -> int: ...

    async def stop(self) -> None: ...


def run_service(make: Callable[[], Service]) -> int:
    """Start the service, wait for SIGTERM/SIGINT, stop it in order. Returns the exit status."""
    return uvloop.run(_serve(make))


async def _serve(make: Callable[[], Service]) -> int:
    service = make()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await service.start()
    except OSError as error:
        # Cannot listen (port taken, bad address): say so in one line and exit non-zero.
        log.error("process.start_failed", error=str(error))  # noqa: TRY400  # the message says it all
        await service.stop()
        return 1
    gc_tuning.tune_after_start()
    await stop.wait()
    log.info("process.stopping")
    await service.stop()
    return 0


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float, interval: float = 0.02) -> None:
    """Wait until ``predicate`` holds (polling); raises TimeoutError after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
