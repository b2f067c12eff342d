"""Authentication parts for tests: key pairs, forged tokens, and real HTTP servers for a JWKS and a session hook.

The servers are uvicorn serving a small ASGI app on a free port in the test's
process, like the edge itself; ``stop()`` makes the URL unreachable and
``start()`` brings it back on the same port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.support.cluster import free_port

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class KeyPair:
    private: Any
    algorithm: str

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def write_public(self, path: Path) -> Path:
        path.write_bytes(self.public_pem())
        return path

    def jwk(self, kid: str | None = None, **members: Any) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            document = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            document = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            document = OKPAlgorithm.to_jwk(public, as_dict=True)
        if kid is not None:
            document["kid"] = kid
        document.update(members)
        return document

    def token(self, user_id: str = "alice", ttl: float = 600, *, kid: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        headers: dict[str, Any] = {"kid": kid} if kid else {}
        payload = {"sub": user_id, "iat": now, "exp": now + int(ttl), **claims}
        return jwt.encode(payload, self.private, algorithm=self.algorithm, headers=headers)


def rsa_pair(bits: int = 2048) -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=bits), "RS256")


def ec_pair(curve: ec.EllipticCurve | None = None) -> KeyPair:
    return KeyPair(ec.generate_private_key(curve or ec.SECP256R1()), "ES256")


def ed25519_pair() -> KeyPair:
    return KeyPair(ed25519.Ed25519PrivateKey.generate(), "EdDSA")


def ed448_pair() -> KeyPair:
    return KeyPair(ed448.Ed448PrivateKey.generate(), "EdDSA")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWT assembled by hand, so its header can claim anything its signature does not match."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def hmac_with(key: bytes, digest: Any = hashlib.sha256) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(key, data, digest).digest()


def claims(user_id: str = "alice", ttl: int = 600) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user_id, "iat": now, "exp": now + ttl}


# -- HTTP servers ---------------------------------------------------------------------------------------------


Handler = Callable[[dict[str, Any], bytes], Any]


@dataclass
class FixtureServer:
    """uvicorn serving ``handler(scope, body) -> (status, body bytes)`` (a coroutine or not) on a fixed port."""

    handler: Handler
    port: int = field(default_factory=free_port)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> FixtureServer:
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            loop="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
            self._server = self._task = None

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        self.requests.append((scope["method"], headers, body))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answer = self.handler(scope, body)
            if asyncio.iscoroutine(answer):
                answer = await answer
        finally:
            self.in_flight -= 1
        status, payload = answer
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": payload})


class JwksDocument:
    """What the JWKS server answers: a status and a document, both changeable while it runs."""

    def __init__(self, *jwks: dict[str, Any]) -> None:
        self.status = 200
        self.body: bytes = b""
        self.publish(*jwks)

    def publish(self, *jwks: dict[str, Any]) -> None:
        self.body = json.dumps({"keys": list(jwks)}).encode()

    def __call__(self, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
        return self.status, self.body


class HookAnswers:
    """The session hook: ``answer(headers) -> (status, body)``, after ``delay`` seconds."""

    def __init__(self, answer: Callable[[dict[str, str]], tuple[int, Any]], delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay

    async def __call__(self, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
        if self.delay:
            await asyncio.sleep(self.delay)  # the application's own latency, not a synchronisation
        headers = json.loads(body)["headers"]
        status, payload = self.answer(headers)
        return status, payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def session_of(cookie_to_user: dict[str, str], ttl: float | None = 600) -> Callable[[dict[str, str]], tuple[int, Any]]:
    """A hook answering 200 for the cookie ``session=<name>`` of a known user, 401 otherwise."""

    def answer(headers: dict[str, str]) -> tuple[int, Any]:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "session" and value in cookie_to_user:
                expires = None if ttl is None else time.time() + ttl
                return 200, {"user_id": cookie_to_user[value], "expires_at": expires}
        return 401, {"error": "no session"}

    return answer
