"""Regenerate the help blocks of docs/cli.md from the CLI itself, so the page cannot drift.

Each block sits between ``<!-- help: asyncq <command> -->`` and ``<!-- /help -->``.
Run ``python scripts/cli_docs.py`` after changing an option; a test checks the page.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from click.testing import CliRunner

PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
BLOCK = re.compile(r"(<!-- help: asyncq (?P<command>[\w ]+) -->\n)(.*?)(<!-- /help -->)", re.DOTALL)


def help_text(command: str) -> str:
    """What ``asyncq <command> --help`` prints, at a fixed width."""
    from asyncq.cli.main import cli

    result = CliRunner().invoke(
        cli, [*command.split(), "--help"], prog_name="asyncq", terminal_width=100
    )
    if result.exit_code != 0:
        raise SystemExit(f"asyncq {command} --help failed: {result.output}")
    return result.output


def render(page: str) -> str:
    """``page`` with every help block replaced by the current help text."""

    def fill(match: re.Match[str]) -> str:
        text = help_text(match.group("command"))
        return f"{match.group(1)}```text\n{text}```\n{match.group(4)}"

    return BLOCK.sub(fill, page)


def main() -> None:
    current = PAGE.read_text()
    updated = render(current)
    if "--check" in sys.argv[1:]:
        if updated != current:
            raise SystemExit("docs/cli.md is out of date: run python scripts/cli_docs.py")
        return
    PAGE.write_text(updated)


if __name__ == "__main__":
    main()
