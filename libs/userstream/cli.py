"""The ``userstream`` command: one subcommand per service, plus the developer tools.

Each subcommand lives beside what it runs (``userstream.<part>.cli``) and is
imported only when chosen, so ``userstream token`` does not load the web stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from userstream.policy import PolicyError
from userstream.settings import SettingsError

# subcommand → (module with `add_arguments(parser)` and `run(args) -> int`, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "activity": ("userstream.activity.cli", "run the activity service (gRPC, the write path)"),
    "edge": ("userstream.edge.cli", "run the edge (HTTP, the streams users connect to)"),
    "acl": ("userstream.acl.cli", "run the acl service (gRPC, memberships and permissions)"),
    "relay": ("userstream.relay.cli", "run the outbox relay (committed PostgreSQL rows into the log)"),
    "outbox": ("userstream.outbox.cli", "print or install the PostgreSQL outbox's SQL"),
    "dev": ("userstream.dev.cli", "run everything on this machine, with demo data and traffic"),
    "token": ("userstream.dev.token_command", "print a signed stream token for a user"),
    "tail": ("userstream.client.cli", "print a user's stream in the terminal"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``chosen`` subcommand's module is imported (for its arguments)."""
    parser = argparse.ArgumentParser(prog="userstream", description="One realtime stream per user, on NATS JetStream.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subcommands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # The top-level parser has no options but --help, so the first word is the subcommand.
    chosen = next((word for word in arguments if not word.startswith("-")), None)
    parser = build_parser(chosen)
    args = parser.parse_args(arguments)
    try:
        status: int = args._module.run(args)
    except (SettingsError, PolicyError) as error:
        # A configuration mistake: one line naming the variable or file, no traceback.
        parser.exit(2, f"userstream {args.command}: error: {error}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
