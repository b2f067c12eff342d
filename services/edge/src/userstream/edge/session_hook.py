"""Asking the application who a cookie belongs to (CONTRACT §6, the session hook).

A reconnect storm must not become a storm of hook calls that all time out, so
one worker's calls are shaped three ways:

- identical requests in flight share one call (a browser's tabs, or one
  client retrying, send the same headers);
- at most ``concurrency`` calls are in flight; the others queue, and the
  queueing counts against ``timeout`` — who cannot be answered in time gets
  503 with ``Retry-After`` and comes back later, spread by the client's jitter;
- a 200 is reused for ``cache_ttl`` seconds for the same headers (never past
  its ``expires_at``), keyed by a hash of them: a storm of reconnects from the
  same browsers costs one call each per ``cache_ttl``. A refusal is not reused.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable
from http import HTTPStatus

import aiohttp
import msgspec
import structlog

from userstream.auth.verifier import VerificationUnavailableError
from userstream.events.validation import is_valid_id
from userstream.tokens import Principal, TokenError

log = structlog.get_logger("userstream.edge")

# The request headers the hook receives (lower-case), and nothing else.
FORWARDED_HEADERS = ("cookie", "origin", "user-agent", "x-forwarded-for")
MAX_CACHED = 50_000
# An answer is a user id and a time: anything longer is not one, and is not read into memory.
MAX_ANSWER_BYTES = 65_536
_REQUEST_HEADERS = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "userstream-edge"}


class HookAnswer(msgspec.Struct):
    user_id: str
    expires_at: float | None


_decode_answer = msgspec.json.Decoder(HookAnswer).decode


class SessionHook:
    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        timeout: float,
        concurrency: int,
        cache_ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._session = session
        self._timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._in_flight: dict[bytes, asyncio.Task[Principal]] = {}
        # hash of the headers → (principal, reusable until)
        self._answers: dict[bytes, tuple[Principal, float]] = {}
        self.calls = 0
        self.shared = 0
        self.reused = 0

    async def authenticate(self, headers: dict[str, str]) -> Principal:
        """The session's principal; TokenError (401) or VerificationUnavailableError (503)."""
        body = msgspec.json.encode({"headers": headers})
        digest = hashlib.sha256(body).digest()
        answer = self._answers.get(digest)
        if answer is not None:
            principal, until = answer
            if until > self._clock():
                self.reused += 1
                return principal
            del self._answers[digest]
        call = self._in_flight.get(digest)
        if call is None:
            call = asyncio.get_running_loop().create_task(self._call(body))
            self._in_flight[digest] = call
            call.add_done_callback(lambda done: self._settle(digest, done))
        else:
            self.shared += 1
        # Shielded: a client that hangs up does not cancel the call others wait for.
        return await asyncio.shield(call)

    def _settle(self, digest: bytes, call: asyncio.Task[Principal]) -> None:
        del self._in_flight[digest]
        if call.cancelled() or call.exception() is not None or self._cache_ttl <= 0:
            return
        principal = call.result()
        until = min(self._clock() + self._cache_ttl, principal.expires_at)
        if len(self._answers) >= MAX_CACHED:
            del self._answers[next(iter(self._answers))]
        self._answers[digest] = (principal, until)

    async def _call(self, body: bytes) -> Principal:
        try:
            async with asyncio.timeout(self._timeout), self._slots:
                self.calls += 1
                try:
                    status, content = await self._post(body)
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                    # A kept-alive connection the application closed as we reused it (its idle timeout, or it
                    # closes after an answer it could not finish): asking again, on a new connection, is safe —
                    # the hook only reads the session. Once: a server that is down fails again at once.
                    status, content = await self._post(body)
        except TimeoutError:
            raise VerificationUnavailableError(f"the session hook did not answer within {self._timeout} s") from None
        except aiohttp.ClientError as error:
            raise VerificationUnavailableError(f"the session hook cannot be reached ({type(error).__name__})") from None
        return self._read(status, content)

    async def _post(self, body: bytes) -> tuple[int, bytes | None]:
        """The status and the answer's bytes (None: longer than MAX_ANSWER_BYTES, left unread)."""
        async with self._session.post(self.url, data=body, headers=_REQUEST_HEADERS, allow_redirects=False) as response:
            content = bytearray()
            async for chunk in response.content.iter_any():
                content += chunk
                if len(content) > MAX_ANSWER_BYTES:
                    # The rest is not read: the connection cannot be reused, so it is closed, not pooled.
                    response.close()
                    return response.status, None
            return response.status, bytes(content)

    def _read(self, status: int, content: bytes | None) -> Principal:
        if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            raise TokenError("the application did not accept the session")
        if status != HTTPStatus.OK:
            raise VerificationUnavailableError(f"the session hook answered {status}")
        if content is None:
            raise VerificationUnavailableError(f"the session hook's answer is over {MAX_ANSWER_BYTES} bytes")
        try:
            answer = _decode_answer(content)
        except msgspec.DecodeError:
            raise VerificationUnavailableError(
                'the session hook\'s answer is not {"user_id": ..., "expires_at": ...}'
            ) from None
        if not is_valid_id(answer.user_id):
            raise VerificationUnavailableError("the session hook's user_id is not a valid user id")
        expires_at = math.inf if answer.expires_at is None else answer.expires_at
        if math.isnan(expires_at) or expires_at == -math.inf:
            raise VerificationUnavailableError("the session hook's expires_at is not a time")
        if expires_at <= self._clock():
            raise TokenError("the session has expired")
        return Principal(user_id=answer.user_id, expires_at=expires_at)
