"""The ``ACTIVITY`` stream: its configuration, provisioning, and retained range."""

from __future__ import annotations

import nats.js.errors
import structlog
from nats.js.api import DiscardPolicy, RePublish, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.manager import JetStreamManager

from userstream.cursor import LogBounds
from userstream.eventlog.subjects import LIVE_PREFIX, STREAM_SUBJECTS
from userstream.settings import LogStreamSettings

log = structlog.get_logger("userstream.eventlog")

# Events carry at most 256 KiB of data by default; leave room for the envelope.
MAX_MESSAGE_BYTES = 1024 * 1024


def desired_config(settings: LogStreamSettings) -> StreamConfig:
    return StreamConfig(
        name=settings.name,
        description="userstream: the ordered log of every recorded activity",
        subjects=list(STREAM_SUBJECTS),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=settings.retention_age,
        max_msgs=settings.retention_max_msgs,
        max_msg_size=MAX_MESSAGE_BYTES,
        # JetStream refuses a duplicate window longer than the retention age.
        duplicate_window=min(settings.duplicate_window, settings.retention_age),
        num_replicas=settings.replicas,
        # Every stored message is republished with its sequence for the edges' live path.
        republish=RePublish(src=">", dest=LIVE_PREFIX + ">"),
        allow_direct=True,
        deny_delete=True,
        # An organization's deletion and its tombstone are stored together or not at all.
        allow_atomic=True,
    )


async def provision_stream(manager: JetStreamManager, settings: LogStreamSettings) -> StreamInfo:
    """Create the stream, or bring an existing one to the configured settings. Idempotent."""
    wanted = desired_config(settings)
    try:
        info = await manager.stream_info(settings.name)
    except nats.js.errors.NotFoundError:
        try:
            info = await manager.add_stream(wanted)
        except nats.js.errors.BadRequestError:
            # Another replica created it between our two calls; fall through to the update check.
            info = await manager.stream_info(settings.name)
        else:
            log.info("log.stream_created", stream=settings.name, replicas=settings.replicas)
            return info
    changed = _changed_fields(info.config, wanted)
    if changed:
        info = await manager.update_stream(wanted)
        log.info("log.stream_updated", stream=settings.name, changed=changed)
    return info


def _changed_fields(current: StreamConfig, wanted: StreamConfig) -> list[str]:
    compared = ("max_age", "max_msgs", "max_msg_size", "duplicate_window", "num_replicas", "allow_direct")
    changed = [name for name in compared if getattr(current, name) != getattr(wanted, name)]
    if sorted(current.subjects or []) != sorted(wanted.subjects or []):
        changed.append("subjects")
    current_republish = (current.republish.src, current.republish.dest) if current.republish else None
    assert wanted.republish is not None
    if current_republish != (wanted.republish.src, wanted.republish.dest):
        changed.append("republish")
    if current.deny_delete != wanted.deny_delete:
        changed.append("deny_delete")
    if bool(current.allow_atomic) != bool(wanted.allow_atomic):
        changed.append("allow_atomic")
    return changed


def log_id_of(info: StreamInfo) -> int:
    """The log's identity: its creation time in Unix seconds (kept across restarts and updates)."""
    if info.created is None:
        raise RuntimeError(f"stream {info.config.name} reports no creation time")
    return int(info.created.timestamp())


async def read_bounds(manager: JetStreamManager, stream: str) -> LogBounds:
    """The log's identity and retained range, asked of the stream leader."""
    info = await manager.stream_info(stream)
    return LogBounds(log_id=log_id_of(info), first_sequence=info.state.first_seq, last_sequence=info.state.last_seq)
