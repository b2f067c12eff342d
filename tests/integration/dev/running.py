"""``userstream dev`` as a user runs it: a subprocess, read from its stdout, stopped with a signal."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

READY = "userstream ready"
START_TIMEOUT = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without any USERSTREAM_* of the developer's, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("USERSTREAM_")}
    return {**env, **{f"USERSTREAM_{key}": value for key, value in extra.items()}}


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@dataclass
class DevRun:
    process: subprocess.Popen[str]
    data_dir: Path
    stderr_path: Path
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)
    _reader: threading.Thread | None = None

    def start_reading(self) -> None:
        assert self.process.stdout is not None
        stdout = self.process.stdout

        def pump() -> None:
            for line in stdout:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"userstream dev exited before ready:\n{self.stderr}")
            self.lines.append(line)
            if line == READY:
                return
        raise AssertionError(f"no `{READY}` within {timeout} s:\n" + "\n".join(self.lines) + self.stderr)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def line_starting(self, prefix: str) -> str:
        return next(line.strip() for line in self.lines if line.strip().startswith(prefix))

    @property
    def edge_url(self) -> str:
        return self.line_starting("user stream").split()[2].removesuffix("/me/stream")

    def token_of(self, user: str) -> str:
        return self.line_starting(user + " ").split()[-1]

    def children(self) -> list[int]:
        return child_pids(self.process.pid)

    def close_output(self) -> None:
        """Once the process has exited: let the reader finish, then close the pipe."""
        if self._reader is not None:
            self._reader.join(5)
        stdout = self.process.stdout
        if stdout is not None and not stdout.closed and (self._reader is None or not self._reader.is_alive()):
            stdout.close()

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)


def start_dev(tmp_path: Path, *flags: str, merge_stderr: bool = False, read: bool = True, **env: str) -> DevRun:
    data_dir = tmp_path / "dev"
    stderr_path = tmp_path / "dev.stderr"
    command = [sys.executable, "-m", "userstream.cli", "dev", "--data-dir", str(data_dir)]
    command += ["--nats-port", "0", "--edge-port", "0", "--activity-port", "0", "--acl-port", "0", *flags]
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env=clean_env(**env),
        )
    run = DevRun(process, data_dir, stderr_path)
    if read:
        run.start_reading()
    return run
