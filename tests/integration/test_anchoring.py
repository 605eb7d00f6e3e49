"""Tampering with the database directly, as someone with write access and no signing key would,
on SQLite and PostgreSQL: each change is caught by ``aetheris verify`` (exit 1) at the right
first bad position, and an evidence bundle changed in any value, or signed by a key that is
not trusted, fails offline.

The job: created, claimed, an ``at_most_once`` payment (intent, outcome), a durable sleep (its
wait and park in one write), claimed again, the sleep's outcome, a step, the end.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from aetheris import App, Context, JobStatus
from aetheris.anchor import SigningKey
from aetheris.bundle import sign_bundle
from aetheris.cli import main
from aetheris.journal import GENESIS_HASH, anchor_statement, canonical, chain_hash, decode
from aetheris.store.sqlite import sqlite_path
from aetheris.testing import running_worker

from .helpers import wait_for

KEY = SigningKey.generate()  # the workers' key: the attacker never has it
TRUSTED = ["--public-key", KEY.public.text]
Row = dict[str, Any]


def make_app(url: str) -> App:
    app = App(url, signing_key=KEY, trusted_keys=[])

    @app.tool(effect="at_most_once")
    async def pay(amount: int) -> dict[str, int]:
        return {"paid": amount}

    @app.agent
    async def buyer(ctx: Context, amount: int = 3) -> dict[str, Any]:
        paid = await pay(amount)
        await ctx.sleep(0.01)
        doubled = await ctx.step("double", lambda: amount * 2)
        return {"paid": paid, "doubled": doubled}

    return app


def run_job(url: str) -> str:
    async def go() -> str:
        app = make_app(url)
        try:
            handle = await app.start("buyer", {"amount": 3})
            async with running_worker(app, poll_interval=0.01):
                job = await wait_for(app, handle.job_id)
            assert job.status is JobStatus.SUCCEEDED, job.error
            return handle.job_id
        finally:
            await app.close()

    return asyncio.run(go())


def verify(url: str, *args: str) -> tuple[int, Any]:
    """``aetheris verify ... --json`` on the database: exit code and verdict."""
    done = CliRunner().invoke(main, ["verify", *args, "--database-url", url, "--json"])
    assert done.stdout.strip(), done.output
    return done.exit_code, json.loads(done.stdout)


class Attacker:
    """Writes to the database with its driver, recomputes hashes, has no signing key."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = url.startswith("postgres")

    @contextmanager
    def _db(self) -> Iterator[Any]:
        if self.pg:
            with psycopg.connect(self.url, autocommit=False) as conn:
                yield conn
        else:
            conn = sqlite3.connect(sqlite_path(self.url)[0])
            try:
                with conn:
                    yield conn
            finally:
                conn.close()

    def _sql(self, statement: str) -> str:
        """Statements are written with ``%(name)s``; SQLite takes ``:name``."""
        return statement if self.pg else statement.replace("%(", ":").replace(")s", "")

    def execute(self, statement: str, **params: Any) -> None:
        with self._db() as conn:
            conn.execute(self._sql(statement), params)

    def events(self, job_id: str) -> list[Row]:
        query = (
            "SELECT seq, body, anchor_key, anchor_sig FROM events WHERE job_id = %(j)s ORDER BY seq"
        )
        with self._db() as conn:
            rows = conn.execute(self._sql(query), {"j": job_id}).fetchall()
        return [
            {"seq": r[0], "body": bytes(r[1]), "anchor_key": r[2], "anchor_sig": r[3]} for r in rows
        ]

    def rewrite(
        self, job_id: str, rows: list[Row], sign_with: SigningKey | None = None, since: int = 0
    ) -> None:
        """Put ``rows`` in as the journal, each body's seq renumbered, every hash recomputed,
        and the job's head moved to the new end. Anchors stay as they were (or, with
        ``sign_with``, the attacker's own key signs where anchors were, from ``since`` on)."""
        prev, written = GENESIS_HASH, []
        for seq, row in enumerate(rows):
            doc = decode(row["body"])
            doc["seq"] = seq
            body = canonical(doc)
            digest = chain_hash(prev, body)
            key, sig = row["anchor_key"], row["anchor_sig"]
            if sign_with is not None and key is not None and seq >= since:
                key = sign_with.key_id
                sig = sign_with.sign(anchor_statement(job_id, seq, digest))
            written.append({"j": job_id, "s": seq, "t": doc["type"], "p": doc["position"],
                            "b": body, "ph": prev, "h": digest, "k": key, "g": sig})  # fmt: skip
            prev = digest
        insert = (
            "INSERT INTO events (job_id, seq, type, position, body, prev_hash, hash, anchor_key,"
            " anchor_sig) VALUES (%(j)s, %(s)s, %(t)s, %(p)s, %(b)s, %(ph)s, %(h)s, %(k)s, %(g)s)"
        )
        with self._db() as conn:
            conn.execute(self._sql("DELETE FROM events WHERE job_id = %(j)s"), {"j": job_id})
            for params in written:
                conn.execute(self._sql(insert), params)
            head = {"j": job_id, "n": len(written), "h": prev}
            update = "UPDATE jobs SET event_count = %(n)s, head_hash = %(h)s WHERE id = %(j)s"
            conn.execute(self._sql(update), head)

    def json(self, value: Any) -> Any:
        """A JSON column's value as the database keeps it."""
        return canonical(value).decode() if self.pg else canonical(value)

    def set_json(self, table: str, column: str, value: Any, where: str, **params: Any) -> None:
        cast = "::jsonb" if self.pg else ""
        statement = f"UPDATE {table} SET {column} = %(v)s{cast} WHERE {where}"
        self.execute(statement, v=self.json(value), **params)


def edit(row: Row, change: Callable[[dict[str, Any]], None]) -> Row:
    doc = decode(row["body"])
    change(doc)
    return {**row, "body": canonical(doc)}


def seq_of(rows: list[Row], kind: str, name: str | None = None) -> int:
    for row in rows:
        doc = decode(row["body"])
        if doc["type"] == kind and (name is None or doc["data"].get("name") == name):
            return int(row["seq"])
    raise AssertionError(f"no {kind} {name or ''} event")


@pytest.fixture
def job(durable_url: str) -> tuple[str, str, Attacker]:
    job_id = run_job(durable_url)
    code, verdict = verify(durable_url, job_id, *TRUSTED)
    assert code == 0 and verdict["ok"] and verdict["anchored"], verdict
    assert verdict["key_id"] == KEY.key_id
    return durable_url, job_id, Attacker(durable_url)


def test_an_edited_event_rechained_with_its_head_moved_is_caught_where_it_was_edited(
    job: tuple[str, str, Attacker],
) -> None:
    url, job_id, attacker = job
    rows = attacker.events(job_id)
    paid = seq_of(rows, "op", "pay")
    rows[paid] = edit(rows[paid], lambda d: d["data"].update(result={"paid": 300}))
    attacker.rewrite(job_id, rows)
    position = decode(rows[paid]["body"])["position"]  # the ledger row made to agree
    where = "job_id = %(j)s AND position = %(p)s"
    attacker.set_json("effects", "result", {"paid": 300}, where, j=job_id, p=position)
    code, verdict = verify(url, job_id, *TRUSTED)
    assert code == 1 and not verdict["ok"]
    assert (verdict["check"], verdict["seq"]) == ("anchor", paid), verdict
    # Without a trusted key the chain holds, and the verdict claims no more than that.
    code, verdict = verify(url, job_id)
    assert code == 0 and verdict["ok"] and not verdict["anchored"]
    assert "no trusted public key" in verdict["note"]


def test_a_journal_cut_inside_a_write_with_its_head_moved_back_is_caught(
    job: tuple[str, str, Attacker],
) -> None:
    url, job_id, attacker = job
    rows = attacker.events(job_id)
    wait = seq_of(rows, "wait")  # the wait and the park are one write; only the park is signed
    assert rows[wait]["anchor_key"] is None and rows[wait + 1]["anchor_key"] is not None
    attacker.rewrite(job_id, rows[: wait + 1])
    attacker.execute("UPDATE jobs SET status = 'running', result = NULL WHERE id = %(j)s", j=job_id)
    code, verdict = verify(url, job_id, *TRUSTED)
    assert code == 1 and (verdict["check"], verdict["seq"]) == ("anchor", wait), verdict
    assert "carries no anchor" in verdict["problem"]


def test_a_journal_cut_between_writes_is_caught_by_a_witness(
    job: tuple[str, str, Attacker], tmp_path: Path
) -> None:
    url, job_id, attacker = job
    witness = str(tmp_path / "witness.json")
    assert verify(url, "--all", "--witness", witness, *TRUSTED)[0] == 0
    rows = attacker.events(job_id)
    attacker.rewrite(job_id, rows[:-1])  # the end, a write of its own, dropped
    attacker.execute("UPDATE jobs SET status = 'running', result = NULL WHERE id = %(j)s", j=job_id)
    # Every signature left holds: the database alone cannot tell (docs/contract.md, Audit).
    code, verdict = verify(url, job_id, *TRUSTED)
    assert code == 0 and verdict["ok"], verdict
    code, verdicts = verify(url, "--all", "--witness", witness, *TRUSTED)
    assert code == 1
    [verdict] = verdicts
    assert (verdict["check"], verdict["seq"]) == ("witness", len(rows) - 1), verdict


def test_a_job_deleted_outright_is_caught_by_a_witness(
    job: tuple[str, str, Attacker], tmp_path: Path
) -> None:
    url, job_id, attacker = job
    witness = str(tmp_path / "witness.json")
    assert verify(url, "--all", "--witness", witness, *TRUSTED)[0] == 0
    for table in ("events", "effects"):
        attacker.execute(f"DELETE FROM {table} WHERE job_id = %(j)s", j=job_id)
    attacker.execute("DELETE FROM jobs WHERE id = %(j)s", j=job_id)
    code, verdicts = verify(url, "--all", "--witness", witness, *TRUSTED)
    assert code == 1 and [v["job_id"] for v in verdicts] == [job_id]
    assert verdicts[0]["check"] == "witness" and "gone" in verdicts[0]["problem"]


def test_reordered_events_are_caught_at_the_first_one_moved(
    job: tuple[str, str, Attacker],
) -> None:
    url, job_id, attacker = job
    rows = attacker.events(job_id)
    intent = seq_of(rows, "intent")
    rows[intent], rows[intent + 1] = rows[intent + 1], rows[intent]
    attacker.rewrite(job_id, rows)
    code, verdict = verify(url, job_id, *TRUSTED)
    assert code == 1 and (verdict["check"], verdict["seq"]) == ("anchor", intent), verdict


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("result", {"paid": {"paid": 3000}, "doubled": 6}),
        ("status", "failed"),
        ("error", {"type": "Forged", "message": "it failed"}),
    ],
)
def test_an_edited_status_result_or_error_is_caught_at_the_end(
    job: tuple[str, str, Attacker], column: str, value: Any
) -> None:
    url, job_id, attacker = job
    if column == "status":
        attacker.execute("UPDATE jobs SET status = %(v)s WHERE id = %(j)s", v=value, j=job_id)
    else:
        attacker.set_json("jobs", column, value, "id = %(j)s", j=job_id)
    code, verdict = verify(url, job_id, *TRUSTED)
    end = len(attacker.events(job_id)) - 1
    assert code == 1 and (verdict["check"], verdict["seq"]) == ("job", end), verdict
    assert column in verdict["problem"]


@pytest.mark.parametrize("column", ["result", "state"])
def test_an_edited_ledger_row_is_caught_at_its_position(
    job: tuple[str, str, Attacker], column: str
) -> None:
    url, job_id, attacker = job
    rows = attacker.events(job_id)
    position = decode(rows[seq_of(rows, "intent")]["body"])["position"]
    where = "job_id = %(j)s AND position = %(p)s"
    if column == "result":
        attacker.set_json("effects", "result", {"paid": 3000}, where, j=job_id, p=position)
    else:
        attacker.execute(
            f"UPDATE effects SET state = 'not_executed' WHERE {where}", j=job_id, p=position
        )
    code, verdict = verify(url, job_id, *TRUSTED)
    assert code == 1 and (verdict["check"], verdict["position"]) == ("ledger", position), verdict
    assert verdict["seq"] == seq_of(rows, "op", "pay")


def test_a_journal_signed_again_with_another_key_is_caught(
    job: tuple[str, str, Attacker],
) -> None:
    url, job_id, attacker = job
    rows = attacker.events(job_id)
    paid = seq_of(rows, "op", "pay")
    rows[paid] = edit(rows[paid], lambda d: d["data"].update(result={"paid": 300}))
    forger = SigningKey.generate()
    attacker.rewrite(job_id, rows, sign_with=forger, since=paid)
    code, verdict = verify(url, job_id, *TRUSTED)
    assert code == 1 and (verdict["check"], verdict["seq"]) == ("anchor", paid), verdict
    assert f"key {forger.key_id}, which is not trusted" in verdict["problem"]


# -- evidence bundles -----------------------------------------------------------------------


def export(url: str, job_id: str, target: Path, *args: str) -> None:
    done = CliRunner().invoke(
        main, ["export", job_id, "-o", str(target), "--database-url", url, *args]
    )
    assert done.exit_code == 0, done.output


def verify_bundle(path: Path, *args: str) -> tuple[int, Any]:
    done = CliRunner().invoke(main, ["verify", "--bundle", str(path), "--json", *args])
    return done.exit_code, json.loads(done.stdout)


@pytest.fixture
def bundle(sqlite_url: str, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    job_id = run_job(sqlite_url)
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(KEY.pem())
    target = tmp_path / "bundle.json"
    export(sqlite_url, job_id, target, "--sign", str(key_file))
    return target, json.loads(target.read_text("utf-8"))


def test_a_bundle_verifies_offline(bundle: tuple[Path, dict[str, Any]]) -> None:
    path, doc = bundle
    assert {"events", "effects", "approvals", "blobs", "manifest", "signature"} <= set(doc)
    assert doc["signature"]["key_id"] == KEY.key_id
    assert set(doc["manifest"]["sha256"]) == {"job", "events", "effects", "approvals", "blobs"}
    code, verdict = verify_bundle(path, *TRUSTED)
    assert code == 0 and verdict["ok"] and verdict["anchored"], verdict
    assert verdict["signed_by"] == KEY.key_id


@pytest.mark.parametrize(
    "where",
    ["event body", "ledger result", "job result", "manifest head", "approvals", "anchor"],
)
def test_a_bundle_changed_anywhere_fails(bundle: tuple[Path, dict[str, Any]], where: str) -> None:
    path, doc = bundle
    if where == "event body":
        doc["events"][3]["body"] = doc["events"][3]["body"].replace('"paid":3', '"paid":4')
    elif where == "ledger result":
        doc["effects"][0]["result"] = {"paid": 4}
    elif where == "job result":
        doc["job"]["result"]["doubled"] = 7
    elif where == "manifest head":
        doc["manifest"]["head"] = "0" * 64
    elif where == "approvals":
        doc["approvals"].append({"decision": "approved", "by": "someone"})
    else:
        doc["events"][0]["anchor"]["signature"] = KEY.sign(b"something else")
    path.write_text(json.dumps(doc), "utf-8")
    code, verdict = verify_bundle(path, *TRUSTED)
    assert code == 1 and not verdict["ok"], verdict
    assert verdict["check"] in ("manifest", "signature"), verdict


def test_a_bundle_signed_by_a_key_not_trusted_fails(bundle: tuple[Path, dict[str, Any]]) -> None:
    path, doc = bundle
    other = SigningKey.generate()
    path.write_text(json.dumps(sign_bundle(doc, other)), "utf-8")
    code, verdict = verify_bundle(path, *TRUSTED)
    assert code == 1 and verdict["check"] == "signature", verdict
    assert f"key {other.key_id}, which is not trusted" in verdict["problem"]
    # Trusting that key instead: the signature holds, but the journal's anchors do not.
    code, verdict = verify_bundle(path, "--public-key", other.public.text)
    assert code == 1 and (verdict["check"], verdict["seq"]) == ("anchor", 0), verdict
