"""What webhook tests share: a real HTTP receiver on 127.0.0.1, a port nothing listens on, and
a job that ends (so that the outbox has something to send)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aetheris.journal import EventDraft, EventType
from aetheris.store.port import ClaimFilter, Commit, Head, JobStatus, NewJob, StatusWrite, Store


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and the status it answered."""

    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    status: int


HANG = 0  # in a receiver's script: answer nothing until the receiver stops


class Receiver:
    """An ``http.server`` in a thread: records every POST in :attr:`requests` (an asyncio
    queue of the test's loop, so a test awaits a request instead of sleeping) and answers
    with the next status of its script (200 once the script is used up); :data:`HANG` holds
    the request unanswered (a receiver that hangs)."""

    def __init__(self, statuses: Sequence[int] = ()):
        self.script = list(statuses)
        self.release = threading.Event()
        self.requests: asyncio.Queue[Received] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.script.pop(0) if receiver.script else 200
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Received(self.path, headers, body, status)
                receiver._loop.call_soon_threadsafe(receiver.requests.put_nowait, seen)
                if status == HANG:
                    receiver.release.wait(30)
                    return
                with contextlib.suppress(OSError):  # the sender may have given up
                    self.send_response(status)
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"not today" if status >= 300 else b"thank you")

            def log_message(self, *args: object) -> None:
                return None

        return Handler

    async def next(self, timeout: float = 10.0) -> Received:
        return await asyncio.wait_for(self.requests.get(), timeout)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


@contextlib.asynccontextmanager
async def receiver(statuses: Sequence[int] = ()) -> AsyncIterator[Receiver]:
    running = Receiver(statuses)
    running.start()
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop)


def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 that nothing listens on (a receiver that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


async def end_job(store: Store, job_id: str, tenant: str = "acme", agent: str = "a") -> int:
    """Create a job of ``tenant``, claim it and end it as succeeded; its last event's seq."""
    await store.create_job(NewJob(id=job_id, agent=agent, input={}, tenant=tenant))
    claim = await store.claim("w1", 30.0, ClaimFilter([agent]))
    assert claim is not None and claim.job.id == job_id
    job = claim.job
    done = StatusWrite(JobStatus.SUCCEEDED, result={"ok": True})
    end = EventDraft(EventType.JOB_SUCCEEDED, {"result": {"ok": True}})
    head = Head(job.event_count, job.head_hash)
    sealed = await store.commit(claim.lease, Commit(events=[end], status=done, head=head))
    return sealed[-1].seq
