"""The app factory uvicorn workers call: settings from the environment, logging, the app."""

from __future__ import annotations

from litestar.types import ASGIApp
from userstream.edge.app import create_app
from userstream.edge.settings import EdgeSettings
from userstream.logging import configure_logging


def app_from_environment() -> ASGIApp:
    """Each worker process builds its own app (and its own NATS connection and channels)."""
    settings = EdgeSettings.load()
    configure_logging(settings.logging, "edge")
    return create_app(settings)
