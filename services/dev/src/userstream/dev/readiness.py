"""Waiting until a service of the dev stack accepts requests."""

from __future__ import annotations

import asyncio

import httpx

from userstream.rpc.channel import is_serving, open_channel

_POLL_INTERVAL = 0.1
_PROBE_TIMEOUT = 1.0


async def wait_grpc_serving(address: str) -> None:
    """Until the gRPC server at ``address`` reports SERVING on the standard health service."""
    channel = open_channel(address)
    try:
        while not await is_serving(channel, timeout=_PROBE_TIMEOUT):  # noqa: ASYNC110  # polling a server
            await asyncio.sleep(_POLL_INTERVAL)
    finally:
        await channel.close()


async def wait_http_ready(url: str) -> None:
    """Until ``url`` (the edge's ``/readyz``) answers 200."""
    async with httpx.AsyncClient(timeout=_PROBE_TIMEOUT) as client:
        while True:
            try:
                response = await client.get(url)
            except httpx.HTTPError:
                pass
            else:
                if response.status_code == httpx.codes.OK:
                    return
            await asyncio.sleep(_POLL_INTERVAL)
