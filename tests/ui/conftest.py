"""The web UI in a real browser: Debian's Chromium (never a downloaded one) driven by
Playwright, against the API served by uvicorn on a free loopback port, with a worker in the
server's event loop. One browser for the session, in a thread of its own; a fresh page (and
session storage) per test.

Tests skip with the reason when Chromium or Playwright is missing, except under CI=true, where
``.ci/run`` installs Chromium and a skip is a failure. Screenshots go to
``$AETHERIS_TEST_ARTIFACTS/ui`` (default ``test-artifacts/ui`` in the checkout)."""

from __future__ import annotations

import asyncio
import os
import queue
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
    from playwright.sync_api import Page

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


class Browser:
    """Chromium, driven from a thread of its own: Playwright's sync API keeps an event loop
    running in the thread that uses it, and the async tests that share this process need
    their thread free of one. Tests hand it what to do with a fresh page: :meth:`on_page`."""

    def __init__(self) -> None:
        self.work: queue.Queue[tuple[Callable[[Any], Any], Future[Any]] | None] = queue.Queue()
        self.ready: Future[None] = Future()
        self.thread = threading.Thread(target=self._drive, name="chromium", daemon=True)
        self.thread.start()
        self.ready.result(60)

    def _drive(self) -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                self.ready.set_result(None)
                while (item := self.work.get()) is not None:
                    task, done = item
                    try:
                        done.set_result(task(browser))
                    except BaseException as exc:  # the test's own failure: raised in the test
                        done.set_exception(exc)
                browser.close()
        except BaseException as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise

    def on_page(self, test: Callable[[Page], None], timeout: float = 100) -> None:
        """Run ``test`` with a new page (its own storage, 1360×900), then check that the page
        threw nothing."""

        def run(browser: Any) -> None:
            context = browser.new_context(viewport={"width": 1360, "height": 900})
            context.set_default_timeout(10_000)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            try:
                test(page)
            finally:
                context.close()
            assert not errors, f"the page threw: {errors}"

        done: Future[None] = Future()
        self.work.put((run, done))
        done.result(timeout)

    def close(self) -> None:
        self.work.put(None)
        self.thread.join(30)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    problem = _browser_problem()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)
    browser = Browser()
    yield browser
    browser.close()


@pytest.fixture
def ui(chromium: Browser, request: pytest.FixtureRequest) -> Browser:
    request.node.user_properties.append(("ui_screenshots", str(ARTIFACTS)))
    return chromium


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
