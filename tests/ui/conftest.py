"""The web UI in a real browser: Debian's Chromium (never a downloaded one) driven by
Playwright, against the API served by uvicorn on a free loopback port, with a worker in the
server's event loop. One browser for the session; a fresh page (and session storage) per test.

Tests skip with the reason when Chromium or Playwright is missing, except under CI=true, where
``.ci/run`` installs Chromium and a skip is a failure. Screenshots go to
``$AETHERIS_TEST_ARTIFACTS/ui`` (default ``test-artifacts/ui`` in the checkout)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import uvicorn

from aetheris import App
from aetheris.api import create_api
from aetheris.keys import create_key
from tests.conftest import IN_CI
from tests.ui.ui_app import Gates, build_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("AETHERIS_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "ui"


def _browser_problem() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install playwright; never `playwright install`)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    problem = _browser_problem()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    request.node.user_properties.append(("ui_screenshots", str(ARTIFACTS)))
    yield opened
    context.close()
    assert not errors, f"the page threw: {errors}"


def shoot(page: Page, name: str) -> Path:
    """Save a screenshot of the whole page as an artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    """An App's API served over a real socket, with workers, in a thread of its own: a worker
    that dies (a simulated crash) is replaced at once, as ``aetheris run`` restarts one."""

    def __init__(self, app: App, gates: Gates, *, auth: bool) -> None:
        self.app, self.gates, self.auth = app, gates, auth
        self.url = f"http://127.0.0.1:{free_port()}"
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))
        self.closing: asyncio.Event | None = None
        self.worker_stop: asyncio.Event | None = None

    async def _main(self) -> None:
        self.closing = asyncio.Event()
        api = create_api(self.app, auth=self.auth, poll_interval=0.05, deliver_webhooks=False)
        port = int(self.url.rsplit(":", 1)[1])
        server = uvicorn.Server(
            uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        workers = asyncio.create_task(self._workers())
        while not server.started:  # uvicorn has no event for this
            if serving.done():
                break
            await asyncio.sleep(0.01)
        self.ready.set()
        await self.closing.wait()
        server.should_exit = True
        await asyncio.gather(serving, workers)
        await self.app.close()

    async def _workers(self) -> None:
        assert self.closing is not None
        while not self.closing.is_set():
            self.worker_stop = asyncio.Event()
            await self.app.worker(poll_interval=0.02).run(self.worker_stop)

    def __enter__(self) -> Served:
        self.thread.start()
        assert self.ready.wait(20), "the server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        def close() -> None:
            assert self.closing is not None
            self.closing.set()
            if self.worker_stop is not None:
                self.worker_stop.set()

        self.loop.call_soon_threadsafe(close)
        self.thread.join(30)
        self.loop.close()

    def call(self, coro: Awaitable[T], timeout: float = 20) -> T:
        """Run ``coro`` in the server's event loop and return its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def start(self, agent: str, data: dict[str, Any] | None = None) -> str:
        return self.call(self.app.start(agent, data or {}, tenant="acme")).job_id

    def open_gate(self, stage: int) -> None:
        self.loop.call_soon_threadsafe(self.gates.open, stage)

    def until(self, check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
        """Wait in the server's loop until ``check()`` holds (state the store has no event for)."""

        async def wait() -> None:
            deadline = self.loop.time() + timeout
            while not await check():
                assert self.loop.time() < deadline, f"timed out waiting for {what}"
                await asyncio.sleep(0.02)

        self.call(wait(), timeout + 5)

    def status_is(self, job_id: str, status: str) -> None:
        async def check() -> bool:
            return (await self.app.get_job(job_id)).status.value == status

        self.until(check, f"job {job_id} to be {status}")

    def key(self, role: str, tenant: str = "acme") -> str:
        async def make() -> str:
            _, token = await create_key(await self.app.open_store(), role, tenant)
            return token

        return self.call(make())


@pytest.fixture
def served() -> Iterator[Served]:
    gates = Gates()
    with Served(build_app(gates), gates, auth=False) as running:
        yield running


@pytest.fixture
def served_with_keys() -> Iterator[Served]:
    gates = Gates()
    with Served(build_app(gates), gates, auth=True) as running:
        yield running
