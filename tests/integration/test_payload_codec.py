"""Encrypted payloads on SQLite and PostgreSQL: unreadable in the database (rows read with the
drivers), verified without the key, resumed after a worker process is killed, shredded for
good while the journal still verifies; secret fields never shown to people."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import httpx
import psycopg
import pytest

from aetheris import App, JobStatus
from aetheris.api import create_api
from aetheris.audit import verify_job
from aetheris.bundle import export_bundle
from aetheris.codec import KEY_DIR_ENV, EncryptionCodec, FileKeyStore, PayloadScope
from aetheris.errors import ConfigurationError, Conflict, IdempotencyConflict, PayloadUnreadable
from aetheris.keys import create_key
from aetheris.recording import journal_doc
from aetheris.replay import replay
from aetheris.store.sqlite import sqlite_path
from aetheris.testing import Replayer, running_worker
from tests.processes import aetheris_cli, lines, start_worker, stop

from .codec_app import build
from .helpers import wait_for

HERE = Path(__file__).parent
PLAIN = ["SSN-123-45", "ORDER-77", "4242-4242-CARD", "PAYMENT-RECEIPT", "NOTE-TEXT"]
INPUT = {"order_id": "ORDER-77", "ssn": "SSN-123-45"}


def stored_text(url: str) -> str:
    """Every row of the tables that hold payloads, as the database driver returns them."""
    tables = ("jobs", "events", "effects", "signals", "blobs")
    if url.startswith("sqlite"):
        with sqlite3.connect(sqlite_path(url)[0]) as db:
            rows = [r for t in tables for r in db.execute(f"SELECT * FROM {t}")]
    else:
        with psycopg.connect(url) as db:
            rows = [r for t in tables for r in db.execute(f"SELECT * FROM {t}")]
    return "\n".join(
        repr(bytes(v).decode("utf-8", "replace") if isinstance(v, bytes | memoryview) else v)
        for row in rows
        for v in row
    )


def keyed(app: App, keys: Path) -> App:
    app.codec = EncryptionCodec(FileKeyStore(keys))
    app.payloads.codec = app.codec
    return app


async def test_payloads_are_ciphertext_in_the_database_and_verify_without_the_key(
    durable_url: str, tmp_path: Path
) -> None:
    app = keyed(build(durable_url), tmp_path / "keys")
    handle = await app.start("checkout", INPUT)
    async with running_worker(app):
        await wait_for(app, handle.job_id, JobStatus.PARKED)
        await app.signal(handle.job_id, "note", {"text": "NOTE-TEXT"})
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result["receipt"] == "paid 42 from PAYMENT-RECEIPT"
    assert job.result["ssn"] == job.result["card"] == "[redacted]"  # a reader for people
    stored = stored_text(durable_url)
    assert handle.job_id in stored and '"$codec"' in stored
    for text in PLAIN:
        assert text not in stored, f"{text!r} is in the database in clear"
    # The code replays it, from the database and from a saved journal of the stored bytes
    # (secrets whole, as the worker read them); without the key, the saved journal is refused.
    assert (await replay(app, handle.job_id)).outcome == "matched"
    worker_view = await app.open_store(view="reveal")  # as a worker reads it at a claim
    journal = await worker_view.journal(handle.job_id)
    assert [r.data for r in journal] == [e.data for e in await worker_view.events(handle.job_id)]
    assert "PAYMENT-RECEIPT" in json.dumps([r.data for r in journal])
    saved = tmp_path / "journal.json"
    bundle = await export_bundle(await app.open_store(view="raw"), handle.job_id)
    saved.write_text(json.dumps(journal_doc(bundle)))
    assert "SSN-123-45" not in saved.read_text()
    assert (await Replayer(app).replay(saved)).outcome == "matched"
    with pytest.raises(ConfigurationError, match=KEY_DIR_ENV):
        await Replayer(build(durable_url)).replay(saved)
    # Another App, with no key at all, verifies the chain and the rows against it.
    bare = App(durable_url)
    verdict = await verify_job(await bare.open_store(view="raw"), handle.job_id, bare.trusted_keys)
    assert verdict.ok, verdict
    shown = await bare.get_job(handle.job_id)
    assert shown.input == "[encrypted]" and shown.result == "[encrypted]"
    with pytest.raises(ConfigurationError, match=KEY_DIR_ENV):
        await (await bare.open_store(view="reveal")).get_job(handle.job_id)
    # A key folder that is not the one the job was written with: a clear error.
    other = keyed(App(durable_url), tmp_path / "other-keys")
    with pytest.raises(ConfigurationError, match="is not in"):
        await other.get_job(handle.job_id)
    await bare.close()
    await other.close()
    await app.close()


async def test_a_killed_worker_process_resumes_an_encrypted_job(
    durable_url: str, tmp_path: Path
) -> None:
    keys, world = tmp_path / "keys", tmp_path / "world.log"
    env = {KEY_DIR_ENV: str(keys), "CODEC_WORLD": str(world)}
    app = keyed(build(durable_url), keys)
    handle = await app.start("checkout", INPUT)
    first = start_worker(
        "codec_app:app", durable_url, tmp_path, cwd=HERE, env=env, crash_at="after_outcome:pay"
    )
    try:
        first.wait(60)
        assert first.returncode == -signal.SIGKILL, "the worker did not die at the crash point"
        second = start_worker("codec_app:app", durable_url, tmp_path, cwd=HERE, env=env)
        try:
            await wait_for(app, handle.job_id, JobStatus.PARKED, timeout=60)
            await app.signal(handle.job_id, "note", {"text": "NOTE-TEXT"})
            job = await wait_for(app, handle.job_id, timeout=60)
        finally:
            stop(second)
    finally:
        if first.poll() is None:
            first.kill()
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result["note"] == {"text": "NOTE-TEXT"}
    assert lines(world) == ["pay 42"], "the payment was dispatched again after the crash"
    for text in PLAIN:
        assert text not in stored_text(durable_url)
    # The worker had the secret card number (it paid with it); people never see it.
    revealed = await (await app.open_store(view="reveal")).get_job(handle.job_id)
    assert revealed is not None and revealed.result["card"] == "4242-4242-CARD"
    assert revealed.result["ssn"] == "SSN-123-45"
    await app.close()


async def test_a_shredded_job_still_verifies_reads_shredded_and_never_runs(
    durable_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    app = keyed(build(durable_url), keys)
    handle = await app.start("checkout", INPUT)
    async with running_worker(app):
        await wait_for(app, handle.job_id, JobStatus.PARKED)
        with pytest.raises(Conflict, match="has not ended"):
            await app.shred(handle.job_id)  # a job that may still run keeps its keys
        await app.signal(handle.job_id, "note", {"text": "NOTE-TEXT"})
        await wait_for(app, handle.job_id)
    before = stored_text(durable_url)
    done = await app.shred(handle.job_id)
    assert len(done.keys) == 1 and not list(keys.rglob("*.key"))
    assert stored_text(durable_url) == before  # nothing in the database changed
    job = await app.get_job(handle.job_id)
    assert job.input == job.result == "[shredded]"
    events = await (await app.open_store()).events(handle.job_id)
    ops = [e.data for e in events if e.type == "op"]
    assert ops and all(op["result"] == "[shredded]" for op in ops)
    effects = await (await app.open_store()).effects(job_id=handle.job_id)
    assert [e.result for e in effects] == ["[shredded]"]
    verdict = await verify_job(await app.open_store(view="raw"), handle.job_id, app.trusted_keys)
    assert verdict.ok, verdict
    # Through the CLI, as an operator runs it, with the key folder in the environment.
    monkeypatch.setenv(KEY_DIR_ENV, str(keys))
    shown = aetheris_cli(durable_url, "jobs", "show", handle.job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["result"] == "[shredded]"
    assert aetheris_cli(durable_url, "verify", handle.job_id).returncode == 0
    await app.close()


async def test_a_job_whose_keys_are_gone_fails_when_claimed_instead_of_running(
    sqlite_url: str, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    app = keyed(build(sqlite_url), keys)
    handle = await app.start("checkout", INPUT)
    job = await app.get_job(handle.job_id)
    assert isinstance(app.codec, EncryptionCodec)
    app.codec.keys.shred(PayloadScope(job.tenant, job.id))  # as if by hand, while pending
    async with running_worker(app):
        ended = await wait_for(app, handle.job_id)
    assert ended.status is JobStatus.FAILED
    assert ended.error is not None and ended.error["type"] == "PayloadShredded"
    await app.close()


async def test_shred_on_the_command_line(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    monkeypatch.setenv(KEY_DIR_ENV, str(keys))
    app = build(sqlite_url)
    handle = await app.start("checkout", INPUT)
    await app.cancel(handle.job_id)
    done = aetheris_cli(sqlite_url, "shred", handle.job_id, "--json", "--yes")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["job_id"] == handle.job_id and report["shredded"] is True
    assert len(report["keys"]) == 1 and not list(keys.rglob("*.key"))
    assert (await app.get_job(handle.job_id)).input == "[shredded]"
    monkeypatch.delenv(KEY_DIR_ENV)
    no_codec = aetheris_cli(sqlite_url, "shred", handle.job_id, "--yes")
    assert no_codec.returncode == 1 and "no payload codec" in no_codec.stderr
    await app.close()


async def test_secret_fields_are_absent_from_every_read_for_people(
    sqlite_url: str, tmp_path: Path
) -> None:
    """No codec here: the secret fields are marked in the journal, and every reader but the
    worker shows them redacted: the CLI's show, trace and journal export, the HTTP API."""
    app = build(sqlite_url)
    handle = await app.start("checkout", INPUT)
    async with running_worker(app):
        await wait_for(app, handle.job_id, JobStatus.PARKED)
        await app.signal(handle.job_id, "note", {"text": "NOTE-TEXT"})
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    secrets = ("SSN-123-45", "4242-4242-CARD")
    outputs = {
        "show": aetheris_cli(sqlite_url, "jobs", "show", handle.job_id, "--json"),
        "trace": aetheris_cli(sqlite_url, "trace", handle.job_id, "--json"),
        "trace-table": aetheris_cli(sqlite_url, "trace", handle.job_id, "--wide"),
        "effects": aetheris_cli(sqlite_url, "effects", "list", "--json"),
    }
    for name, done in outputs.items():
        assert done.returncode == 0, (name, done.stderr)
        for secret in secrets:
            assert secret not in done.stdout, f"{secret} shown by {name}"
    assert "[redacted]" in outputs["show"].stdout
    assert "ORDER-77" in outputs["show"].stdout  # what is not secret is shown
    _, token = await create_key(await app.open_store(), "admin", "default")
    transport = httpx.ASGITransport(create_api(app, poll_interval=0.02))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
        for path in ("", "/events", "/timeline"):
            answer = await client.get(f"/v1/jobs/{handle.job_id}{path}", headers=headers)
            assert answer.status_code == 200, answer.text
            for secret in secrets:
                assert secret not in answer.text, f"{secret} in GET {path}"
    revealed = await (await app.open_store(view="reveal")).get_job(handle.job_id)
    assert revealed is not None and revealed.result["ssn"] == "SSN-123-45"
    # The program that started the job gets its result whole; a read for people does not.
    assert (await handle.result(timeout=5))["ssn"] == "SSN-123-45"
    assert (await app.get_job(handle.job_id)).result["ssn"] == "[redacted]"
    await app.close()


def test_keys_rotate_and_altered_ciphertext_is_refused(tmp_path: Path) -> None:
    store = FileKeyStore(tmp_path)
    codec = EncryptionCodec(store)
    scope = PayloadScope("acme", "job-1")
    old = codec.encode(b'"first"', scope)
    assert codec.encode(b'"first"', scope) == old  # deterministic: a row matches its event
    new_id = store.rotate(scope)
    assert new_id.endswith("/2")
    new = codec.encode(b'"first"', scope)
    assert new != old and codec.decode(old) == codec.decode(new) == b'"first"'
    tampered = old[:-1] + bytes([old[-1] ^ 1])
    with pytest.raises(PayloadUnreadable, match="does not decrypt"):
        codec.decode(tampered)
    tenant_keys = FileKeyStore(tmp_path / "t", per="tenant")
    with pytest.raises(ConfigurationError, match="per tenant"):
        tenant_keys.shred(scope)


async def test_idempotent_starts_and_forks_of_encrypted_jobs(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Keys per job: a second start with the same key finds the first job (its input compared
    in clear); a fork is encrypted under its own key and keeps the origin's secret fields."""
    app = keyed(build(sqlite_url), tmp_path / "keys")
    first = await app.start("checkout", INPUT, idempotency_key="k1")
    again = await app.start("checkout", INPUT, idempotency_key="k1")
    assert again.job_id == first.job_id
    with pytest.raises(IdempotencyConflict, match="different agent or input"):
        await app.start("checkout", {**INPUT, "ssn": "other"}, idempotency_key="k1")
    async with running_worker(app):
        await wait_for(app, first.job_id, JobStatus.PARKED)
        fork = await app.fork(first.job_id, 1)
        await wait_for(app, fork.job_id, JobStatus.PARKED)
        await app.signal(fork.job_id, "note", {"text": "NOTE-TEXT"})
        ended = await wait_for(app, fork.job_id)
    assert ended.status is JobStatus.SUCCEEDED, ended.error
    assert ended.result["card"] == "[redacted]"
    revealed = await (await app.open_store(view="reveal")).get_job(fork.job_id)
    assert revealed is not None and revealed.result["card"] == "4242-4242-CARD"
    assert len(list((tmp_path / "keys").rglob("*.key"))) >= 2  # the fork has its own key
    for text in PLAIN:
        assert text not in stored_text(sqlite_url)
    await app.close()
