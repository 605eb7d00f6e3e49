"""Restate harness: restate-server (npm ``@restatedev/restate-server``) + restate-sdk (Python).

Each run starts a fresh single-node ``restate-server`` (its own base dir in the run's work dir,
free loopback ports for ingress, admin and node-to-node), one SDK service process
(``bench.peers.restate_service``, hypercorn, HTTP/2), registers it through the admin API
(``POST /deployments``) and invokes the ``Bench`` service through the ingress. Every step is a
``ctx.run`` (journaled). Only the ``server`` backend exists: Restate keeps its state in its own
log and partition store (RocksDB), never in SQLite or PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from bench.peers import common

SYSTEM = "restate"
REPO = Path(__file__).resolve().parents[2]
_BINS = sorted(
    Path(sys.prefix).glob("node_modules/@restatedev/restate-server-*/bin/restate-server")
)
SERVER_BIN = _BINS[0] if _BINS else Path(sys.prefix) / "node_modules/.bin/restate-server"
NO_SERVER = (
    "Restate keeps its durable state in its own server (RocksDB log + partition store); "
    "it has no SQLite or PostgreSQL backend: use --backend server"
)


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.005)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def http(method: str, url: str, body: Any = None, timeout: float = 900.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    req.add_header("accept", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def stop_process(proc: subprocess.Popen, grace: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_env(base: Path, durability: str) -> tuple[dict[str, str], dict[str, int]]:
    ports = {"ingress": free_port(), "admin": free_port(), "node": free_port()}
    env = dict(os.environ)
    env.update(
        RESTATE_NODE_NAME="bench",
        RESTATE_CLUSTER_NAME=f"bench-{base.name}",
        RESTATE_LISTEN_MODE="tcp",
        RESTATE_BIND_IP="127.0.0.1",
        RESTATE_ADVERTISED_HOST="127.0.0.1",
        RESTATE_BIND_PORT=str(ports["node"]),
        RESTATE_INGRESS__BIND_PORT=str(ports["ingress"]),
        RESTATE_ADMIN__BIND_PORT=str(ports["admin"]),
        RESTATE_ADMIN__DISABLE_WEB_UI="true",
        RESTATE_DISABLE_TELEMETRY="true",
        RESTATE_LOG_DISABLE_ANSI_CODES="true",
        RESTATE_LOG_FILTER="warn",
    )
    if durability == "process":  # written to the OS at once, but no fsync of the WALs
        env["RESTATE_LOG_SERVER__ROCKSDB_DISABLE_WAL_FSYNC"] = "true"
        env["RESTATE_BIFROST__LOCAL__ROCKSDB_DISABLE_WAL_FSYNC"] = "true"
    return env, ports


class Stack:
    """One fresh restate-server and one SDK service process, registered and warmed up."""

    def __init__(self, root: Path, durability: str, service_env: dict[str, str] | None = None):
        self.root = root
        self.base = root / "restate-data"
        env, self.ports = server_env(root, durability)
        self.service_port = free_port()
        self.server_log = open(root / "server.log", "wb")  # noqa: SIM115
        self.server = subprocess.Popen(
            [str(SERVER_BIN), "--no-logo", "--base-dir", str(self.base)],
            env=env,
            stdout=self.server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ingress = f"http://127.0.0.1:{self.ports['ingress']}"
        self.admin = f"http://127.0.0.1:{self.ports['admin']}"
        self.services: list[subprocess.Popen] = []
        self.service: subprocess.Popen | None = None
        try:
            self._wait_healthy()
            self.start_service(service_env)
            http(
                "POST",
                f"{self.admin}/deployments",
                {"uri": f"http://127.0.0.1:{self.service_port}"},
            )
            self._warm_up()
        except BaseException:
            self.close()
            raise

    def _wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"restate-server exited: {self.log_tail()}")
            try:
                http("GET", f"{self.admin}/health", timeout=2)
                http("GET", f"{self.ingress}/restate/health", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _warm_up(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                http("POST", f"{self.ingress}/Bench/ping", {"n": 1}, timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # Then 50 more steps and a 1 s pause, so start-up work is not in the measurements.
        http("POST", f"{self.ingress}/Bench/ping", {"n": 50}, timeout=120)
        time.sleep(1.0)

    def start_service(self, extra_env: dict[str, str] | None = None) -> float:
        """Start a (fresh) SDK service process on the deployment's port; seconds to listen."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.update(extra_env or {})
        n = len(self.services)
        log = open(self.root / f"service-{n}.log", "wb")  # noqa: SIM115
        began = time.time()
        cmd = [
            sys.executable,
            "-m",
            "bench.peers.restate_service",
            "--port",
            str(self.service_port),
        ]
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.services.append(proc)
        self.service = proc
        wait_port(self.service_port, proc=proc)
        return time.time() - began

    def send(self, handler: str, body: dict[str, Any]) -> str:
        return str(http("POST", f"{self.ingress}/Bench/{handler}/send", body)["invocationId"])

    def attach(self, invocation_id: str, timeout: float = 1800.0) -> Any:
        return http(
            "GET", f"{self.ingress}/restate/invocation/{invocation_id}/attach", None, timeout
        )

    def sql(self, query: str) -> list[dict[str, Any]]:
        return list(http("POST", f"{self.admin}/query", {"query": query}, timeout=120)["rows"])

    def log_tail(self, n: int = 3000) -> str:
        self.server_log.flush()
        return (self.root / "server.log").read_bytes()[-n:].decode(errors="replace")

    def close(self) -> None:
        for proc in self.services:
            stop_process(proc, grace=5)
        stop_process(self.server)
        self.server_log.close()


@contextlib.contextmanager
def stack(
    root: Path, durability: str, service_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    s = Stack(root, durability, service_env)
    try:
        yield s
    finally:
        s.close()


def dir_bytes(path: Path) -> int:
    """Apparent size (st_size) of every file under ``path``: RocksDB preallocates WAL blocks."""
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# -- workloads -----------------------------------------------------------------------------------


STEP_NOTE = (
    "step = ctx.run_typed (journaled; the SDK proposes the result and waits for the server's "
    "ack before the next step); restate-server defaults: single node, replicated loglet, "
    "log-server RocksDB WAL fsync on"
)


def durability_note(durability: str) -> str:
    if durability == "process":
        return "durability process: log-server and local-loglet WAL fsync disabled"
    return "durability full: server defaults (WAL fsync per log append)"


def w1(args: Any, run: int, wd: Path, emit: Any) -> None:
    n = 100 if args.quick else common.W1_STEPS
    with stack(wd, args.durability) as s:
        out = http("POST", f"{s.ingress}/Bench/steps", {"n": n})
    assert out["value"] == n, out
    emit(
        "steps",
        "us_per_step",
        out["elapsed_s"] / n * 1e6,
        f"{n} steps; timed inside the handler from before the first ctx.run to after the last",
        {"steps": n},
    )


def w2(args: Any, run: int, wd: Path, emit: Any) -> None:
    jobs, steps = (20, common.W2_STEPS) if args.quick else (common.W2_JOBS, common.W2_STEPS)
    with stack(wd, args.durability) as s:
        began = time.time()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: s.send("steps", {"n": steps}), range(jobs)))
        sent = time.time()
        query = (
            "SELECT count(*) AS n FROM sys_invocation "
            "WHERE target_handler_name = 'steps' AND status = 'completed'"
        )
        deadline = time.monotonic() + 900
        while int(s.sql(query)[0]["n"]) < jobs:
            if time.monotonic() > deadline:
                raise TimeoutError("W2 jobs did not complete")
            time.sleep(0.2)
        rows = s.sql(
            "SELECT completion_result, min(created_at) AS first_created, "
            "max(completed_at) AS last_completed, count(*) AS n FROM sys_invocation "
            "WHERE target_handler_name = 'steps' GROUP BY completion_result"
        )
    ok = [r for r in rows if r["completion_result"] == "success"]
    if len(ids) != jobs or len(rows) != 1 or not ok or int(ok[0]["n"]) != jobs:
        raise RuntimeError(f"W2: not every job succeeded: {rows}")
    window = ts(ok[0]["last_completed"]) - began
    note = (
        f"{jobs} jobs x {steps} steps sent at once via ingress /send (8 client threads, "
        f"{sent - began:.2f}s to send), one SDK service process; window from the harness "
        "sending the first job to the last completed_at in sys_invocation (admin SQL); "
        "server and service started and warmed up before"
    )
    extra = {"window_s": window, "send_s": sent - began, "jobs": jobs, "steps": steps}
    emit("throughput", "jobs_per_s", jobs / window, note, extra)
    emit("throughput", "steps_per_s", jobs * steps / window, note, extra)


def w3(args: Any, run: int, wd: Path, emit: Any) -> None:
    n, kill_at = (20, 11) if args.quick else (common.W3_STEPS, common.W3_KILL_AT)
    for mode, variant in (("inside", "kill_inside_step"), ("between", "kill_between_steps")):
        root = wd / mode
        root.mkdir()
        lines = root / "lines.txt"
        with stack(root, args.durability, {"BENCH_KILL": f"{mode}:{kill_at}"}) as s:
            inv = s.send("crashy", {"n": n, "path": str(lines)})
            assert s.service is not None
            s.service.wait(600)
            killed_at = float(Path(f"{lines}.killed").read_text())
            lines_at_kill = len(lines.read_text().splitlines())
            listen_s = s.start_service()
            s.attach(inv)
            done = time.time()
        got = [int(x) for x in lines.read_text().split()]
        dupes = sorted({x for x in got if got.count(x) > 1})
        where = f"inside step {kill_at}" if mode == "inside" else f"after step {kill_at} completed"
        note = (
            f"SIGKILL of the SDK service process {where} (the step body/handler kills itself); "
            "a fresh service process on the same port serves Restate's retry; service retry "
            "policy shortened to 50 ms initial, x2, max 250 ms (server default 500 ms .. 1 min); "
            f"recovery from the kill to the attach returning; steps run twice: {dupes or 'none'}"
        )
        extra = {
            "fresh_process_listen_s": listen_s,
            "lines_at_kill": lines_at_kill,
            "duplicated_steps": dupes,
        }
        emit(variant, "recovery_s", done - killed_at, note, extra)
        emit(variant, "lines", float(len(got)), note, extra)


def stopped_parts(base: Path) -> dict[str, int]:
    """Bytes of each store (db, log-store, metadata) of a base dir, server stopped."""
    return {p.name: dir_bytes(p) for p in sorted(base.glob("*/*")) if p.is_dir()}


def w4(args: Any, run: int, wd: Path, emit: Any) -> None:
    sizes = (20,) if args.quick else common.W4_TURNS
    # Baseline: a server started, registered, warmed up and stopped the same way, with no run.
    (wd / "baseline").mkdir()
    with stack(wd / "baseline", args.durability) as s:
        pass
    baseline = stopped_parts(s.base)
    for turns in sizes:
        root = wd / f"turns-{turns}"
        root.mkdir()
        with stack(root, args.durability) as s:
            before = dir_bytes(s.base)
            inv = s.send("agent", {"turns": turns})
            out = s.attach(inv)
            running_growth = dir_bytes(s.base) - before
            journal = s.sql(
                f"SELECT sum(raw_length) AS b, count(*) AS n FROM sys_journal WHERE id = '{inv}'"
            )[0]
        parts = stopped_parts(s.base)
        growth = {k: v - baseline.get(k, 0) for k, v in parts.items()}
        assert out["messages"] == 2 * turns + 1, out
        us_per_turn = out["elapsed_s"] / turns * 1e6
        extra = {
            "turns": turns,
            "us_per_turn": us_per_turn,
            "journal_raw_bytes": journal["b"],
            "journal_entries": journal["n"],
            "growth_by_store": growth,
            "baseline_bytes": sum(baseline.values()),
            "running_dir_growth_bytes": running_growth,
        }
        if turns == 20:
            note = "turn = ctx.run(llm) + ctx.run(tool); timed inside the handler"
            emit("agent", "us_per_turn", us_per_turn, note, extra)
        note = (
            "base dir size (apparent file sizes: partition store + log store + metadata) after "
            "a graceful server stop (memtables flushed to SST files, which RocksDB compresses: "
            "the W4 padding compresses well) minus the same for a server started, warmed up "
            "and stopped without the run; completed journals are kept (journal retention 1 d); "
            f"the uncompressed journal is {journal['b']} bytes in {journal['n']} entries "
            f"(sys_journal raw_length); growth while running, WALs included: {running_growth}"
        )
        emit("agent", f"bytes_stored_{turns}", float(sum(growth.values())), note, extra)


def w5(args: Any, run: int, wd: Path, emit: Any) -> None:
    n = 200 if args.quick else common.W5_SIZES[-1]
    sizes = (10, 100, 200) if args.quick else common.W5_SIZES
    times_path = wd / "times.json"
    mark = wd / "resume.json"
    with stack(wd, args.durability, {"BENCH_KILL": f"after:{n}"}) as s:
        inv = s.send("journal", {"n": n, "times": str(times_path)})
        assert s.service is not None
        s.service.wait(1800)
        killed_at = float(Path(f"{times_path}.killed").read_text())
        spawned = time.time()
        s.start_service({"BENCH_MARK": str(mark)})
        s.attach(inv)
        resumed = json.loads(mark.read_text())
        journal_len = s.sql(f"SELECT journal_size FROM sys_invocation WHERE id = '{inv}'")
    times = json.loads(times_path.read_text())
    assert len(times) == n
    for size in sizes:
        # steps 1-10, then the 20 steps around ``size`` (991-1,010), then the last 10
        lo, hi = (0, size) if size == sizes[0] else (size - 10, min(n, size + 10))
        us = statistics.median(times[lo:hi]) * 1e6
        note = f"median wall time of steps {lo + 1}-{hi}, recorded in the handler (plain list)"
        emit("journal", f"us_per_step_at_{size}", us, note, {"steps": n})
    resume_s = resumed["passed"] - spawned
    note = (
        f"after step {n} completed the service process SIGKILLs itself; a fresh process is "
        f"spawned; from its spawn to the replayed handler passing step {n} again (includes "
        "Python start-up, the retry delay and the replay of the whole journal)"
    )
    extra = {
        "replay_only_s": resumed["passed"] - resumed["entered"],
        "kill_to_passed_s": resumed["passed"] - killed_at,
        "journal_rows": journal_len,
    }
    emit("journal", "resume_10k_s" if not args.quick else f"resume_{n}_s", resume_s, note, extra)


WORKLOADS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5}
METRICS = {
    "W1": ("steps", ["us_per_step"]),
    "W2": ("throughput", ["jobs_per_s", "steps_per_s"]),
    "W3": ("kill_inside_step", ["recovery_s", "lines"]),
    "W4": ("agent", ["us_per_turn"] + [f"bytes_stored_{n}" for n in common.W4_TURNS]),
    "W5": ("journal", [f"us_per_step_at_{n}" for n in common.W5_SIZES] + ["resume_10k_s"]),
}


def versions() -> str:
    if not SERVER_BIN.exists():
        raise SystemExit(
            f"{SERVER_BIN} is missing: npm install --prefix {sys.prefix} "
            "@restatedev/restate-server@<version in bench/peers/requirements/restate.txt>"
        )
    out = subprocess.run([str(SERVER_BIN), "--version"], capture_output=True, text=True)
    server = out.stdout.strip().split()[-1] if out.returncode == 0 else "?"
    return f"sdk {dist_version('restate-sdk')}, server {server}"


def run_once(args: Any, ver: str, run: int) -> None:
    fsync: float | None = None
    tail = ""

    def emit(variant: str, metric: str, value: float | None, notes: str, extra: Any = None):
        result = common.Result(
            system=SYSTEM,
            version=ver,
            workload=args.workload,
            variant=variant,
            backend=args.backend,
            durability=args.durability,
            metric=metric,
            value=value,
            run=run,
            fsync_p50_us=fsync,
            notes=notes + tail if value is not None else notes,
            extra=dict(extra or {}, quick=args.quick),
        )
        common.emit(args.out, result)

    variant, metrics = METRICS[args.workload]
    if args.backend != "server":
        for metric in metrics:
            emit(variant, metric, None, NO_SERVER)
        return
    with common.workdir(args.dir) as wd:
        fsync = round(common.fsync_p50_us(wd), 1)
        tail = f"; {STEP_NOTE}; {durability_note(args.durability)}"
        try:
            WORKLOADS[args.workload](args, run, wd, emit)
        except Exception as exc:
            for metric in metrics:
                emit(variant, metric, None, f"FAILED: {type(exc).__name__}: {exc}")
            raise


def main() -> None:
    args = common.parse_args(SYSTEM)
    ver = versions()
    for run in range(1, args.runs + 1):
        run_once(args, ver, run)


if __name__ == "__main__":
    main()
