"""Serve the HTTP API with uvicorn: what ``aetheris server`` runs."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from aetheris.api import create_api
from aetheris.app import App
from aetheris.errors import ConfigurationError


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (``localhost``, 127.x, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(a[4][0]).is_loopback for a in found)


def check_binding(host: str, auth: bool) -> None:
    """Refuse to serve without auth anywhere but on loopback."""
    if not auth and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to listen on {host} with auth disabled: --no-auth is for local "
            "development on a loopback address (127.0.0.1, ::1, localhost) only"
        )


def serve(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    auth: bool = True,
    metrics_token: str | None = None,
    log_format: str = "text",
    extend: Callable[[FastAPI], None] | None = None,
) -> None:
    """Run the API of ``app`` on ``host:port`` until interrupted (SIGINT or SIGTERM).

    ``log_format="json"``: uvicorn's lines too go through the root logger (configured by
    :func:`aetheris.logs.configure`), one JSON object each; ``text`` keeps uvicorn's own.
    ``extend``: called with the API before it is served (``aetheris server --mcp`` mounts
    the MCP endpoint with it)."""
    check_binding(host, auth)
    logging: dict[str, Any] = {} if log_format == "text" else {"log_config": None}
    api = create_api(app, auth=auth, metrics_token=metrics_token)
    if extend is not None:
        extend(api)
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        log_level="info",
        server_header=False,
        proxy_headers=False,
        **logging,
    )
    uvicorn.Server(config).run()
