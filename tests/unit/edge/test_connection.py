"""One connection's delivery logic: order, holds, pacing, limits, memberships, the offset event."""

from __future__ import annotations

import json

from tests.unit.edge._events import CODEC, RecordingHub, connection, event, page
from userstream.edge.catchup import CatchUp
from userstream.edge.connection import Connection
from userstream.policy import parse_policy

ADMIN_ONLY_ATTACHMENTS = parse_policy(
    """
[roles]
organization = ["admin", "member"]
[entities.page]
read = ["admin", "member"]
public = true
[entities.attachment]
read = ["admin"]
""",
    source="test",
)


def frames(connection: Connection) -> list[tuple[str, str | None, dict[str, object]]]:
    """(event, id, data) of everything queued, as a client would parse it; the queue is taken."""
    parsed = []
    for block in connection.outbox.take().decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            parsed.append((fields["event"], fields.get("id"), json.loads(fields["data"])))
    return parsed


def change_ids(queued: list[tuple[str, str | None, dict[str, object]]]) -> list[int]:
    """The sequences of the queued change events."""
    return [int(str(event_id)) - CODEC.log_id * 10**12 for name, event_id, _ in queued if name == "change"]


def test_live_events_flow_once_the_connect_is_released() -> None:
    hub = RecordingHub()
    conn = connection(hub, memberships={"acme": "member"})
    conn.offer(page(11))  # still held by the connect
    assert conn.outbox.buffer == []
    conn.release()
    conn.offer(page(12))
    queued = frames(conn)
    assert [name for name, _, _ in queued] == ["offset", "change", "change"]
    assert queued[0][2] == {"cursor": CODEC.encode(10), "resumed": False}
    assert change_ids(queued) == [11, 12]
    assert hub.stats.deliveries == 2


def test_held_events_from_several_channels_are_delivered_sorted_and_once() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member", "globex": "member"})
    for sequence in (14, 12, 13, 12, 11, 9):  # two channels, a duplicate, one before the start
        conn.offer(page(sequence, "acme" if sequence % 2 else "globex"), False)
    conn.release()
    assert change_ids(frames(conn)) == [11, 12, 13, 14]
    assert conn.position == 14


def test_offset_names_the_last_replayed_event_else_the_start() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member"}, target=20, resumed=True)
    conn.offer(page(11), False)
    conn.offer(page(15, "globex"), False)  # not a member: not replayed
    conn.release()
    queued = frames(conn)
    assert queued[-1] == ("offset", CODEC.encode(11), {"cursor": CODEC.encode(11), "resumed": True})

    nothing = connection(RecordingHub(), memberships={"acme": "member"}, target=20, resumed=True)
    nothing.offer(page(15, "globex"), False)
    nothing.release()
    assert frames(nothing) == [("offset", CODEC.encode(10), {"cursor": CODEC.encode(10), "resumed": True})]


def test_offset_comes_before_the_first_event_past_the_target() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member"}, target=12, resumed=True)
    for sequence in (11, 13):
        conn.offer(page(sequence), False)
    conn.release()
    assert [(name, event_id) for name, event_id, _ in frames(conn)] == [
        ("change", CODEC.encode(11)),
        ("offset", CODEC.encode(11)),
        ("change", CODEC.encode(13)),
    ]


def test_a_catch_up_is_handed_to_the_writer_a_page_at_a_time() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member"}, max_bytes=8192, target=210, resumed=True)
    for sequence in range(11, 211):  # ~80 KB: ten times the limit
        conn.offer(page(sequence), False)
    conn.release()
    assert not conn.closed
    assert conn.outbox.buffered <= 8192 // 4 + 1024
    received: list[int] = []
    while True:
        queued = frames(conn)
        if not queued:
            break
        received += change_ids(queued)
        if queued[-1][0] == "offset":
            break
    assert received == list(range(11, 211))
    assert not conn.closed


def test_live_events_waiting_behind_a_catch_up_count_against_the_limit() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member"}, max_bytes=8192, target=100, resumed=True)
    for sequence in range(11, 101):
        conn.offer(page(sequence), False)
    conn.release()  # the writer never takes: the client does not read
    sequence = 101
    while not conn.closed:
        conn.offer(page(sequence))  # live
        sequence += 1
    assert conn.cut_off
    assert conn.close_reason == "slow-consumer"
    assert 101 + 8192 // 400 // 2 < sequence < 101 + 8192 // 100
    assert frames(conn) == [("close", None, {"reason": "slow-consumer"})]
    assert not conn.backlog
    assert not conn.held


def test_live_events_held_by_a_slow_catch_up_count_against_the_limit() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member"}, max_bytes=8192)
    conn.release()
    conn.hold()  # a catch-up that does not finish
    for sequence in range(11, 100):
        conn.offer(page(sequence))
        if conn.closed:
            break
    assert conn.close_reason == "slow-consumer"


def test_a_client_that_stops_reading_is_cut_off_and_its_queue_dropped() -> None:
    hub = RecordingHub()
    conn = connection(hub, memberships={"acme": "member"}, max_bytes=4096)
    conn.release()
    for sequence in range(11, 100):
        conn.offer(page(sequence))
    assert conn.cut_off
    assert hub.forgotten == [conn]
    assert frames(conn) == [("close", None, {"reason": "slow-consumer"})]


def test_a_grant_joins_the_organization_after_its_own_position() -> None:
    hub = RecordingHub()
    conn = connection(hub)
    conn.release()
    frames(conn)
    conn.offer(page(11))  # not a member yet
    conn.offer(event(12, "membership.created", "acme", user="alice", role="member"))
    assert hub.joined == [("org.acme", 12)]
    conn.offer(page(13), False)  # the new channel's catch-up
    conn.offer(page(14))
    assert change_ids(frames(conn)) == [12]  # held until the join completes
    conn.release()
    assert change_ids(frames(conn)) == [13, 14]


def test_a_revocation_leaves_the_organization_and_the_deleted_event_carries_the_role() -> None:
    hub = RecordingHub()
    conn = connection(hub, memberships={"acme": "admin"})
    conn.release()
    frames(conn)
    conn.hold()
    conn.offer(event(11, "membership.deleted", "acme", user="alice"), False)
    conn.offer(page(12), False)  # queued behind the revocation: must not arrive
    conn.release()
    queued = frames(conn)
    assert change_ids(queued) == [11]
    assert queued[0][2]["data"] == {"userId": "alice", "organizationId": "acme", "role": "admin"}
    assert hub.left == ["org.acme"]
    assert conn.memberships == {}


def test_another_users_membership_event_is_never_written() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member"})
    conn.release()
    frames(conn)
    conn.offer(event(11, "membership.created", "acme", user="bob", role="admin"))
    assert frames(conn) == []
    assert conn.memberships == {"acme": "member"}


def test_events_queued_behind_organization_deleted_are_not_delivered() -> None:
    hub = RecordingHub()
    conn = connection(hub, memberships={"acme": "member", "globex": "member"})
    for sequence, (type_, organization) in enumerate(
        [("organization.deleted", "acme"), ("page.updated", "acme"), ("page.updated", "globex")], start=11
    ):
        conn.offer(event(sequence, type_, organization), False)
    conn.release()
    assert change_ids(frames(conn)) == [11, 13]
    assert hub.left == ["org.acme"]
    assert conn.memberships == {"globex": "member"}  # deletion is final: no member of acme from there on


def test_roles_and_system_admins_under_a_restrictive_policy() -> None:
    def seen(role: str | None, system_role: str) -> list[int]:
        memberships = {"acme": role} if role else {}
        conn = connection(
            RecordingHub(), memberships=memberships, policy=ADMIN_ONLY_ATTACHMENTS, system_role=system_role
        )
        conn.release()
        frames(conn)
        conn.channels["org.acme"] = 10  # delivered by the channel whether or not a member (the filter decides)
        conn.offer(event(11, "attachment.created", "acme"))
        conn.offer(event(12, "page.created", "acme"))
        conn.offer(event(13, "organization.updated", "acme"))
        return change_ids(frames(conn))

    assert seen("admin", "user") == [11, 12, 13]
    assert seen("member", "user") == [12, 13]
    assert seen("member", "admin") == [11, 12, 13]  # a system admin member reads every type
    assert seen(None, "admin") == []  # but membership is still required
    assert seen(None, "user") == []


def test_the_public_stream_only_shows_public_changes_of_public_types() -> None:
    conn = connection(RecordingHub(), user=None)
    conn.release()
    frames(conn)
    conn.offer(page(11, public=True))
    conn.offer(page(12))
    conn.offer(event(13, "organization.updated", "acme"))
    conn.offer(event(14, "attachment.updated", "acme"))
    assert change_ids(frames(conn)) == [11]


def test_close_sends_retry_then_close_and_drops_what_waits() -> None:
    hub = RecordingHub()
    conn = connection(hub, memberships={"acme": "member"})
    for sequence in range(11, 20):
        conn.offer(page(sequence), False)
    conn.close("shutdown", retry_ms=4321)
    assert conn.outbox.take() == b'retry: 4321\n\nevent: close\ndata: {"reason":"shutdown"}\n\n'
    assert not conn.held
    assert hub.forgotten == [conn]
    conn.close("shutdown")  # once only
    conn.end()
    assert hub.forgotten == [conn]


# -- catch-ups: delivery up to the frontier (issue 19) -----------------------------------------------


def test_nothing_past_a_catch_up_frontier_goes_out_until_the_catch_up_reaches_it() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member", "globex": "member"}, target=30, resumed=True)
    catchup = CatchUp(10)
    conn.begin_catchup(catchup)
    conn.release()  # the join's hold, handed over to the frontier
    conn.offer(page(25, "globex"))  # live, on another channel: past the frontier, it waits
    conn.offer(page(11), False)
    conn.offer(page(12), False)
    conn.caught_up(catchup, 12)
    assert change_ids(frames(conn)) == [11, 12]
    conn.offer(page(13), False)
    conn.offer(page(20), False)
    conn.caught_up(catchup, 20)
    assert change_ids(frames(conn)) == [13, 20]
    conn.end_catchup(catchup)
    queued = frames(conn)
    assert change_ids(queued) == [25]
    # 25 is before the connect-time head (30): the offset follows it, once no catch-up is left.
    assert [name for name, _, _ in queued] == ["change", "offset"]


def test_released_events_wait_for_a_catch_up_that_began_behind_them() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member", "globex": "member"})
    conn.release()
    conn.hold()  # a join in progress (a new membership at 10)
    conn.offer(page(14, "globex"))
    conn.offer(page(16, "globex"))
    catchup = CatchUp(10)
    conn.begin_catchup(catchup)
    conn.release()
    assert change_ids(frames(conn)) == []  # 14 and 16 may not pass the catch-up's missing 11..
    conn.offer(page(15), False)
    conn.caught_up(catchup, 15)
    assert change_ids(frames(conn)) == [14, 15]
    conn.end_catchup(catchup)
    assert change_ids(frames(conn)) == [16]


def test_a_catch_up_reads_its_next_page_only_once_the_writer_took_the_last() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member"}, max_bytes=8192, target=500, resumed=True)
    catchup = CatchUp(10)
    conn.begin_catchup(catchup)
    conn.release()
    assert conn.room_for(catchup)
    for sequence in range(11, 60):
        conn.offer(page(sequence), False)
    conn.caught_up(catchup, 59)
    assert not conn.room_for(catchup)  # a page is queued for the writer and more wait in the backlog
    while conn.backlog:
        conn.outbox.take()  # the writer takes what is queued; the next page of the backlog follows
    conn.outbox.take()
    assert conn.room_for(catchup)


def test_only_the_catch_up_holding_the_frontier_back_reads() -> None:
    conn = connection(RecordingHub(), memberships={"acme": "member", "globex": "member"})
    behind, ahead = CatchUp(10), CatchUp(40)
    conn.begin_catchup(behind)
    conn.begin_catchup(ahead)
    conn.release()
    assert conn.room_for(behind)
    assert not conn.room_for(ahead)
    conn.caught_up(behind, 50)
    assert conn.room_for(ahead)
