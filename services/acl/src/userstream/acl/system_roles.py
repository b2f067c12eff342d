"""System roles (``admin`` / ``user``): a JetStream key-value bucket that every replica mirrors in memory.

System roles are not events of the log (CONTRACT §4: a change takes effect at
the latest from the user's next connection), so they live in a key-value
bucket, one key per user, replicated like the log. Each replica watches the
bucket with an ordered consumer and answers from memory; the replica that
writes a role applies it at once (read-your-writes), and entries are applied
by revision so a late echo never overwrites a newer value.
"""

from __future__ import annotations

import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from userstream.acl._feed import OrderedFeed
from userstream.acl._waiters import SequenceWaiters
from userstream.acl.settings import AclTuning
from userstream.errors import UnavailableError
from userstream.nats_connection import NatsConnection
from userstream.permissions import SYSTEM_ROLES, SYSTEM_USER

log = structlog.get_logger("userstream.acl")

_OPERATION_HEADER = "KV-Operation"
_REMOVALS = ("DEL", "PURGE")


class SystemRoles:
    def __init__(self, connection: NatsConnection, tuning: AclTuning, replicas: int) -> None:
        self._connection = connection
        self._bucket = tuning.roles_bucket
        self._stream = f"KV_{tuning.roles_bucket}"
        self._prefix = f"$KV.{tuning.roles_bucket}."
        self._replicas = replicas
        self._timeout = tuning.apply_timeout
        self._roles: dict[str, tuple[str, int]] = {}
        self._kv: KeyValue | None = None
        self._seen = SequenceWaiters()
        self._feed = OrderedFeed(
            connection,
            self._stream,
            (self._prefix + ">",),
            self._on_entry,
            heartbeat=tuning.consumer_heartbeat,
            inactive_threshold=tuning.consumer_inactive_threshold,
        )
        self.loaded = False

    def role_of(self, user_id: str) -> str:
        entry = self._roles.get(user_id)
        return SYSTEM_USER if entry is None else entry[0]

    async def open(self) -> None:
        """Open (or create) the bucket and load every role; until then ``loaded`` is False."""
        kv = await self._bucket_handle()
        last = (await kv.status()).stream_info.state.last_seq
        await self._feed.start(0, last_per_subject=True)
        try:
            await self._seen.wait(last, self._timeout)
        except TimeoutError:
            raise UnavailableError(f"system roles not loaded within {self._timeout} s") from None
        self.loaded = True
        log.info("acl.roles_loaded", admins=sum(1 for role, _ in self._roles.values() if role != SYSTEM_USER))

    async def resume(self) -> None:
        """After a reconnect: follow the bucket again from the last change seen.

        The roles in memory stay in use meanwhile (a role change reaches a replica late, never wrongly:
        CONTRACT §4 promises it at the user's next connection).
        """
        await self._feed.restart()

    async def set(self, user_id: str, role: str) -> None:
        """Store ``role`` for ``user_id`` (validated by the caller); visible here when this returns."""
        if role not in SYSTEM_ROLES:
            raise ValueError(f"unknown system role {role!r}")
        kv = self._kv
        if kv is None or not self._connection.connected:
            raise UnavailableError("the system roles bucket is not available: NATS is not connected")
        try:
            revision = await kv.put(user_id, role.encode())
        except (nats.errors.Error, TimeoutError) as exc:
            raise UnavailableError(f"cannot store the system role: {type(exc).__name__}") from exc
        self._apply(user_id, role, revision)

    async def close(self) -> None:
        await self._feed.stop()

    async def _bucket_handle(self) -> KeyValue:
        js = self._connection.jetstream
        try:
            self._kv = await js.key_value(self._bucket)
        except nats.js.errors.BucketNotFoundError:
            try:
                self._kv = await js.create_key_value(
                    KeyValueConfig(
                        bucket=self._bucket,
                        description="userstream acl: system role per user",
                        history=1,
                        replicas=self._replicas,
                        storage=StorageType.FILE,
                    )
                )
                log.info("acl.roles_bucket_created", bucket=self._bucket, replicas=self._replicas)
            except nats.js.errors.BadRequestError:
                # Another replica created it between our two calls.
                self._kv = await js.key_value(self._bucket)
        return self._kv

    async def _on_entry(self, sequence: int, msg: Msg) -> None:
        user_id = msg.subject.removeprefix(self._prefix)
        headers = msg.headers or {}
        if headers.get(_OPERATION_HEADER) in _REMOVALS:
            role = SYSTEM_USER
        else:
            role = msg.data.decode(errors="replace")
            if role not in SYSTEM_ROLES:
                log.warning("acl.role_skipped", user_id=user_id, value=role[:32])
                role = SYSTEM_USER
        self._apply(user_id, role, sequence)
        self._seen.advance(sequence)

    def _apply(self, user_id: str, role: str, revision: int) -> None:
        known = self._roles.get(user_id)
        if known is not None and known[1] >= revision:
            return
        self._roles[user_id] = (role, revision)
