"""The database goes away: a private PostgreSQL restarted mid-run, a worker cut off by a
network partition. Only servers and network namespaces these tests create are touched."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aetheris import App, EffectState, JobStatus, ParkReason, StoreUnavailable
from aetheris.journal import EventType, verify_chain

from ..conftest import IN_CI
from .harness import Cluster, pid_of
from .pgcluster import PrivateCluster, available

pytestmark = pytest.mark.chaos


def need(problem: str | None) -> None:
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {problem}")
    pytest.skip(problem)


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    need(available())
    server = PrivateCluster()
    server.init()
    yield server
    server.destroy()


async def statuses(app: App, ids: list[str]) -> dict[str, JobStatus] | None:
    """Every job's status, or None while the database is unreachable."""
    try:
        return {i: (await app.get_job(i)).status for i in ids}
    except StoreUnavailable:
        return None


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Cluster]]:
    """Clusters of worker processes made by a test; all stopped at its end."""
    made: list[Cluster] = []
    yield made
    for cluster in made:
        cluster.stop_all()


async def test_two_postgres_restarts_lose_and_duplicate_nothing(
    private_pg: PrivateCluster, tmp_path: Path, workers: list[Cluster]
) -> None:
    url = private_pg.url()
    jobs = 200
    cluster = Cluster(tmp_path, url, lease_ttl=10.0, pace=0.12)
    workers.append(cluster)
    app = App(url)
    ids = [(await app.start("order", {"n": n})).job_id for n in range(jobs)]
    for _ in range(2):
        cluster.start_worker(concurrency=4)
    restarts = [("fast", 0.5), ("immediate", 1.0)]
    began = time.monotonic()
    done: dict[str, JobStatus] = {}
    while time.monotonic() - began < 120:
        await asyncio.sleep(2.0)
        if restarts:
            mode, down = restarts.pop(0)
            private_pg.restart(mode, down_for=down)
            continue
        found = await statuses(app, ids)
        if found is not None:
            done = found
            if all(s.terminal or s is JobStatus.PARKED for s in done.values()):
                break
    assert not restarts, "the run ended before both restarts"
    assert set(done.values()) == {JobStatus.SUCCEEDED}, (
        f"{sorted(s for s in done.values())[:5]}\n{cluster.logs()}"
    )
    charges = cluster.count("charges.log")
    assert len(charges) == jobs and set(charges.values()) == {1}
    store = await app.open_store()
    assert await store.effects(states=[EffectState.IN_DOUBT]) == []
    for job_id in ids[::20]:
        assert verify_chain(job_id, await store.events(job_id)).ok
    assert "terminating connection" in private_pg.server_log() or "shutting down" in (
        private_pg.server_log()
    )
    await app.close()


# -- partition: a worker in its own network namespace, cut off mid-job ----------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def partition_problem() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    return available()


class Veth:
    """A namespace joined to the host by a veth pair on a private /30."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.ns, self.host_if, self.ns_if = f"aeth-{tag}", f"ah{tag}", f"an{tag}"
        third = int(tag[:2], 16) % 250 + 1
        self.host_ip, self.ns_ip = f"10.231.{third}.1", f"10.231.{third}.2"

    def up(self) -> None:
        _ip("netns", "add", self.ns)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.ns)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("netns", "exec", self.ns, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        _ip("netns", "exec", self.ns, "ip", "link", "set", self.ns_if, "up")
        _ip("netns", "exec", self.ns, "ip", "link", "set", "lo", "up")

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def mend(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def down(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)


@pytest.fixture
def partition() -> Iterator[tuple[Veth, PrivateCluster]]:
    need(partition_problem())
    veth = Veth()
    server: PrivateCluster | None = None
    try:
        veth.up()
        server = PrivateCluster(listen=f"127.0.0.1,{veth.host_ip}")
        server.init()
        hba = server.data / "pg_hba.conf"
        with open(hba, "a") as f:
            f.write(f"host all all {veth.ns_ip}/32 trust\n")
        server.restart("fast")
        yield veth, server
    finally:
        if server is not None:
            server.destroy()
        veth.down()


async def test_a_partitioned_worker_is_fenced_when_the_link_returns(
    partition: tuple[Veth, PrivateCluster], tmp_path: Path, workers: list[Cluster]
) -> None:
    veth, server = partition
    cluster = Cluster(tmp_path, server.url(), lease_ttl=2.0)
    workers.append(cluster)
    app = App(server.url())
    await app.open_store()
    cut_off = cluster.start_worker(
        concurrency=1, url=server.url(veth.host_ip), wrap=("ip", "netns", "exec", veth.ns)
    )
    handle = await app.start("zombie", {"seconds": 4.0})
    deadline = time.monotonic() + 30
    while not cluster.lines("slow.log"):
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.05)
    veth.cut()
    cut_at = time.monotonic()
    try:
        cluster.start_worker(concurrency=1)
        job = await _wait_parked(app, handle.job_id)
        assert job.park_reason is ParkReason.EFFECT_IN_DOUBT
        epoch = job.lease_epoch
        # Keep the link down until the cut-off worker's tool has returned, so that its
        # outcome write is waiting in TCP when the link comes back.
        await asyncio.sleep(max(0.0, cut_at + 5.0 - time.monotonic()))
    finally:
        veth.mend()
    # The cut-off worker's tool finishes; its outcome write reaches the server and is fenced.
    await asyncio.sleep(8.0)
    store = await app.open_store()
    events = await store.events(handle.job_id)
    assert [e for e in events if e.type is EventType.OP] == [], "a fenced outcome was recorded"
    assert cluster.lines("after_slow.log") == [], "the cut-off worker dispatched again"
    claims = [e.data for e in events if e.type is EventType.JOB_CLAIMED]
    assert pid_of(claims[0]["owner"]) == cut_off.pid
    assert claims[1]["recovered_from"] == claims[0]["owner"]
    job = await app.get_job(handle.job_id)
    assert job.status is JobStatus.PARKED and job.lease_epoch == epoch
    assert cut_off.poll() is None, "the cut-off worker should survive, fenced"
    assert "lost" in cluster.logs()
    await app.close()


async def _wait_parked(app: App, job_id: str) -> object:
    deadline = time.monotonic() + 30
    while True:
        job = await app.get_job(job_id)
        if job.status is JobStatus.PARKED:
            return job
        assert time.monotonic() < deadline, f"job is {job.status}"
        await asyncio.sleep(0.1)
