"""The session hook's HTTP client against raw servers: keep-alive, a server closing idle connections, bad answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from userstream.edge._hook_client import MAX_RESPONSE_BYTES, HookClient, HookConnectionError

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class RawServer:
    """Answers each request with ``answer(index)`` bytes; closes after it when ``close_after`` says so."""

    def __init__(self, answer: Callable[[int], bytes], close_after: Callable[[int], bool] = lambda _: False) -> None:
        self.answer, self.close_after = answer, close_after
        self.requests = 0
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                index, self.requests = self.requests, self.requests + 1
                writer.write(self.answer(index))
                await writer.drain()
                if self.close_after(index):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook?x=1"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[RawServer]]]:
    servers: list[RawServer] = []

    async def start(answer: Callable[[int], bytes], close_after: Callable[[int], bool] = lambda _: False) -> RawServer:
        raw = RawServer(answer, close_after)
        raw.server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
        servers.append(raw)
        return raw

    yield start  # type: ignore[misc]
    for raw in servers:
        assert raw.server is not None
        raw.server.close()


async def test_keep_alive_reuses_one_connection(serve) -> None:
    server = await serve(lambda _: OK)
    client = HookClient(server.url, max_idle=4)
    for _ in range(5):
        response = await client.post(b"{}")
        assert (response.status, response.body) == (200, b"{}")
    assert server.connections == 1
    client.close()


async def test_an_idle_connection_the_server_closed_is_replaced(serve) -> None:
    server = await serve(lambda _: OK, close_after=lambda _: True)  # like a short keep-alive timeout
    client = HookClient(server.url, max_idle=4)
    for _ in range(3):
        assert (await client.post(b"{}")).status == 200
    assert server.requests == 3
    client.close()


async def test_chunked_answers_and_connection_close(serve) -> None:
    chunked = b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    server = await serve(lambda index: chunked if index == 0 else closing)
    client = HookClient(server.url, max_idle=4)
    assert (await client.post(b"{}")).status == 401
    assert (await client.post(b"{}")).body == b"ok"
    assert (await client.post(b"{}")).body == b"ok"
    assert server.connections == 2  # the `Connection: close` answer's connection was not reused
    client.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage, not HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_RESPONSE_BYTES + 1) + b"x" * (MAX_RESPONSE_BYTES + 1),
    ],
    ids=["not-http", "truncated", "too-large"],
)
async def test_bad_answers_are_connection_errors(serve, answer: bytes) -> None:
    server = await serve(lambda _: answer, close_after=lambda _: True)
    client = HookClient(server.url, max_idle=4)
    with pytest.raises(HookConnectionError):
        await client.post(b"{}")
    client.close()


async def test_nothing_listening() -> None:
    with pytest.raises(HookConnectionError):
        await HookClient("http://127.0.0.1:9/", max_idle=1).post(b"{}")
