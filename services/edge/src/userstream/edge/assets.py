"""``GET /client.js``: the browser client (no dependencies), served by every edge so apps load it from there."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from litestar import Response, get

JAVASCRIPT = "text/javascript; charset=utf-8"
# Short enough that a deploy's new client reaches open apps soon; long enough to spare reloads.
_CLIENT_MAX_AGE = 300


@cache
def static_file(name: str) -> bytes:
    """A file of ``userstream.edge.static``, read once."""
    return files("userstream.edge.static").joinpath(name).read_bytes()


@get("/client.js", include_in_schema=False)
async def client_js() -> Response[bytes]:
    return Response(
        static_file("client.js"),
        media_type=JAVASCRIPT,
        headers={"Cache-Control": f"public, max-age={_CLIENT_MAX_AGE}", "X-Content-Type-Options": "nosniff"},
    )


ASSET_ROUTES = [client_js]
