"""The dev stack's supervisor: start NATS and the services, load the demo, run the traffic, stop it all.

Start: nats-server (unless ``--nats-url``) → activity, acl and edge as child
processes (acl and edge wait for the log that activity provisions), and with
``--outbox-dsn`` the outbox installed and a relay beside them → every
service accepts requests → demo data → the banner and ``userstream ready`` →
demo traffic. Stop, on SIGINT/SIGTERM or when any part exits on its own:
traffic → edge (its streams get ``close``) → acl and activity → NATS. A part
that exits on its own is reported with the end of its log, and the stack
exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import psycopg
import structlog

from userstream.dev.banner import READY_LINE, Addresses, banner
from userstream.dev.children import ChildProcess
from userstream.dev.demo import USERS, load_demo
from userstream.dev.readiness import wait_grpc_serving, wait_http_ready
from userstream.dev.secret import dev_secret
from userstream.dev.settings import HOST, DevSettings
from userstream.dev.traffic import DemoTraffic
from userstream.embedded_nats import NatsServerProcess
from userstream.errors import UserstreamError
from userstream.outbox.schema import install_async
from userstream.rpc.acl import AclClient
from userstream.rpc.activity import ActivityClient
from userstream.tokens import issue_token

log = structlog.get_logger("userstream.dev")

T = TypeVar("T")
_NATS_WATCH_INTERVAL = 0.5
_NO_DEMO_USER = "alice"


class StackError(Exception):
    """A part of the stack failed to start or exited; the message names it and says why."""


class _InterruptedError(Exception):
    """SIGINT or SIGTERM arrived while starting."""


class DevStack:
    """Runs the stack in the foreground; ``run()`` returns the exit status."""

    def __init__(self, settings: DevSettings, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.settings = settings
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._nats: NatsServerProcess | None = None
        self._children: list[ChildProcess] = []
        self._clients: list[AclClient | ActivityClient] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: asyncio.Future[str] | None = None
        self._stopping = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            return await self._run(stop)
        finally:
            await self._shutdown()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def _run(self, stop: asyncio.Event) -> int:
        assert self._failure is not None
        stopped = asyncio.get_running_loop().create_task(stop.wait())
        try:
            addresses, tokens = await self._until_stopped(self._start(), stopped)
        except _InterruptedError:
            return 0
        except StackError as error:
            self._report(str(error))
            return 1
        settings = self.settings
        text = banner(addresses, tokens, settings.token_ttl / 3600, traffic=settings.traffic)
        self._write(self._out, f"{text}\n{READY_LINE}\n")
        if settings.traffic:
            self._spawn(self._traffic(addresses))
        waiters: list[asyncio.Future[Any]] = [stopped, self._failure]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if self._failure.done():
            self._report(self._failure.result())
            return 1
        return 0

    # -- start ------------------------------------------------------------------------------------------

    async def _start(self) -> tuple[Addresses, dict[str, str]]:
        settings = self.settings
        data_dir = settings.data_dir
        logs = data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        secret = dev_secret(data_dir)
        nats_url = await self._start_nats(logs / "nats.log")
        edge_port, activity_port, acl_port, relay_port = (
            port or _free_port()
            for port in (settings.edge_port, settings.activity_port, settings.acl_port, settings.relay_port)
        )
        addresses = Addresses(
            edge_url=f"http://{HOST}:{edge_port}",
            activity_addr=f"{HOST}:{activity_port}",
            acl_addr=f"{HOST}:{acl_port}",
            nats_url=nats_url,
            data_dir=data_dir,
            relay_url=f"http://{HOST}:{relay_port}" if settings.outbox_dsn else None,
        )
        env = _child_env(addresses, secret)
        host = ["--host", HOST]
        services = [
            ("activity", ["userstream.cli", "activity", *host, "--port", str(activity_port)]),
            ("acl", ["userstream.cli", "acl", *host, "--port", str(acl_port)]),
            ("edge", ["userstream.dev.edge_process", *host, "--port", str(edge_port), *self._edge_flags()]),
        ]
        if settings.outbox_dsn:
            await self._install_outbox(settings.outbox_dsn)
            env = {**env, "USERSTREAM_OUTBOX_DSN": settings.outbox_dsn}
            services.append(("relay", ["userstream.cli", "relay", *host, "--port", str(relay_port)]))
        for name, arguments in services:
            log_path = logs / f"{name}.log"
            log_path.write_bytes(b"")  # each run its own log
            child = ChildProcess(name, arguments, env, log_path)
            await child.start()
            self._children.append(child)
            self._spawn(self._watch_child(child))
        _note("dev.starting", edge=addresses.edge_url, nats=nats_url)
        try:
            await asyncio.wait_for(self._wait_ready(addresses), settings.start_timeout)
        except TimeoutError:
            raise StackError(
                f"the services did not accept requests within {settings.start_timeout:g} s (see {logs}/)"
            ) from None
        if settings.demo:
            activity, acl = self._grpc_clients(addresses)
            try:
                await load_demo(acl, activity)
            except UserstreamError as error:
                raise StackError(f"loading the demo data failed: {error}") from error
        users = [user.id for user in USERS] if settings.demo else [_NO_DEMO_USER]
        tokens = {user: issue_token(user, secret, settings.token_ttl) for user in users}
        return addresses, tokens

    @staticmethod
    async def _install_outbox(dsn: str) -> None:
        try:
            version = await install_async(dsn)
        except psycopg.Error as error:
            raise StackError(f"installing the outbox failed: {str(error).strip()}") from error
        _note("dev.outbox_installed", version=version)

    def _edge_flags(self) -> list[str]:
        flags = ["--token-ttl", str(self.settings.token_ttl)]
        return flags if self.settings.demo else [*flags, "--no-demo"]

    async def _start_nats(self, log_file: Path) -> str:
        if self.settings.nats_url:
            return self.settings.nats_url
        await asyncio.to_thread(log_file.write_bytes, b"")
        server = NatsServerProcess(
            store_dir=self.settings.data_dir / "nats",
            port=self.settings.nats_port or -1,
            host=HOST,
            log_file=log_file,
        )
        self._nats = server
        try:
            await asyncio.to_thread(server.start)
        except (RuntimeError, TimeoutError, OSError) as error:
            hint = f" (is port {self.settings.nats_port} taken?)" if self.settings.nats_port else ""
            raise StackError(f"nats-server did not start: {error}{hint}; see {log_file}") from error
        self._spawn(self._watch_nats(server))
        return server.url

    async def _wait_ready(self, addresses: Addresses) -> None:
        relay = [wait_http_ready(addresses.relay_url + "/readyz")] if addresses.relay_url else []
        await asyncio.gather(
            wait_grpc_serving(addresses.activity_addr),
            wait_grpc_serving(addresses.acl_addr),
            wait_http_ready(addresses.edge_url + "/readyz"),
            *relay,
        )

    def _grpc_clients(self, addresses: Addresses) -> tuple[ActivityClient, AclClient]:
        if not self._clients:
            token = self.settings.grpc_token
            self._clients = [
                ActivityClient(addresses.activity_addr, token=token),
                AclClient(addresses.acl_addr, token=token),
            ]
        activity, acl = self._clients
        assert isinstance(activity, ActivityClient)
        assert isinstance(acl, AclClient)
        return activity, acl

    async def _traffic(self, addresses: Addresses) -> None:
        activity, acl = self._grpc_clients(addresses)
        settings = self.settings
        traffic = DemoTraffic(
            activity, acl, interval=settings.traffic_interval, membership_every=settings.traffic_membership_every
        )
        await traffic.run()

    # -- watching -----------------------------------------------------------------------------------------

    async def _watch_child(self, child: ChildProcess) -> None:
        status = await child.wait()
        if not self._stopping:
            tail = child.log_tail()
            detail = f"; the end of {child.log_path}:\n{tail}" if tail else ""
            self._fail(f"the {child.name} service exited with status {status}{detail}")

    async def _watch_nats(self, server: NatsServerProcess) -> None:
        # nats-server is not our asyncio child (NatsServerProcess runs it): poll.
        while server.running or self._stopping:  # noqa: ASYNC110
            await asyncio.sleep(_NATS_WATCH_INTERVAL)
        self._fail(f"nats-server exited; see {server.log_file}")

    def _fail(self, message: str) -> None:
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(message)

    async def _until_stopped(self, work: Awaitable[T], stopped: asyncio.Task[bool]) -> T:
        """``work``'s result, unless a stop signal or a part's exit comes first."""
        assert self._failure is not None
        task = asyncio.ensure_future(work)
        waiters: list[asyncio.Future[Any]] = [task, stopped, self._failure]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if self._failure.done():
            raise StackError(self._failure.result())
        raise _InterruptedError

    # -- stop ---------------------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        self._stopping = True
        _note("dev.stopping")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in self._clients:
            with contextlib.suppress(Exception):  # the children are stopped whatever happens here
                await client.close()
        timeout = self.settings.stop_timeout
        edge = [child for child in self._children if child.name == "edge"]
        # The edge first, so that its streams end with `close` while the other services still answer.
        await asyncio.gather(*(child.stop(timeout) for child in edge))
        await asyncio.gather(*(child.stop(timeout) for child in self._children if child not in edge))
        if self._nats is not None:
            await asyncio.to_thread(self._nats.stop, timeout)
        _note("dev.stopped")

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _report(self, message: str) -> None:
        self._write(self._err, f"userstream dev: {message}\nuserstream dev: stopping everything\n")

    @staticmethod
    def _write(target: TextIO, text: str) -> None:
        # Whoever reads our output may be gone (`userstream dev | tee`, then Ctrl-C): stopping must go on.
        with contextlib.suppress(OSError, ValueError):
            target.write(text)
            target.flush()


def _note(event: str, **details: object) -> None:
    """Log, unless stderr is a closed pipe: nothing may keep the stack from stopping its children."""
    with contextlib.suppress(OSError, ValueError):
        log.info(event, **details)


def _child_env(addresses: Addresses, secret: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "USERSTREAM_NATS_URL": addresses.nats_url,
            "USERSTREAM_JWT_SECRET": secret,
            "USERSTREAM_ACL_ADDR": addresses.acl_addr,
            "USERSTREAM_ACTIVITY_ADDR": addresses.activity_addr,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("USERSTREAM_LOG_FORMAT", "console")
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port
