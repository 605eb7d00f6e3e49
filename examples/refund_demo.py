"""Watch a refund agent survive `kill -9`: the refund is paid once, the run resumes.

    python examples/refund_demo.py

1. starts a real worker process and a refund job on the embedded SQLite database;
2. prints each journal event as it is committed;
3. SIGKILLs the worker while the confirmation email is being sent (after the refund was paid);
4. starts a fresh worker, which sees the dead worker's lock released, takes the job over and
   resumes after the last completed step: the refund is not paid again;
5. prints the trace and counts the payments in the "world" (a plain file).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# One database and one "world" for this process and its workers, wherever it is run from.
os.environ.setdefault("AETHERIS_DATABASE_URL", f"sqlite:///{ROOT}/.aetheris/aetheris.db")
os.environ.setdefault("DEMO_WORLD", str(ROOT / ".aetheris" / "demo-world"))

from aetheris.cli import render, trace_view
from aetheris.journal import EventType
from examples.refund.app import WORLD, app


def start_worker(label: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aetheris",
            "worker",
            "--app",
            "examples.refund.app:app",
            "--concurrency",
            "4",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"\n▶ {label}: worker process pid {proc.pid}")
    return proc


def show(event: object) -> None:
    kind, name, outcome, duration, detail = trace_view.describe(event)  # type: ignore[arg-type]
    what = f"{kind} {name}".strip() or event.type.value  # type: ignore[attr-defined]
    label = outcome or event.type.value  # type: ignore[attr-defined]
    print(f"  [{event.seq:>2}] {what:<22} {label:<22} {duration:>9}  {detail[:60]}")  # type: ignore[attr-defined]


async def main() -> None:
    store = await app.open_store()
    job_id = (
        await app.start(
            "refund_order", {"order_id": f"ord-{int(time.time())}", "reason": "damaged in transit"}
        )
    ).job_id
    payments = WORLD / "payments.log"
    paid_before = len(payments.read_text().splitlines()) if payments.exists() else 0
    print(f"started job {job_id} on {app.database_url}")
    worker = start_worker("first worker")
    seen, killed, second = 0, False, None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = await store.events(job_id)
        for event in events[seen:]:
            show(event)
        seen = len(events)
        emailing = any(
            e.type is EventType.INTENT and e.data["name"] == "send_email" for e in events
        )
        if emailing and not killed:
            await asyncio.sleep(0.5)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
            killed = True
            print(f"\n💥 kill -9 {worker.pid} while the email is being sent")
            second = start_worker("fresh worker")
        job = await store.get_job(job_id)
        if job is not None and job.status.terminal:
            break
        await asyncio.sleep(0.05)
    job = await app.get_job(job_id)
    render.console().print(trace_view.trace_table(job, await store.events(job_id)))
    paid = len(payments.read_text().splitlines()) - paid_before
    print(f"\njob {job.status}: {job.result}")
    print(f"refunds paid for this job: {paid} (see {payments})")
    where = "" if Path.cwd() == ROOT else f"--database-url {app.database_url} "
    print(f"try: aetheris {where}trace {job_id}")
    print(f"     aetheris {where}jobs list   |   aetheris {where}verify {job_id}")
    for proc in (worker, second):
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
    await app.close()
    if job.status.value != "succeeded" or paid != 1:
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
