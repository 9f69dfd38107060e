"""`reconciler --help` lists every command without importing any of them."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from reconciler.cli.main import COMMANDS, cli, summary


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_help_line_read_from_source_is_clicks_own_short_help(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    assert summary(name, 60) == command.get_short_help_str(limit=60)


def test_help_imports_no_command_module_and_none_of_httpx_or_pydantic() -> None:
    probe = (
        "import sys; from reconciler.cli.main import main\n"
        "try: main(['--help'])\n"
        "except SystemExit: pass\n"
        "loaded = [m for m in sys.modules if m.startswith(('reconciler.cli.commands.', 'httpx', 'pydantic'))]\n"
        "print(','.join(sorted(loaded)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == ""
    assert all(name in done.stdout for name in COMMANDS)
