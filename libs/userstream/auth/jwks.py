"""The JSON Web Key Set of an identity provider, fetched asynchronously and kept (CONTRACT §6).

One cache per edge worker, on the worker's event loop (PyJWT's ``PyJWKClient``
would block it with urllib and forget its keys when the provider is down):

- fetched at start, then every ``refresh`` seconds ± 10 % (workers and replicas
  spread out); after a failure sooner, backing off from 1 s up to ``refresh``;
- a successful fetch replaces the whole set; a key whose JWK did not change keeps
  its identity, so tokens cached as verified by it stay cached (``holds``);
- a token whose ``kid`` is unknown may trigger one more fetch, at most once every
  ``min_refetch`` seconds, and every caller waiting meanwhile shares that fetch;
- a failed fetch keeps the last good set serving; the state changes (first set,
  unreachable, back) are logged once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import httpx
import msgspec
import structlog

from userstream.auth.keys import VerificationKey, key_from_jwk

log = structlog.get_logger("userstream.auth")

MAX_DOCUMENT_BYTES = 1_048_576
_FIRST_RETRY = 1.0
_JITTER = 0.1


class JwksFetchError(Exception):
    """The set could not be fetched or read; the message says why (never the document)."""


class JwksCache:
    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        refresh: float = 300.0,
        min_refetch: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._client = client
        self._refresh = refresh
        self._min_refetch = min_refetch
        self._timeout = timeout
        self._clock = clock
        self._by_kid: dict[str, VerificationKey] = {}
        self._without_kid: list[VerificationKey] = []
        self._held: set[VerificationKey] = set()
        self._last_attempt = -float("inf")
        self._fetching: asyncio.Task[None] | None = None
        self._failing = False
        # Unix time of the last successful fetch; None until the first.
        self.fetched_at: float | None = None
        self.fetches = 0
        self.failures = 0

    # -- reading ------------------------------------------------------------------------------------

    @property
    def fetched(self) -> bool:
        return self.fetched_at is not None

    def age(self) -> float | None:
        """Seconds since the set was last fetched successfully (None: never)."""
        return None if self.fetched_at is None else max(0.0, time.time() - self.fetched_at)

    def key(self, kid: str) -> VerificationKey | None:
        return self._by_kid.get(kid)

    def keys_without_kid(self, algorithm: str) -> list[VerificationKey]:
        """For a token without ``kid``: every key of the set for its algorithm (a set usually has one or two)."""
        return [key for key in (*self._by_kid.values(), *self._without_kid) if key.algorithm == algorithm]

    def holds(self, key: VerificationKey) -> bool:
        """Whether ``key`` is still in the set (a verdict it produced may still be used)."""
        return key in self._held

    # -- fetching -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Fetch now and keep the set fresh until cancelled."""
        retry = _FIRST_RETRY
        while True:
            await self.fetch()
            if self._failing:
                delay, retry = min(retry, self._refresh), min(retry * 2, self._refresh)
            else:
                delay, retry = self._refresh, _FIRST_RETRY
            await asyncio.sleep(delay * random.uniform(1 - _JITTER, 1 + _JITTER))  # noqa: S311  # jitter

    async def fetch(self) -> None:
        """Fetch the set, or wait for the fetch already under way (callers share one)."""
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.get_running_loop().create_task(self._fetch_once())
        await asyncio.shield(self._fetching)

    async def refetch_for_unknown_kid(self) -> None:
        """Fetch again for a ``kid`` the set lacks, unless the last fetch began under ``min_refetch`` s ago."""
        if self._fetching is not None and not self._fetching.done():
            await asyncio.shield(self._fetching)
        elif self._clock() - self._last_attempt >= self._min_refetch:
            await self.fetch()

    async def wait_for_fetch_under_way(self) -> None:
        """Before the first set: wait for a fetch in progress (at start), so that it is not a 503 needlessly."""
        if self._fetching is not None and not self._fetching.done():
            await asyncio.shield(self._fetching)

    async def _fetch_once(self) -> None:
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            keys = await self._download()
        except JwksFetchError as error:
            self.failures += 1
            if not self._failing:
                self._failing = True
                log.warning("auth.jwks_unreachable", url=self.url, error=str(error), keeps_serving=len(self._held))
            return
        changed = {key.fingerprint for key in keys} != {key.fingerprint for key in self._held}
        self._replace(keys)
        first = self.fetched_at is None
        self.fetched_at = time.time()
        if first or self._failing or changed:
            log.info(
                "auth.jwks_fetched",
                url=self.url,
                keys=len(keys),
                kids=sorted(key.kid for key in keys if key.kid)[:20],
                recovered=self._failing,
            )
        self._failing = False

    def _replace(self, keys: list[VerificationKey]) -> None:
        # An unchanged JWK keeps its object: verdicts cached under it stay valid across refreshes.
        previous = {key.fingerprint: key for key in self._held}
        kept = [previous.get(key.fingerprint, key) for key in keys]
        by_kid: dict[str, VerificationKey] = {}
        without_kid: list[VerificationKey] = []
        for key in kept:
            if key.kid is None:
                without_kid.append(key)
            else:
                by_kid.setdefault(key.kid, key)  # a duplicated kid: the first entry, as most libraries do
        self._by_kid, self._without_kid = by_kid, without_kid
        self._held = {*by_kid.values(), *without_kid}

    async def _download(self) -> list[VerificationKey]:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._client.stream("GET", self.url, headers={"Accept": "application/json"}) as response:
                    if response.status_code != httpx.codes.OK:
                        raise JwksFetchError(f"HTTP {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_DOCUMENT_BYTES:
                            raise JwksFetchError(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
        except TimeoutError:
            raise JwksFetchError(f"no answer within {self._timeout} s") from None
        except JwksFetchError:
            raise
        except Exception as error:  # httpx's errors, and anything a closing client raises: a failed fetch
            raise JwksFetchError(f"{type(error).__name__}: {error}") from None
        return parse_jwks(bytes(body))

    async def close(self) -> None:
        """Stop a fetch under way (before the HTTP client is closed under it)."""
        if self._fetching is not None and not self._fetching.done():
            self._fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetching


def parse_jwks(body: bytes) -> list[VerificationKey]:
    """The usable keys of a JWKS document; JwksFetchError when it is not ``{"keys": [...]}``."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise JwksFetchError("the document is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksFetchError('the document is not a key set ({"keys": [...]})')
    keys = []
    for jwk in document["keys"]:
        key = key_from_jwk(jwk)
        if key is not None:
            keys.append(key)
    return keys
