"""The ``userstream`` command line: subcommands are imported only when chosen."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from userstream.cli import COMMANDS, build_parser


def test_every_subcommand_is_listed_without_importing_it() -> None:
    help_text = build_parser().format_help()
    for name in COMMANDS:
        assert name in help_text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_module_has_its_arguments_and_runner(name: str) -> None:
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(module.add_arguments)
    assert callable(module.run)
    build_parser(name)  # its arguments register without clashing


def test_choosing_the_activity_service_does_not_load_the_web_stack() -> None:
    probe = (
        "import sys\n"
        "from userstream.cli import build_parser\n"
        "build_parser('activity').parse_args(['activity'])\n"
        "print(sorted(m for m in ('litestar', 'uvicorn', 'httpx', 'userstream.edge') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
