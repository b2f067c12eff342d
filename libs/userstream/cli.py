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
    "dev": ("userstream.dev.cli", "run everything on this machine, with demo data and traffic"),
    "token": ("userstream.dev.token_command", "print a signed stream token for a user"),
    "tail": ("userstream.client.cli", "print a user's stream in the terminal"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="userstream", description="One realtime stream per user, on NATS JetStream.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subcommands.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args._module.run(args)
    except (SettingsError, PolicyError) as error:
        # A configuration mistake: one line naming the variable or file, no traceback.
        parser.exit(2, f"userstream {args.command}: error: {error}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
