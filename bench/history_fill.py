"""Fill a store's tables with history in bulk SQL, for ``python -m bench.history``.

Ended jobs (succeeded 90 %, failed 7 %, cancelled 3 %) and parked jobs (waiting for a signal or
an approval; half of them with a timeout a week ahead, so ``wake_at`` is set) are written with
``INSERT ... SELECT`` over a generated series, never through the Python API, so a million jobs
and their five million events take minutes. Their creation times are spread over the last 90
days (the parked ones among the ended ones) and their ids are time-ordered like
``aetheris.agents.new_job_id``'s, so the indexes see what months of use would leave.

Each job has five events shaped like the runtime's (``job_created``, ``job_claimed``, two
``op`` results, then ``job_succeeded``/``job_failed``/``job_cancelled``, or ``wait`` and
``job_parked``), with bodies of about 200 bytes. The hashes are random hex, not a real chain:
no measured operation reads or verifies these journals. One ended job in eight also has an
approval signal in its inbox, received.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

CHUNK = 100_000
SPAN_S = 90 * 86_400.0  # history covers the last 90 days
EVENTS = 5
AGENTS = 5  # history_a0 .. history_a4
PARKED_WAIT = "signal:approve"  # what every filled parked job waits for

Progress = Callable[[str], None]

# Parameters: kind (0 ended, 1 parked), lo, hi (series bounds), n (jobs of this kind), t0 (now).
_PG_JOBS = """
INSERT INTO jobs (id, agent, input, status, park_reason, park_detail, result, error, queue,
                  priority, lease_epoch, run_at, attempts, event_count, head_hash, created_at,
                  updated_at, wake_on, wake_at, tenant, code_version)
SELECT s.id, 'history_a' || (s.g %% 5), jsonb_build_object('ticket', s.g, 'text', repeat('x', 60)),
       s.status,
       CASE WHEN s.status = 'parked' THEN 'signal' END,
       CASE WHEN s.status = 'parked' THEN jsonb_build_object('wait', 'approve') END,
       CASE WHEN s.status = 'succeeded' THEN jsonb_build_object('answer', 'done', 'n', s.g) END,
       CASE WHEN s.status = 'failed' THEN jsonb_build_object('type', 'ToolError',
            'message', 'upstream returned 502') END,
       'default', 0, 1, s.at, 1, 5, md5(s.id) || md5(s.id || 'h'), s.at, s.at + 40,
       CASE WHEN s.status = 'parked' THEN 'signal:approve' END,
       CASE WHEN s.status = 'parked' AND s.g %% 2 = 0 THEN %(t0)s + 7 * 86400.0 END,
       'default', 'v1'
FROM (
    SELECT g, at,
           lpad(to_hex((at * 1000)::bigint), 12, '0')
               || substr(md5(g::text || %(kind)s::text), 1, 20) AS id,
           CASE WHEN %(kind)s = 1 THEN 'parked'
                WHEN g %% 100 < 90 THEN 'succeeded'
                WHEN g %% 100 < 97 THEN 'failed' ELSE 'cancelled' END AS status
    FROM (SELECT g, %(t0)s::float8 - %(span)s::float8
                    + (g + %(kind)s::int * 0.5) * (%(span)s::float8 / %(n)s::int) AS at
          FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g) AS t
) AS s
"""

_PG_EVENTS = """
INSERT INTO events (job_id, seq, type, position, body, prev_hash, hash)
SELECT j.id, e.seq,
       CASE e.seq WHEN 1 THEN 'job_created' WHEN 2 THEN 'job_claimed' WHEN 3 THEN 'op'
           WHEN 4 THEN CASE WHEN j.status = 'parked' THEN 'wait' ELSE 'op' END
           ELSE CASE j.status WHEN 'parked' THEN 'job_parked' WHEN 'succeeded' THEN 'job_succeeded'
                WHEN 'failed' THEN 'job_failed' ELSE 'job_cancelled' END END,
       CASE WHEN e.seq IN (3, 4) THEN e.seq - 3 END,
       convert_to(json_build_object('at', j.created_at + e.seq, 'job_id', j.id, 'seq', e.seq,
                                    'data', repeat('d', 90))::text, 'UTF8'),
       md5(j.id || (e.seq - 1)::text) || md5(j.id), md5(j.id || e.seq::text) || md5(j.id)
FROM jobs j CROSS JOIN generate_series(1, 5) AS e(seq)
WHERE j.created_at >= %(lo_at)s AND j.created_at < %(hi_at)s AND j.agent LIKE 'history_a%%'
  AND (j.status = 'parked') = (%(kind)s = 1)
"""

# One ended job in eight received an approval signal, consumed by its fourth event.
_PG_SIGNALS = """
INSERT INTO signals (job_id, seq, name, signal_id, payload, sender, created_at, consumed_position)
SELECT j.id, 1, 'approve', md5(j.id), jsonb_build_object('ok', true), 'ops@example.com',
       j.created_at + 20, 1
FROM jobs j
WHERE j.created_at >= %(lo_at)s AND j.created_at < %(hi_at)s AND j.agent LIKE 'history_a%%'
  AND j.status <> 'parked' AND %(kind)s = 0 AND right(j.id, 1) IN ('0', '8')
"""

_LITE_JOBS = """
WITH RECURSIVE series(g) AS (SELECT :lo UNION ALL SELECT g + 1 FROM series WHERE g < :hi),
t AS (SELECT g, :t0 - :span + (g + :kind * 0.5) * (:span / :n) AS at FROM series),
s AS (SELECT g, at,
             printf('%012x', CAST(at * 1000 AS INTEGER)) || lower(hex(randomblob(10))) AS id,
             CASE WHEN :kind = 1 THEN 'parked' WHEN g % 100 < 90 THEN 'succeeded'
                  WHEN g % 100 < 97 THEN 'failed' ELSE 'cancelled' END AS status
      FROM t)
INSERT INTO jobs (id, agent, input, status, park_reason, park_detail, result, error, queue,
                  priority, lease_epoch, run_at, attempts, event_count, head_hash, created_at,
                  updated_at, wake_on, wake_at, tenant, code_version)
SELECT s.id, 'history_a' || (s.g % 5),
       CAST('{"text":"' || printf('%.60c', 'x') || '","ticket":' || s.g || '}' AS BLOB),
       s.status,
       CASE WHEN s.status = 'parked' THEN 'signal' END,
       CASE WHEN s.status = 'parked' THEN CAST('{"wait":"approve"}' AS BLOB) END,
       CASE WHEN s.status = 'succeeded'
            THEN CAST('{"answer":"done","n":' || s.g || '}' AS BLOB) END,
       CASE WHEN s.status = 'failed'
            THEN CAST('{"message":"upstream returned 502","type":"ToolError"}' AS BLOB) END,
       'default', 0, 1, s.at, 1, 5, lower(hex(randomblob(32))), s.at, s.at + 40,
       CASE WHEN s.status = 'parked' THEN 'signal:approve' END,
       CASE WHEN s.status = 'parked' AND s.g % 2 = 0 THEN :t0 + 7 * 86400.0 END,
       'default', 'v1'
FROM s
"""

_LITE_EVENTS = """
WITH RECURSIVE e(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM e WHERE seq < 5)
INSERT INTO events (job_id, seq, type, position, body, prev_hash, hash)
SELECT j.id, e.seq,
       CASE e.seq WHEN 1 THEN 'job_created' WHEN 2 THEN 'job_claimed' WHEN 3 THEN 'op'
           WHEN 4 THEN CASE WHEN j.status = 'parked' THEN 'wait' ELSE 'op' END
           ELSE CASE j.status WHEN 'parked' THEN 'job_parked' WHEN 'succeeded' THEN 'job_succeeded'
                WHEN 'failed' THEN 'job_failed' ELSE 'job_cancelled' END END,
       CASE WHEN e.seq IN (3, 4) THEN e.seq - 3 END,
       CAST('{"at":' || (j.created_at + e.seq) || ',"data":"' || printf('%.90c', 'd')
            || '","job_id":"' || j.id || '","seq":' || e.seq || '}' AS BLOB),
       lower(hex(randomblob(32))), lower(hex(randomblob(32)))
FROM jobs j CROSS JOIN e
WHERE j.created_at >= :lo_at AND j.created_at < :hi_at AND j.agent LIKE 'history_a%'
  AND (j.status = 'parked') = (:kind = 1)
"""

_LITE_SIGNALS = """
INSERT INTO signals (job_id, seq, name, signal_id, payload, sender, created_at, consumed_position)
SELECT j.id, 1, 'approve', lower(hex(randomblob(16))), CAST('{"ok":true}' AS BLOB),
       'ops@example.com', j.created_at + 20, 1
FROM jobs j
WHERE j.created_at >= :lo_at AND j.created_at < :hi_at AND j.agent LIKE 'history_a%'
  AND j.status <> 'parked' AND :kind = 0 AND substr(j.id, -1) IN ('0', '8')
"""


def _chunks(kind: int, n: int, t0: float) -> list[dict[str, float | int]]:
    """The series bounds of each chunk of ``n`` jobs of ``kind``, with the creation-time range
    that holds exactly that chunk's jobs (for the events' ``INSERT ... SELECT``)."""
    step = SPAN_S / n if n else 0.0
    out: list[dict[str, float | int]] = []
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK) - 1
        out.append(
            {
                "kind": kind,
                "lo": lo,
                "hi": hi,
                "n": n,
                "t0": t0,
                "span": SPAN_S,
                "lo_at": t0 - SPAN_S + (lo + kind * 0.5 - 0.25) * step,
                "hi_at": t0 - SPAN_S + (hi + kind * 0.5 + 0.25) * step,
            }
        )
    return out


def fill(url: str, ended: int, parked: int, progress: Progress) -> float:
    """Write ``ended`` ended jobs and ``parked`` parked ones (with their events) into the
        store's database at ``url`` (already migrated), then ANALYZE, checkpoint and sync, so that
    the fill's writes are on disk before anything is timed. Returns the seconds taken."""
    start = time.perf_counter()
    t0 = time.time() - 3600.0  # the newest history is an hour old
    chunks = _chunks(0, ended, t0) + _chunks(1, parked, t0)
    if url.startswith("sqlite:"):
        _fill_sqlite(Path(url.removeprefix("sqlite://").split("?", 1)[0]), chunks, progress)
    else:
        _fill_postgres(url.split("?", 1)[0], chunks, progress)
    os.sync()
    return time.perf_counter() - start


def _fill_postgres(url: str, chunks: list[dict[str, float | int]], progress: Progress) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        done = 0
        for params in chunks:
            with conn.transaction():
                conn.execute(_PG_JOBS, params)
                conn.execute(_PG_EVENTS, params)
                conn.execute(_PG_SIGNALS, params)
            done += int(params["hi"]) - int(params["lo"]) + 1
            progress(f"fill: {done:,} of {_total(chunks):,} jobs")
        progress("fill: VACUUM ANALYZE, CHECKPOINT")
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")  # the fill's dirty pages are written now, not while timed


def _fill_sqlite(path: Path, chunks: list[dict[str, float | int]], progress: Progress) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        done = 0
        for params in chunks:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(_LITE_JOBS, params)
            conn.execute(_LITE_EVENTS, params)
            conn.execute(_LITE_SIGNALS, params)
            conn.execute("COMMIT")
            done += int(params["hi"]) - int(params["lo"]) + 1
            progress(f"fill: {done:,} of {_total(chunks):,} jobs")
        progress("fill: ANALYZE")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _total(chunks: list[dict[str, float | int]]) -> int:
    return sum(int(c["hi"]) - int(c["lo"]) + 1 for c in chunks)
