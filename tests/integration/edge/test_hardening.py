"""Issue 19: anonymous caps and lifetime, slots kept for signed-in users, header limits, SO_SNDBUF, start checks.

Real HTTP over sockets against the real edge; raw sockets where the point is
what a client that never finishes its request can do.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from tests.integration.edge.conftest import StackFactory
from tests.support.debian import ensure_commands
from tests.support.edge import start_edge_process, wait_until
from tests.support.sse import open_stream, request_error
from tests.support.stack import SECRET, Stack

pytestmark = pytest.mark.integration


async def _raw_connection(stack: Stack) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", stack.edge.port)


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True if the server closes the connection (EOF or reset) within ``within`` seconds."""
    try:
        while await asyncio.wait_for(reader.read(65536), within):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


# -- connection slots ------------------------------------------------------------------------------


async def test_anonymous_streams_have_their_own_cap_and_leave_slots_to_signed_in_users(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(edge_env={"MAX_STREAMS_PER_WORKER": "3", "MAX_ANONYMOUS_STREAMS_PER_WORKER": "2"})
    anonymous = [await open_stream(stack.base_url, "/public/stream") for _ in range(2)]
    refused = await request_error(stack.base_url, "/public/stream")
    assert refused.status == 503
    assert refused.json()["error"]["code"] == "unavailable"
    assert int(refused.headers["retry-after"]) >= 1
    # The anonymous flood filled its own cap, not the worker: a signed-in user still gets a stream.
    async with await stack.stream("alice") as alice:
        assert (await alice.next_event()).event == "offset"
        full = await request_error(stack.base_url, headers=stack.auth("bob"))
        assert full.status == 503
    for stream in anonymous:
        await stream.close()
    await wait_until(lambda: stack.edge.runtime.registry.anonymous == 0, 5)
    async with await open_stream(stack.base_url, "/public/stream") as again:
        assert (await again.next_event()).event == "offset"


async def test_anonymous_streams_end_after_their_lifetime_with_a_retry(make_stack: StackFactory) -> None:
    stack = await make_stack(edge_env={"ANONYMOUS_STREAM_LIFETIME": "1", "RETRY_MS": "1234"})
    async with await stack.stream("alice") as signed_in, await open_stream(stack.base_url, "/public/stream") as public:
        assert (await public.next_event()).event == "offset"
        assert (await signed_in.next_event()).event == "offset"
        events = await public.read_to_end(timeout=5.0)
        assert [event.event for event in events if event.event != "ping"] == ["close"]
        assert events[-1].json() == {"reason": "max-lifetime"}
        assert public.retry == 1234  # a retry: the client resumes with its cursor
        # Signed-in streams end with their token, not with the anonymous lifetime.
        await signed_in.no_change_within(0.5)
        assert not signed_in.ended


# -- header limits and the send buffer -------------------------------------------------------------


async def test_a_client_that_never_finishes_its_headers_is_disconnected(make_stack: StackFactory) -> None:
    stack = await make_stack(edge_env={"HEADER_TIMEOUT": "0.5"})
    reader, writer = await _raw_connection(stack)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never the blank line
    await writer.drain()
    silent_reader, silent_writer = await _raw_connection(stack)  # never a byte
    try:
        assert await _closed_by_server(reader, 10.0)
        assert await _closed_by_server(silent_reader, 10.0)
    finally:
        writer.close()
        silent_writer.close()
    # A request sent in time is served, and an open stream is not cut by the header deadline.
    async with await stack.stream("alice") as stream:
        assert (await stream.next_event()).event == "offset"
        await asyncio.sleep(1.0)  # longer than the deadline: the stream must outlive it (not a synchronisation)
        page = await stack.page("acme")
        assert page  # alice is no member: nothing arrives, but the stream is still open
        await stream.no_change_within(0.2)
        assert not stream.ended


async def test_headers_over_the_limit_are_431(make_stack: StackFactory) -> None:
    stack = await make_stack(edge_env={"MAX_HEADER_BYTES": "2048"})
    response = await request_error(stack.base_url, "/public/stream", headers={"X-Padding": "a" * 4096})
    assert response.status == 431
    assert response.json()["error"]["code"] == "headers_too_large"
    ok = await request_error(stack.base_url, "/healthz", headers={"X-Padding": "a" * 1000})
    assert ok.status == 200


async def test_accepted_sockets_get_a_small_send_buffer(make_stack: StackFactory) -> None:
    stack = await make_stack(edge_env={"SOCKET_SEND_BUFFER": "32768"})
    async with await open_stream(stack.base_url, "/public/stream") as stream:
        assert (await stream.next_event()).event == "offset"
        connections = stack.edge.server.server_state.connections
        sizes = {
            protocol.transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)  # type: ignore[attr-defined]
            for protocol in connections
        }
    # Linux reports twice what was set (the kernel's bookkeeping); autotuning would grow it to megabytes.
    assert sizes == {2 * 32768}


# -- start-up checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JWT_SECRET": "too-short-secret"}, "at least 32 are required"),
        ({"JWT_SECRET": SECRET, "CORS_ORIGINS": "https://app.example.com,*"}, "not `*`"),
    ],
)
async def test_the_edge_refuses_to_start_with_unsafe_settings(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    starting = start_edge_process(tmp_path / "edge.log", timeout=20.0, NATS_URL="nats://127.0.0.1:1", **env)
    with pytest.raises(RuntimeError) as refused:
        await starting
    assert "exited with" in str(refused.value)
    assert message in str(refused.value)


# -- small ones --------------------------------------------------------------------------------------


async def test_503_bodies_do_not_echo_internal_addresses(stack: Stack) -> None:
    acl_port = str(stack.acl_service.port)
    await stack.acl_service.stop()
    response = await request_error(stack.base_url, headers=stack.auth("alice"))
    assert response.status == 503
    body = response.body.decode()
    assert acl_port not in body
    assert "127.0.0.1" not in body
    assert "StatusCode" not in body


async def test_client_js_requires_an_explicit_key(stack: Stack, tmp_path: Path) -> None:
    ensure_commands({"node": "nodejs"})
    served = await request_error(stack.base_url, "/client.js")
    assert served.status == 200
    node = shutil.which("node")
    assert node is not None
    script = tmp_path / "check.js"
    # A page's globals as far as connect() reads them before opening anything.
    script.write_text(
        "globalThis.self = globalThis;\nglobalThis.location = { href: 'https://app.example/' };\n"
        + served.body.decode()
        + "\n"
        + "for (const options of [{}, { key: '' }, { key: 42 }]) {\n"
        + "  try { userstream.connect(options); console.log('connected'); }\n"
        + "  catch (error) { console.log(error.name + ': ' + error.message); }\n"
        + "}\n"
    )
    process = await asyncio.create_subprocess_exec(
        node, str(script), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    lines = stdout.decode().splitlines()
    assert lines == ["TypeError: userstream.connect: `key` is required, e.g. the signed-in user's id"] * 3
