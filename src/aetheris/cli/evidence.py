"""Evidence: ``verify`` (a job, every job, or a bundle offline), ``export`` (a bundle, signed)
and ``keys signing create|public`` (the Ed25519 keys that anchor journals and sign bundles).

Whatever a verification trusts comes from outside the database: ``--public-key`` (repeatable),
``AETHERIS_TRUSTED_KEYS``, and the public half of ``AETHERIS_SIGNING_KEY`` when this process
has it. Without any, a verdict says *not anchored* and claims no more than the hash chain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from aetheris.anchor import (
    PublicKey,
    SigningKey,
    TrustedKeys,
    signing_key_from_env,
    trusted_from_env,
)
from aetheris.audit import Verdict
from aetheris.bundle import sign_bundle, verify_bundle
from aetheris.cli import render
from aetheris.cli.backend import Backend, run_with_backend, with_backend
from aetheris.cli.base import Env, database_option, json_option, main, pass_env, with_app
from aetheris.cli.serving import keys
from aetheris.errors import AetherisError, ConfigurationError
from aetheris.recording import journal_doc
from aetheris.witness import Witness

if TYPE_CHECKING:
    from aetheris.app import App


def _trusted(given: tuple[str, ...]) -> TrustedKeys:
    """``--public-key`` values, ``AETHERIS_TRUSTED_KEYS`` and this process's signing key's."""
    try:
        found = [*TrustedKeys.parse(given).keys.values(), *trusted_from_env().keys.values()]
        own = signing_key_from_env()
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--public-key") from exc
    return TrustedKeys.of([*found, *([own.public] if own else [])])


@main.command()
@click.argument("job_id", required=False)
@click.option(
    "--all", "everything", is_flag=True, help="Every job (through a server: its tenant's)."
)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="KEY",
    help="A public key to trust (ed25519:…, or a file of keys); repeatable. "
    "Also AETHERIS_TRUSTED_KEYS.",
)
@click.option(
    "--witness",
    type=click.Path(dir_okay=False),
    help="A file of what earlier verifications saw, kept away from the database: a journal "
    "cut short since is caught; updated with what verifies now.",
)
@click.option(
    "--bundle",
    "bundle_path",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="Check an evidence bundle offline (no database), or - for standard input.",
)
@json_option
@database_option
@pass_env
def verify(
    env: Env,
    job_id: str | None,
    everything: bool,
    public_keys: tuple[str, ...],
    witness: str | None,
    bundle_path: str | None,
    as_json: bool,
) -> None:
    """Verify a job: its hash chain, the signatures that anchor it, its blobs, and its status,
    result, error and ledger against its journal; exit 1 at the first problem. Never repairs.

    With trusted keys, a journal that no trusted signature vouches for fails; without any,
    the verdict says "not anchored". JOB_ID, --all or --bundle FILE."""
    if sum((job_id is not None, everything, bundle_path is not None)) != 1:
        raise click.UsageError("give one of JOB_ID, --all or --bundle FILE")
    trusted = _trusted(public_keys)
    if bundle_path is not None:
        if witness is not None:
            raise click.UsageError("--witness checks a database's journals, not a bundle")
        _verify_bundle(bundle_path, trusted, as_json)
        return
    seen = Witness.load(witness) if witness is not None else None
    run_with_backend(
        env, _verify_jobs, job_id=job_id, trusted=trusted, witness=seen, as_json=as_json
    )


async def _verify_jobs(
    backend: Backend,
    job_id: str | None,
    trusted: TrustedKeys,
    witness: Witness | None,
    as_json: bool,
) -> None:
    ids = [job_id] if job_id is not None else await backend.job_ids()
    verdicts = [await backend.verify(i, trusted, witness) for i in ids]
    if job_id is None and witness is not None:
        verdicts += await backend.gone(witness, set(ids), trusted)
    if witness is not None:
        for v in verdicts:
            if v.ok and v.job_id in ids:
                witness.record(v.job_id, v.events, v.head)
            elif v.ok:  # pruned: nothing left to witness
                witness.forget(v.job_id)
        await asyncio.to_thread(witness.save)
    if as_json:
        shown = [dataclasses.asdict(v) for v in verdicts]
        render.print_json(shown[0] if job_id is not None else shown)
    else:
        for v in verdicts:
            _echo(v, prefix=f"{v.job_id}: " if job_id is None else "")
        if job_id is None:
            broken = sum(not v.ok for v in verdicts)
            click.echo(f"{len(verdicts)} jobs: {len(verdicts) - broken} ok, {broken} broken")
    if not all(v.ok for v in verdicts):
        sys.exit(1)


def _echo(v: Verdict, prefix: str = "") -> None:
    if not v.ok:
        where = f" at seq {v.seq}" if v.seq is not None else ""
        where += f", ledger position {v.position}" if v.position is not None else ""
        click.echo(f"{prefix}BROKEN ({v.check}){where}: {v.problem}", err=True)
    elif v.note and v.note.startswith("pruned"):
        click.echo(
            f"{prefix}ok: {v.note}"
            + (f", tombstone signed by key {v.key_id}" if v.anchored else "")
        )
    elif v.anchored:
        click.echo(f"{prefix}ok: {v.events} events, head {v.head}, anchored by key {v.key_id}")
    else:
        click.echo(f"{prefix}ok: {v.events} events, head {v.head}, NOT ANCHORED (chain only)")
        click.echo(f"{prefix}not anchored: {v.note}", err=True)


def _verify_bundle(path: str, trusted: TrustedKeys, as_json: bool) -> None:
    text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        result = verify_bundle(doc, trusted)
    except (ValueError, AetherisError) as exc:
        raise click.ClickException(f"{path} is not a readable evidence bundle: {exc}") from exc
    v = result.verdict
    if as_json:
        view = {**dataclasses.asdict(v), "signed_by": result.signed_by}
        render.print_json({**view, "signature_note": result.signature_note})
    else:
        _echo(v)
        if v.ok and result.signed_by:
            click.echo(f"the bundle is signed by key {result.signed_by}")
        elif v.ok and result.signature_note:
            click.echo(f"NOT SIGNED BY A TRUSTED KEY: {result.signature_note}", err=True)
    if not v.ok:
        sys.exit(1)


@main.command()
@click.argument("job_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    required=True,
    help="The file to write, or - for standard output.",
)
@click.option(
    "--sign",
    "sign_with",
    type=click.Path(exists=True, dir_okay=False),
    help="Sign the bundle's manifest with this key file (default: AETHERIS_SIGNING_KEY, or "
    "through a server, the server's key).",
)
@click.option(
    "--journal",
    "as_journal",
    is_flag=True,
    help="Write a saved journal (readable events, for replay tests: aetheris replay --journal, "
    "aetheris.testing.Replayer) instead of an evidence bundle.",
)
@with_backend()
async def export(
    backend: Backend, job_id: str, output: str, sign_with: str | None, as_journal: bool
) -> None:
    """Write a job's evidence bundle: journal (exact bytes, anchors), ledger, approvals with
    who and when, blobs, a manifest of their hashes, and a signature of the manifest. With
    --journal, a saved journal to replay in tests."""
    target = None if output == "-" else Path(output)
    if target is not None and not target.parent.exists():
        raise click.BadParameter(f"the folder {target.parent} does not exist", param_hint="-o")
    if as_journal and sign_with is not None:
        raise click.UsageError("--sign signs an evidence bundle; a saved journal is not signed")
    key = SigningKey.load(sign_with) if sign_with is not None else None
    doc = await backend.export(job_id)
    if as_journal:
        doc = journal_doc(doc)
    elif key is not None:
        doc = sign_bundle(doc, key)
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    if target is None:
        click.echo(text)
        return
    await asyncio.to_thread(target.write_text, text, "utf-8")
    if as_journal:
        click.echo(f"wrote {output}: {len(doc['events'])} events, head {doc['head']}")
        return
    manifest = doc["manifest"]
    signed = doc.get("signature", {}).get("key_id")
    click.echo(
        f"wrote {output}: {manifest['events']} events, head {manifest['head']}, "
        + (f"signed by key {signed}" if signed else "not signed")
    )


@keys.group("signing")
def signing() -> None:
    """Ed25519 keys that anchor journals and sign bundles (the database never holds them)."""


@signing.command("create")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="The key file."
)
@json_option
def signing_create(output: str, as_json: bool) -> None:
    """Make a signing key in a new file (mode 0600) and print its public key.

    Give the file to workers and the server (AETHERIS_SIGNING_KEY=FILE), the public key to
    verifiers (AETHERIS_TRUSTED_KEYS or --public-key)."""
    key = SigningKey.generate()
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.BadParameter(
            f"{output} exists: a key is never overwritten", param_hint="-o"
        ) from None
    except OSError as exc:
        raise click.BadParameter(f"cannot create {output}: {exc}", param_hint="-o") from None
    with os.fdopen(fd, "wb") as out:
        out.write(key.pem())
    _show_public(key.public, as_json, f"wrote {output}: keep it secret, out of the database")


@signing.command("public")
@click.argument("key_file", type=click.Path(exists=True, dir_okay=False))
@json_option
def signing_public(key_file: str, as_json: bool) -> None:
    """Print the public key (and its id) of a signing key file."""
    try:
        key = SigningKey.load(key_file)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="KEY_FILE") from exc
    _show_public(key.public, as_json, None)


def _show_public(public: PublicKey, as_json: bool, note: str | None) -> None:
    if as_json:
        render.print_json({"key_id": public.key_id, "public_key": public.text})
        return
    if note:
        click.echo(note, err=True)
    click.echo(f"key id      {public.key_id}")
    click.echo(f"public key  {public.text}")


__all__ = ["export", "signing", "verify"]


@main.command()
@click.argument("job_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (it cannot be undone).")
@json_option
@with_app()
async def shred(app: App, job_id: str, yes: bool, as_json: bool) -> None:
    """Destroy an ended job's payload keys (crypto-shredding): its input, results, errors,
    signals and model calls become unreadable for good ("[shredded]"), while its journal
    still verifies. The keys are in AETHERIS_PAYLOAD_KEY_DIR, never in the database."""
    if not yes and not click.confirm(
        f"Destroy the payload keys of job {job_id}? Its content cannot be recovered", err=True
    ):
        raise click.ClickException("nothing was shredded")
    done = await app.shred(job_id)
    if as_json:
        render.print_json({"job_id": done.job_id, "shredded": True, "keys": list(done.keys)})
        return
    keys = ", ".join(done.keys) or "none left (shredded before)"
    click.echo(f"job {job_id} is shredded: its payloads are unreadable; keys destroyed: {keys}")
