"""``aetheris init DIR``: a new project, ready for ``aetheris run``, ``aetheris chat`` and
``python -m pytest``. The files are templates in :mod:`aetheris.cli.template` (``*.tmpl``,
where ``__project__`` is the folder's name)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from aetheris.cli.base import main

# What init writes, and from which template.
FILES = {
    "app.py": "app.py.tmpl",
    "test_app.py": "test_app.py.tmpl",
    "aetheris.toml": "aetheris.toml.tmpl",
    "model_script.json": "model_script.json.tmpl",
    "README.md": "README.md.tmpl",
    ".gitignore": "gitignore.tmpl",
}
WHAT = {
    "app.py": "the App: tools pure, idempotent and at_most_once (with approval); agents "
    "support and chat",
    "test_app.py": "its tests, with aetheris.testing (python -m pytest)",
    "aetheris.toml": "settings: the App, the database, the server, the model",
    "model_script.json": "what the scripted model answers until a real one is set",
    "README.md": "the commands to try",
    ".gitignore": "leaves out .aetheris/ (the database)",
}


def render(project: str) -> dict[str, str]:
    """The files of a new project named ``project``: name → text."""
    folder = resources.files("aetheris.cli") / "template"
    return {
        name: (folder / template).read_text("utf-8").replace("__project__", project)
        for name, template in FILES.items()
    }


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
def init(directory: Path, force: bool) -> None:
    """Make a new project in DIRECTORY: agents on a model, tools, tests, settings.

    A folder that exists and is not empty is refused unless --force (then the project's
    files are overwritten; others are left alone)."""
    if directory.exists() and any(directory.iterdir()) and not force:
        raise click.UsageError(
            f"{directory} is not empty: choose a new folder, or pass --force to write the "
            f"project's files into it ({', '.join(FILES)})"
        )
    directory.mkdir(parents=True, exist_ok=True)
    files = render(directory.resolve().name)
    for name, text in files.items():
        (directory / name).write_text(text, "utf-8")
    click.echo(f"made {directory}/:")
    for name in FILES:
        click.echo(f"  {name:<18} {WHAT[name]}")
    click.echo("\nnext:")
    click.echo(f"  cd {directory} && aetheris run      # server, worker and a scripted model")
    click.echo("  aetheris chat chat                 # in another terminal: talk to an agent")


__all__ = ["init", "render"]
