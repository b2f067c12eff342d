"""The HS256 secret of the dev stack: ``USERSTREAM_JWT_SECRET`` if set, else one generated per data dir.

The generated secret is kept in ``<data dir>/jwt-secret`` (mode 0600), so tokens
printed by one ``userstream dev`` run stay valid across restarts, and
``userstream token --data-dir DIR`` signs with the same secret.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from userstream.settings import Env, SettingsError

SECRET_FILE = "jwt-secret"  # noqa: S105  # a file name, not a secret
_SECRET_BYTES = 32


def secret_path(data_dir: Path) -> Path:
    return data_dir / SECRET_FILE


def dev_secret(data_dir: Path, env: Env | None = None) -> str:
    """The secret the dev stack signs with, creating the data dir's secret on first use."""
    configured = (env or Env()).optional_text("JWT_SECRET")
    if configured:
        return configured
    path = secret_path(data_dir)
    existing = _read(path)
    if existing:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    generated = secrets.token_urlsafe(_SECRET_BYTES)
    try:
        # O_EXCL: two dev stacks starting on one data dir at once agree on the first secret written.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path) or generated
    with os.fdopen(descriptor, "w") as target:
        target.write(generated + "\n")
    return generated


def find_secret(data_dir: Path, env: Env | None = None) -> str:
    """The secret to sign tokens with: ``USERSTREAM_JWT_SECRET``, else the data dir's dev secret."""
    configured = (env or Env()).optional_text("JWT_SECRET")
    if configured:
        return configured
    existing = _read(secret_path(data_dir))
    if existing:
        return existing
    raise SettingsError(
        f"USERSTREAM_JWT_SECRET is not set and {secret_path(data_dir)} does not exist: "
        "set the variable, or point --data-dir at the directory of a `userstream dev` run"
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
