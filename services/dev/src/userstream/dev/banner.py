"""What ``userstream dev`` prints once the stack is up: where everything is and how to try it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

READY_LINE = "userstream ready"


@dataclass(frozen=True)
class Addresses:
    edge_url: str
    activity_addr: str
    acl_addr: str
    nats_url: str
    data_dir: Path
    relay_url: str | None = None  # the outbox relay's probes, when the stack runs one


def banner(addresses: Addresses, tokens: dict[str, str], token_hours: float, *, traffic: bool) -> str:
    edge = addresses.edge_url
    logs = addresses.data_dir / "logs"
    lines = [
        "userstream dev: NATS, activity, acl and edge are running on this machine",
        "",
        f"  demo page       {edge}/",
        f"  user stream     {edge}/me/stream   (with a token: see below)",
        f"  public stream   {edge}/public/stream",
        f"  browser client  {edge}/client.js",
        f"  health          {edge}/readyz   metrics {edge}/metrics",
        f"  activity gRPC   {addresses.activity_addr}",
        f"  acl gRPC        {addresses.acl_addr}",
        f"  NATS            {addresses.nats_url}",
        *(
            [f"  outbox relay    {addresses.relay_url}/readyz   (rows of userstream.outbox)"]
            if addresses.relay_url
            else []
        ),
        f"  data            {addresses.data_dir}   logs {logs}/",
        "",
        f"demo tokens (valid {token_hours:g} h; more with `userstream token USER_ID --data-dir {addresses.data_dir}`):",
    ]
    width = max(len(user) for user in tokens)
    lines += [f"  {user.ljust(width)}  {token}" for user, token in tokens.items()]
    first_user, first_token = next(iter(tokens.items()))
    tail = ["userstream", "tail", "--user", first_user, "--url", edge, "--data-dir", str(addresses.data_dir)]
    lines += [
        "",
        f"watch {first_user}'s stream{' (demo traffic: a change every few seconds)' if traffic else ''}:",
        f"  {curl_line(edge, first_token)}",
        f"  {shlex.join(tail)}",
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def curl_line(edge_url: str, token: str) -> str:
    """A ready-to-paste command that prints a user's stream as it arrives."""
    return f"curl -N -H {shlex.quote('Authorization: Bearer ' + token)} {shlex.quote(edge_url + '/me/stream')}"
