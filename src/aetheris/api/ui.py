"""The web UI at ``/ui/``: static files (one HTML page, ES modules, a style sheet) shipped in the
package (``aetheris/ui``), served as they are. No build step and nothing from another origin:
the page works offline and talks to this server's ``/v1`` API with the caller's own key, as
any client does, so it can do nothing that key cannot.

The files hold no data, so they are served without a key; a strict Content-Security-Policy
allows this origin's scripts only (no inline script, no ``eval``), which keeps text from a
journal, however it is written, from running as code.
"""

from __future__ import annotations

import re
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from aetheris.api.errors import ApiError

router = APIRouter(include_in_schema=False)
ASSETS = resources.files("aetheris") / "ui"
_NAME = re.compile(r"^[a-z0-9_-]+(?:/[a-z0-9_-]+)*\.(html|js|css|svg)$")
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a new version of the package shows at once
}


@router.get("/")
def root() -> RedirectResponse:
    """The server's root leads to the UI."""
    return RedirectResponse("ui/", status_code=307)


@router.get("/ui")
def ui_root() -> RedirectResponse:
    return RedirectResponse("ui/", status_code=308)


@router.get("/ui/{name:path}")
def asset(name: str) -> Response:
    """A file of the UI (``/ui/``: its page). Names are plain paths: no ``..``, no dot files."""
    name = name or "index.html"
    found = _NAME.match(name)
    target = ASSETS.joinpath(*name.split("/")) if found else None
    if found is None or target is None or not target.is_file():
        raise ApiError(404, "not_found", f"no such file of the web UI: {name[:200]!r}")
    return Response(target.read_bytes(), media_type=_TYPES[found.group(1)], headers=HEADERS)
