"""The services of the dev stack as child processes, each in its own session, its output in a log file.

Its own session means a Ctrl-C in the terminal reaches only the supervisor,
which stops the children in order; signals go to the child's whole process
group, so nothing it started outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

_TAIL_BYTES = 8192


class ChildProcess:
    """One service: ``python -m <module> <arguments>``, output appended to ``log_path``."""

    def __init__(self, name: str, arguments: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.command = [sys.executable, "-m", *arguments]
        self.env = dict(env)
        self.log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    async def wait(self) -> int:
        """The exit status, once the process has exited."""
        assert self._process is not None, "not started"
        return await self._process.wait()

    async def stop(self, timeout: float) -> None:
        """SIGTERM to the process group, SIGKILL if it is still there after ``timeout`` seconds."""
        process = self._process
        if process is None or process.returncode is not None:
            self._signal_group(signal.SIGKILL)  # whatever it left behind in its group
            return
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
            await process.wait()
        self._signal_group(signal.SIGKILL)

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the service wrote, to explain a crash."""
        try:
            with self.log_path.open("rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                log_file.seek(max(0, log_file.tell() - _TAIL_BYTES))
                text = log_file.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, signum: signal.Signals) -> None:
        if self._process is None:
            return
        # The child leads its own session, so its process group id is its pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)
