"""Who is asking: a stream token (header, cookie, query), else the application's session hook (CONTRACT §6).

The worker's authentication parts — the verifier with its key sources, the
JWKS cache and the hook, with their HTTP clients — are built here from
``AuthSettings`` and mapped to HTTP errors here: TokenError → 401,
VerificationUnavailableError → 503 with Retry-After.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from litestar import Request
from yarl import URL

from userstream.auth.jwks import JwksCache
from userstream.auth.verifier import TokenVerifier, VerificationUnavailableError
from userstream.edge.errors import UnauthorizedError, UnavailableHTTPError
from userstream.edge.session_hook import FORWARDED_HEADERS, SessionHook
from userstream.edge.settings import AuthSettings
from userstream.tokens import Principal, TokenError, TokenExpiredError

COOKIE_NAME = "userstream_token"
QUERY_PARAMETER = "access_token"
_JWKS_CONNECTIONS = 2
# Seconds an idle pooled connection is kept: under the 5 s idle timeout of common application servers
# (uvicorn, Node), so the edge drops a connection before the server does rather than racing it.
_KEEPALIVE_EXPIRY = 4.0


class EdgeAuth:
    """One worker's authentication: built in the lifespan, ``run()`` keeps the key set fresh, ``close()``."""

    def __init__(self, settings: AuthSettings, *, cors_origins: tuple[str, ...] = (), retry_after: int = 2) -> None:
        self.settings = settings
        self._cors_origins = frozenset(cors_origins)
        self._retry_after = retry_after
        # Each worker's HTTP egress: one pooled httpx client for the JWKS (a fetch every few minutes) and one
        # aiohttp session for the session hook (a call per cookie-authenticated connect, thousands a second in a
        # reconnect storm, where httpx's pool bookkeeping cost ~2 ms of CPU per call — see docs/auth.md).
        # Neither follows redirects, and nothing a token says (jku, x5u) is ever fetched. The usual
        # HTTPS_PROXY / NO_PROXY / SSL_CERT_FILE variables apply to both, as for any egress of the process
        # (a hook inside the cluster behind a proxy for the outside belongs in NO_PROXY).
        self._client: httpx.AsyncClient | None = None
        if settings.jwks_url:
            limits = httpx.Limits(
                max_connections=_JWKS_CONNECTIONS,
                max_keepalive_connections=_JWKS_CONNECTIONS,
                keepalive_expiry=_KEEPALIVE_EXPIRY,
            )
            self._client = httpx.AsyncClient(limits=limits, timeout=settings.jwks_timeout, follow_redirects=False)
            # httpx logs every request at INFO, with the full URL (which may carry credentials).
            logging.getLogger("httpx").setLevel(logging.WARNING)
        self._hook_session: aiohttp.ClientSession | None = None
        if settings.hook_url:
            self._hook_session = _hook_session(settings.hook_url, settings.hook_concurrency, settings.hook_timeout)
        self.jwks: JwksCache | None = None
        if settings.jwks_url and self._client is not None:
            self.jwks = JwksCache(
                settings.jwks_url,
                self._client,
                refresh=settings.jwks_refresh,
                min_refetch=settings.jwks_min_refetch,
                timeout=settings.jwks_timeout,
            )
        self.verifier = TokenVerifier(
            settings.static_keys(),
            self.jwks,
            issuer=settings.issuer,
            audience=settings.audience,
            max_entries=settings.token_cache_entries,
        )
        self.hook: SessionHook | None = None
        if settings.hook_url and self._hook_session is not None:
            self.hook = SessionHook(
                settings.hook_url,
                self._hook_session,
                timeout=settings.hook_timeout,
                concurrency=settings.hook_concurrency,
                cache_ttl=settings.hook_cache_ttl,
            )

    async def run(self) -> None:
        """Fetch the key set at start and keep it fresh (returns at once without a JWKS URL)."""
        if self.jwks is not None:
            await self.jwks.run()

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()
        if self._client is not None:
            await self._client.aclose()
        if self._hook_session is not None:
            await self._hook_session.close()

    async def authenticate(self, request: Request[Any, Any, Any]) -> Principal:
        """The verified principal, by precedence: Authorization header, cookie, query, then the session hook."""
        token = find_token(
            request.headers.get("authorization"),
            request.cookies.get(COOKIE_NAME),
            request.query_params.get(QUERY_PARAMETER),
        )
        try:
            if token is not None:
                return await self.verifier.verify(token)
            if self.hook is None:
                raise UnauthorizedError(
                    "a stream token is required (Authorization header, userstream_token cookie or access_token)",
                    reason="missing",
                )
            self._check_origin(request)
            return await self.hook.authenticate(forwarded_headers(request))
        except TokenError as error:
            reason = "expired" if isinstance(error, TokenExpiredError) else "invalid"
            raise UnauthorizedError(str(error), reason=reason) from None
        except VerificationUnavailableError as error:
            raise UnavailableHTTPError(str(error), self._retry_after) from None

    def _check_origin(self, request: Request[Any, Any, Any]) -> None:
        """Cookies ride along with any site's requests: a session stream is for its own origin and CORS's list."""
        origin = request.headers.get("origin")
        if origin is None or origin in self._cors_origins:
            return
        if urlsplit(origin).netloc.lower() == (request.headers.get("host") or "").lower():
            return
        raise UnauthorizedError("a session stream from another origin must be allowed by USERSTREAM_CORS_ORIGINS")


def _hook_session(url: str, concurrency: int, timeout: float) -> aiohttp.ClientSession:
    """The worker's pooled session for the hook: one kept-alive connection per call the semaphore lets through."""
    connector = aiohttp.TCPConnector(
        limit=concurrency,
        keepalive_timeout=_KEEPALIVE_EXPIRY,
        # The same CA store as the JWKS's httpx client (certifi, or SSL_CERT_FILE / SSL_CERT_DIR when set).
        ssl=httpx.create_ssl_context(),
    )
    # HTTP(S)_PROXY / NO_PROXY, read once for the hook's one URL. Not trust_env: it reads them again, and
    # ~/.netrc for credentials to send the hook, in a thread on every call — two thread hops per connect.
    proxy: URL | None = None
    proxy_auth: aiohttp.BasicAuth | None = None
    with contextlib.suppress(LookupError):
        proxy, proxy_auth = get_env_proxy_for_url(URL(url))
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        # The hook answers for many browsers: a cookie it sets must never ride along on another browser's call.
        cookie_jar=aiohttp.DummyCookieJar(),
        proxy=proxy,
        proxy_auth=proxy_auth,
    )


def find_token(authorization: str | None, cookie: str | None, query: str | None) -> str | None:
    """The token the request carries (None: none at all); 401 for an Authorization header that is not Bearer."""
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise UnauthorizedError("the Authorization header must be `Bearer <token>`", reason="malformed")
        return credentials.strip()
    return cookie or query or None


def forwarded_headers(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The allow-listed headers present on the request, lower-case names, repeated ones joined."""
    forwarded = {}
    for name in FORWARDED_HEADERS:
        values = request.headers.getall(name, [])
        if values:
            forwarded[name] = ("; " if name == "cookie" else ", ").join(values)
    return forwarded
