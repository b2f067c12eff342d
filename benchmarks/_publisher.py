"""The publisher: records the benchmark's events through the activity service, at a steady rate.

Each event is a ``page.updated`` of about 300 bytes in one of the population's
organizations (round robin), whose ``data`` carries the step it belongs to and
the moment it was sent (``{"s": step, "t": unix_seconds, "pad": …}``): clients
measure end-to-end latency from that stamp. Events go out in small batches
(``RecordActivities``) every few milliseconds, several calls in flight, so the
publisher keeps its pace even when one call is slow. Only events whose call
succeeded are counted as published.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from benchmarks._histogram import Histogram
from benchmarks._population import Population
from userstream.events import ActivityInput, Limits, encode_body, validate_activity
from userstream.policy import default_policy
from userstream.proto.activity.v1 import activity_pb2 as pb
from userstream.rpc.acl import AclClient

EVENT_BYTES = 300
_RECORD_ACTIVITIES = "/userstream.activity.v1.ActivityService/RecordActivities"
_CALL_TIMEOUT = 10.0
_SEED_BATCH = 500
_MAX_BATCH = 1000


def _padding_for(target: int) -> int:
    probe = ActivityInput(
        type="page.updated",
        entity_id="p-12",
        organization_id="bench-o12",
        data_json='{"s":12,"t":1796012345.123456,"pad":""}',
        changed_keys=("title",),
    )
    return max(0, target - len(encode_body(validate_activity(probe, default_policy(), Limits()))))


@dataclass
class Published:
    """What one publishing run recorded."""

    step: int
    per_org: dict[str, int] = field(default_factory=dict)
    events: int = 0
    errors: int = 0
    first_send: float = 0.0
    last_send: float = 0.0
    last_ack: float = 0.0
    max_lag_ms: float = 0.0  # how far behind its schedule the publisher ever was
    ack: Histogram = field(default_factory=Histogram)  # ms from send to the activity service's answer

    @property
    def send_seconds(self) -> float:
        return max(1e-9, self.last_send - self.first_send)


class Publisher:
    def __init__(self, address: str, population: Population, event_bytes: int = EVENT_BYTES) -> None:
        self.population = population
        self._channel = grpc.aio.insecure_channel(address)
        identity: Callable[[bytes], bytes] = lambda data: data  # noqa: E731  # requests are pre-serialized
        self._record = self._channel.unary_unary(
            _RECORD_ACTIVITIES, request_serializer=identity, response_deserializer=identity
        )
        self._pad = "x" * _padding_for(event_bytes)
        self._next_org = 0
        self._entity = 0

    async def close(self) -> None:
        await self._channel.close()

    def _event(self, step: int, stamp: float) -> tuple[str, pb.Activity]:
        org = self.population.org(self._next_org)
        self._next_org = (self._next_org + 1) % self.population.organizations
        self._entity = (self._entity + 1) % 50
        activity = pb.Activity(
            type="page.updated",
            entity_id=f"p-{self._entity}",
            organization_id=org,
            data_json=f'{{"s":{step},"t":{stamp:.6f},"pad":"{self._pad}"}}',
            changed_keys=["title"],
        )
        return org, activity

    async def publish(
        self, step: int, events_per_s: float, duration: float, *, tick: float = 0.005, in_flight: int = 8
    ) -> Published:
        """Send ``events_per_s`` for ``duration`` seconds (open loop); returns what was recorded."""
        loop = asyncio.get_running_loop()
        result = Published(step)
        total = max(1, round(events_per_s * duration))
        gate = asyncio.Semaphore(in_flight)
        tasks: list[asyncio.Task[None]] = []

        async def call(orgs: list[str], request: bytes, stamp: float) -> None:
            try:
                await self._record(request, timeout=_CALL_TIMEOUT)
            except grpc.aio.AioRpcError:
                result.errors += len(orgs)
            else:
                for org in orgs:
                    result.per_org[org] = result.per_org.get(org, 0) + 1
                result.events += len(orgs)
                result.last_ack = time.time()
                result.ack.add((result.last_ack - stamp) * 1000)
            finally:
                gate.release()

        started = loop.time()
        sent = 0
        while sent < total:
            due = min(total, int((loop.time() - started) * events_per_s) + 1)
            if due > sent:
                await gate.acquire()
                count = min(due - sent, _MAX_BATCH)
                stamp = time.time()
                result.first_send = result.first_send or stamp
                result.last_send = stamp
                lag = (loop.time() - started - sent / events_per_s) * 1000
                result.max_lag_ms = max(result.max_lag_ms, lag)
                batch = [self._event(step, stamp) for _ in range(count)]
                request = pb.RecordActivitiesRequest(activities=[activity for _, activity in batch])
                tasks.append(loop.create_task(call([org for org, _ in batch], request.SerializeToString(), stamp)))
                sent += count
            else:
                await asyncio.sleep(min(tick, max(0.0, (sent + 1) / events_per_s - (loop.time() - started))))
        await asyncio.gather(*tasks)
        return result

    async def seed_memberships(self, users: int, acl_address: str, timeout: float = 120.0) -> float:
        """Make users ``0..users-1`` members of their organizations (as membership events); seconds taken."""
        started = time.monotonic()
        pending = [
            pb.Activity(
                type="membership.created",
                user_id=self.population.user(index),
                organization_id=org,
                role="member",
                idempotency_key=f"bench-member-{index}-{org}",
            )
            for index in range(users)
            for org in self.population.orgs_of(index)
        ]
        for first in range(0, len(pending), _SEED_BATCH):
            request = pb.RecordActivitiesRequest(activities=pending[first : first + _SEED_BATCH])
            await self._record(request.SerializeToString(), timeout=60.0)
        # acl follows the log: wait until it has applied the last membership.
        acl = AclClient(acl_address, timeout=10.0)
        try:
            last = self.population.user(users - 1)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                subject = await acl.get_subject(last, at_cursor="now")
                if len(subject.memberships) >= self.population.orgs_per_user:
                    return time.monotonic() - started
                await asyncio.sleep(0.2)
        finally:
            await acl.close()
        raise TimeoutError("acl did not apply the seeded memberships in time")
