"""What every command shares: the database option, opening the App for reading or writing,
job ids by prefix, input from files, errors as one line, and the ``aetheris`` group itself."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import importlib
import json
import logging
import os
import pwd
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from aetheris.app import App
from aetheris.cli import config as project_config
from aetheris.errors import AetherisError, ConfigurationError, JobNotFound
from aetheris.store import default_url, safe_url
from aetheris.store.port import Store
from aetheris.store.sqlite import sqlite_path

T = TypeVar("T")

EXIT_CODES = """Exit codes: 0 done; 1 an error, a failed job, a broken chain, a diverged replay or
runs that differ (diff); 2 bad usage; 3 the job is parked and needs someone (start --wait)."""
MEMORY_REFUSED = (
    "memory:// lives inside one process and is gone when it exits: the aetheris command cannot "
    "use it; use sqlite:///file.db or postgresql://…"
)


def run(
    coro: Coroutine[Any, Any, T], database: str | None = None, *, server: str | None = None
) -> T:
    """Run a coroutine, turning Aetheris errors into a one-line message (naming the database
    or the server in use) and exit code 1."""
    try:
        return asyncio.run(coro)
    except AetherisError as exc:
        shown = server or (safe_url(database) if database else None)
        kind = "server" if server else "database"
        where = f" ({kind} {shown})" if shown and shown not in str(exc) else ""
        raise click.ClickException(f"{exc}{where}") from None


def who() -> str:
    """Who runs the command, for ``--by``: $USER, $LOGNAME, the login name, else "operator"."""
    for name in (os.environ.get("USER"), os.environ.get("LOGNAME")):
        if name:
            return name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "operator"


def load_app(spec: str) -> App:
    """Import ``MODULE:ATTRIBUTE`` (the working directory is importable) and return the App."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"expected MODULE:APP, got {spec!r}", param_hint="--app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="--app"
        ) from None
    if not hasattr(module, attr):
        raise click.BadParameter(
            f"module {module_name!r} has no attribute {attr!r}", param_hint="--app"
        )
    app = getattr(module, attr)
    if not isinstance(app, App):
        raise click.BadParameter(
            f"{spec!r} is a {type(app).__name__}, not an aetheris.App", param_hint="--app"
        )
    _add_mcp_servers(app)
    return app


def _add_mcp_servers(app: App) -> None:
    """The MCP servers of the folder's ``aetheris.toml`` join the App's own."""
    ctx = click.get_current_context(silent=True)
    settings = ctx.find_root().meta.get(project_config.FILENAME) if ctx else None
    if settings is None or not settings.mcp_servers:
        return
    try:
        from aetheris.integrations.mcp import mcp_host
    except ImportError as exc:
        raise click.ClickException(
            f"aetheris.toml declares MCP servers; install the mcp extra "
            f"(pip install 'aetheris[mcp]'): {exc}"
        ) from None
    try:
        mcp_host(app).configure(settings.mcp_servers)
    except ConfigurationError as exc:
        raise click.ClickException(f"{settings.path}: {exc}") from None


def read_text(value: str, what: str) -> str:
    """A value as given, or ``@path`` (the file's text), or ``-`` (standard input)."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text("utf-8")
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {value[1:]!r}: {exc.strerror}", param_hint=what
            ) from None
    return value


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(read_text(text, what))
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})", param_hint=what) from None


def parse_since(text: str) -> float:
    """``30m``, ``2h``, ``7d`` (ago) or an ISO-8601 time, as Unix seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    if text[:-1].replace(".", "", 1).isdigit() and text[-1:] in units:
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration (30m, 2h, 7d) nor an ISO time", param_hint="--since"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Output JSON.")(fn)


class Env:
    """Where the commands look: a database (``database_url``), or a server (``server_url``
    with ``api_key``). A server set by flag or environment wins over a database set by the
    environment; ``--database-url`` on the command line wins over ``AETHERIS_URL``."""

    def __init__(self, database_url: str | None = None) -> None:
        self.database_url = database_url
        self.database_given = False  # on the command line
        self.server_url: str | None = None
        self.server_given = False
        self.api_key: str | None = None

    @property
    def url(self) -> str:
        self.need_database()
        return self.database_url or default_url()

    @property
    def remote(self) -> bool:
        if self.server_given and self.database_given:
            raise click.UsageError("give --url (a server) or --database-url, not both")
        return bool(self.server_url) and not self.database_given

    def need_database(self) -> None:
        """Refuse, clearly, a command that works on the database when a server is set."""
        if not self.remote:
            return
        ctx = click.get_current_context(silent=True)
        name = f"`{ctx.command_path}`" if ctx else "this command"
        raise click.UsageError(
            f"{name} works on the database itself and cannot go through a server, but a "
            f"server is set ({self.server_url}, by --url or AETHERIS_URL): unset it, or pass "
            "--database-url"
        )

    def app(self, spec: str | None = None) -> App:
        self.need_database()
        app = load_app(spec) if spec else App(self.url)
        if self.database_url:
            app.database_url = self.database_url
        if app.database_url.split(":", 1)[0].lower() == "memory":
            raise click.ClickException(MEMORY_REFUSED)
        return app


pass_env = click.make_pass_decorator(Env)


def _take_database_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        env = ctx.ensure_object(Env)
        env.database_url, env.database_given = value, True


def _take_server_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        env = ctx.ensure_object(Env)
        env.server_url, env.server_given = value, True


def _take_api_key(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(Env).api_key = value


DATABASE_HELP = (
    "sqlite:///file.db or postgresql://… (also after the command; env AETHERIS_DATABASE_URL) "
    "[default: sqlite:///.aetheris/aetheris.db]"
)


def database_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--database-url`` (and ``--url``, ``--api-key``) also after the subcommand's name,
    where users type them."""
    for name, take, what in (
        ("--api-key", _take_api_key, "The server's API key (as before the command)."),
        ("--url", _take_server_url, "The server (as before the command)."),
        ("--database-url", _take_database_url, "The database (as before the command)."),
    ):
        fn = click.option(name, expose_value=False, callback=take, help=what)(fn)
    return fn


async def open_for_reading(app: App) -> Store:
    """The app's store, opened without creating or migrating anything: a read command on a
    database that does not exist (or is not an Aetheris database) says so."""
    url = app.database_url
    if url.split(":", 1)[0].lower() == "sqlite":
        path = sqlite_path(url)[0]
        if not path.exists():
            raise click.ClickException(
                f"no Aetheris database at {path.resolve()} ({url}): nothing has run with it "
                "yet. Pass --database-url (or set AETHERIS_DATABASE_URL) to the database in "
                "use; starting a job or a worker creates this one"
            )
    store = await app.open_store(migrate=False)
    state = await store.schema()
    if state.current == 0:
        raise click.ClickException(
            f"{safe_url(url)} has no Aetheris tables: is it the database in use? "
            "`aetheris db migrate` creates them"
        )
    if state.current < state.latest:
        raise click.ClickException(
            f"{safe_url(url)} is at schema version {state.current}, this aetheris needs "
            f"{state.latest}: run `aetheris db migrate`"
        )
    return store


class FindsJobs(Protocol):
    async def find_jobs(self, prefix: str, *, limit: int = 10) -> list[str]: ...


async def resolve_job_id(store: FindsJobs, given: str) -> str:
    """A job id, or the unique start of one (as git takes a commit's), in one read."""
    found = await store.find_jobs(given, limit=11)
    if given in found or len(found) == 1:
        return given if given in found else found[0]
    if not found:
        raise JobNotFound(given)
    shown = ", ".join(found[:10]) + (", …" if len(found) > 10 else "")
    raise click.BadParameter(
        f"{given!r} is the start of {'more than 10' if len(found) > 10 else len(found)} job "
        f"ids ({shown}): give more of it",
        param_hint="JOB_ID",
    )


def with_app(*, writes: bool = False) -> Callable[..., Callable[..., None]]:
    """Give a command an opened App and close it afterwards. A command that only reads opens
    the database without creating or migrating anything."""

    def decorate(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
        @database_option
        @pass_env
        @functools.wraps(fn)
        def command(env: Env, *args: Any, **kwargs: Any) -> None:
            app = env.app(kwargs.pop("app_spec", None))

            async def main() -> None:
                try:
                    store = await (app.open_store() if writes else open_for_reading(app))
                    if kwargs.get("job_id"):
                        kwargs["job_id"] = await resolve_job_id(store, kwargs["job_id"])
                    await fn(app, *args, **kwargs)
                finally:
                    await app.close()

            run(main(), app.database_url)

        return command

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.option(
    "--database-url",
    envvar="AETHERIS_DATABASE_URL",
    show_envvar=True,
    help=DATABASE_HELP,
)
@click.option(
    "--url",
    "server_url",
    envvar="AETHERIS_URL",
    show_envvar=True,
    help="An Aetheris server (http://host:port) to go through instead of the database.",
)
@click.option(
    "--api-key",
    envvar="AETHERIS_API_KEY",
    show_envvar=True,
    help="The API key for --url (`aetheris keys create`).",
)
@click.version_option(package_name="aetheris")
@click.pass_context
def main(
    ctx: click.Context, database_url: str | None, server_url: str | None, api_key: str | None
) -> None:
    """Aetheris: durable execution for AI agents.

    Commands work on the database, or through a server when --url (AETHERIS_URL) is set. In a
    folder with an aetheris.toml (`aetheris init`), its settings are the defaults."""
    settings = project_config.load()  # options and AETHERIS_* variables win over the file
    ctx.default_map, ctx.meta[project_config.FILENAME] = settings.default_map(), settings
    settings.apply_model_env()
    env = ctx.ensure_object(Env)
    env.database_url = database_url or settings.database_url
    env.server_url, env.api_key = server_url, api_key
    source = click.core.ParameterSource.COMMANDLINE
    env.database_given = ctx.get_parameter_source("database_url") is source
    env.server_given = ctx.get_parameter_source("server_url") is source
    if not logging.getLogger().handlers:  # warnings (a database being waited for) on stderr
        logging.basicConfig(level=logging.WARNING, format="aetheris: %(message)s")
