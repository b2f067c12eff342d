"""The Python client of userstream: a user's stream as an async iterator, and a local cache it keeps current.

from userstream.client import Change, LocalCache, UserStream

cache = LocalCache()
async with UserStream("http://127.0.0.1:8000", token, refresh_token=new_token, cache=cache) as stream:
    async for event in stream:
        ...
"""

from userstream.client.backoff import ReconnectPolicy
from userstream.client.cache import Entity, LocalCache
from userstream.client.errors import AuthenticationError, StreamError
from userstream.client.events import Change, Closed, MustRefetch, Offset, StreamEvent, Tx
from userstream.client.stream import State, UserStream

__all__ = [
    "AuthenticationError",
    "Change",
    "Closed",
    "Entity",
    "LocalCache",
    "MustRefetch",
    "Offset",
    "ReconnectPolicy",
    "State",
    "StreamError",
    "StreamEvent",
    "Tx",
    "UserStream",
]
