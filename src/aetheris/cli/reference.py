"""The CLI reference, made from the commands' own help: ``python -m aetheris.cli.reference``.

``docs/cli.md`` is its output; a test regenerates it and fails when the file differs, so the
reference cannot drift from the commands.
"""

from __future__ import annotations

import click

from aetheris.cli import main

WIDTH = 100


def _sections(command: click.Command, name: str, parent: click.Context | None = None) -> list[str]:
    ctx = click.Context(
        command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH
    )
    sections = [f"## `{ctx.command_path}`\n\n```\n{command.get_help(ctx)}\n```\n"]
    if isinstance(command, click.Group):
        for sub in sorted(command.list_commands(ctx)):
            child = command.get_command(ctx, sub)
            if child is not None and not child.hidden:
                sections += _sections(child, sub, ctx)
    return sections


def reference() -> str:
    head = (
        "# The `aetheris` command\n\n"
        "Generated from the commands' own `--help` by `python -m aetheris.cli.reference`;"
        " do not edit by hand.\n\n"
    )
    return head + "\n".join(_sections(main, "aetheris"))


if __name__ == "__main__":
    print(reference(), end="")
