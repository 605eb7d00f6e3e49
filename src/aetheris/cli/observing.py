"""What ``worker`` and ``server`` share to be observed: the log format, the metrics token, a
worker's metrics endpoint, and tracing from ``AETHERIS_TRACING``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import click

from aetheris import logs
from aetheris.app import App
from aetheris.errors import AetherisError
from aetheris.metrics import Metrics, MetricsServer

log = logging.getLogger("aetheris.worker")


def log_format_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--log-format",
        type=click.Choice(logs.FORMATS),
        default="text",
        show_default=True,
        envvar="AETHERIS_LOG_FORMAT",
        show_envvar=True,
        help="text, or json: one JSON object per line. Lines about a job carry job_id, "
        "position and fencing_token.",
    )(fn)


def metrics_token_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--metrics-token",
        envvar="AETHERIS_METRICS_TOKEN",
        show_envvar=True,
        help="Scrapes of /metrics must send Authorization: Bearer TOKEN.",
    )(fn)


def worker_metrics_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = metrics_token_option(fn)
    fn = click.option(
        "--metrics-host",
        default="127.0.0.1",
        show_default=True,
        help="The address the metrics endpoint listens on.",
    )(fn)
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port, logged). "
        "Default: no metrics.",
    )(fn)


def set_up(log_format: str) -> None:
    """Logging in ``log_format``; tracing if ``AETHERIS_TRACING`` asks for it."""
    logs.configure(log_format)
    if os.environ.get("AETHERIS_TRACING", "").strip():
        try:
            from aetheris import tracing

            if tracing.install_from_env() is not None:
                log.info("tracing on (AETHERIS_TRACING=%s)", os.environ["AETHERIS_TRACING"])
        except AetherisError as exc:
            raise click.ClickException(str(exc)) from None


async def serve_metrics(
    app: App, metrics: Metrics, host: str, port: int, token: str | None
) -> MetricsServer:
    """Start the worker's metrics endpoint (in a thread) and say where it is."""
    import asyncio

    store = await app.open_store()
    try:
        server = MetricsServer(
            metrics, store, asyncio.get_running_loop(), host=host, port=port, token=token
        ).start()
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc}") from None
    log.info("metrics at %s%s", server.url, " (token required)" if token else "")
    if not token and host not in ("127.0.0.1", "::1", "localhost"):
        log.warning(
            "metrics on %s without a token: whoever reaches the port reads them "
            "(tenant names and job counts; never job ids); set --metrics-token",
            host,
        )
    return server
