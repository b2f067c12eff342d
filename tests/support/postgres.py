"""A real PostgreSQL server for tests: initdb into a temp dir, a free port, stopped by PID.

PostgreSQL refuses to run as root. Tests run as root on CI, so there the
server runs as the ``postgres`` system user (created by the Debian package)
in a directory it owns; a developer running the tests as themselves runs it
as themselves. The binaries come from the Debian ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``), installed by ``ensure_commands``
when missing and the tests run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.support.cluster import free_port
from tests.support.debian import ensure_commands

_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0
_POLL = 0.05
SUPERUSER = "postgres"


def find_bindir() -> Path:
    """The newest installed server's bin directory, installing the Debian package if needed (root)."""
    found = _installed_bindirs()
    if not found:
        # pg_ctlcluster ships with every Debian server package; asking for it installs `postgresql`.
        ensure_commands({"pg_ctlcluster": "postgresql"})
        found = _installed_bindirs()
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql/*/bin: apt-get install postgresql")
    return found[-1]


def _installed_bindirs() -> list[Path]:
    candidates = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    return sorted(candidates, key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)


def _run_as() -> pwd.struct_passwd | None:
    """The user the server runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("postgres")


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in its own temp directory; ``start`` again after ``stop``/``kill``."""

    bindir: Path = field(default_factory=find_bindir)
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="userstream-pg-")))
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _databases: int = field(default=0, init=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname} connect_timeout=5"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def init(self) -> None:
        owner = _run_as()
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run(
            [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"],
            owner,
        )

    def start(self) -> None:
        if not self.data_dir.exists():
            self.init()
        owner = _run_as()
        with self.log_file.open("ab") as output:
            if owner is not None:
                os.chown(self.log_file, owner.pw_uid, owner.pw_gid)
            self._process = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    # Test data need not survive a machine crash; a server crash keeps it (the OS has it).
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=owner.pw_uid if owner is not None else None,
                group=owner.pw_gid if owner is not None else None,
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if not self.running:
                raise RuntimeError(f"postgres exited; see {self.log_file}:\n{self.log_tail()}")
            try:
                with psycopg.connect(self.dsn(), autocommit=True) as connection:
                    connection.execute("SELECT 1")
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"postgres not ready within {_START_TIMEOUT} s; see {self.log_file}") from None
                time.sleep(_POLL)

    def create_database(self) -> str:
        """A new, empty database; returns its DSN."""
        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): sessions are cut, committed data kept."""
        self._signal_and_wait(signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        self._signal_and_wait(signal.SIGKILL)

    def destroy(self) -> None:
        self._signal_and_wait(signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _signal_and_wait(self, signum: signal.Signals) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        # The postmaster's children (backends) go with it; the session group catches stragglers.
        process.send_signal(signum)
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if signum == signal.SIGKILL:
            # Backends notice their postmaster's death on their own; the group kill makes it immediate.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    @staticmethod
    def _run(command: list[str], owner: pwd.struct_passwd | None) -> None:
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            user=owner.pw_uid if owner is not None else None,
            group=owner.pw_gid if owner is not None else None,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
            cwd="/",
        )
