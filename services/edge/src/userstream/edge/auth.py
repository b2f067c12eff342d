"""Who is asking: the stream token from the header, the cookie or the query string."""

from __future__ import annotations

from userstream.edge.errors import UnauthorizedError
from userstream.tokens import Principal, TokenError, TokenExpiredError, TokenVerifier

COOKIE_NAME = "userstream_token"
QUERY_PARAMETER = "access_token"


def authenticate(
    authorization: str | None, cookie: str | None, query: str | None, verifier: TokenVerifier
) -> Principal:
    """The verified principal, taking the token by precedence: header, then cookie, then query."""
    try:
        return verifier.verify(_find_token(authorization, cookie, query))
    except TokenError as error:
        raise UnauthorizedError(
            str(error), reason="expired" if isinstance(error, TokenExpiredError) else "invalid"
        ) from None


def _find_token(authorization: str | None, cookie: str | None, query: str | None) -> str:
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise UnauthorizedError("the Authorization header must be `Bearer <token>`", reason="malformed")
        return credentials.strip()
    token = cookie or query
    if not token:
        raise UnauthorizedError(
            "a stream token is required (Authorization header, userstream_token cookie or access_token)",
            reason="missing",
        )
    return token
