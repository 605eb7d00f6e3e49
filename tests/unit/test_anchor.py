"""Signing keys, trusted keys and the walk that finds the first event no signature vouches for."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from aetheris.anchor import (
    PublicKey,
    SigningKey,
    TrustedKeys,
    signing_key_from_env,
    trusted_from_env,
)
from aetheris.audit import check_anchors
from aetheris.errors import ConfigurationError
from aetheris.journal import GENESIS_HASH, Event, EventDraft, EventType, anchor_statement, seal
from aetheris.witness import Witness


def journal(key: SigningKey | None, n: int = 5, signed: tuple[int, ...] = (0, 2, 4)) -> list[Event]:
    events, prev = [], GENESIS_HASH
    for seq in range(n):
        event = seal("j", seq, prev, EventDraft(EventType.OP, {"n": seq}, seq), 1.0)
        if key is not None and seq in signed:
            event = Event(**{**_fields(event), "anchor": key.anchor("j", seq, event.hash)})
        events.append(event)
        prev = event.hash
    return events


def _fields(event: Event) -> dict[str, object]:
    return {name: getattr(event, name) for name in Event.__slots__}


def test_a_key_file_round_trips_and_names_its_public_key(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "k.pem"
    path.write_bytes(key.pem())
    again = SigningKey.load(path)
    assert again.public == key.public and again.key_id == key.key_id
    assert len(key.key_id) == 16 and key.public.text.startswith("ed25519:")
    assert PublicKey.parse(key.public.text) == key.public
    signature = key.sign(b"m")
    assert key.public.verify(signature, b"m") and not key.public.verify(signature, b"n")
    assert not key.public.verify("not base64!", b"m")


def test_a_seed_in_the_environment_or_a_path_is_a_key(tmp_path: Path) -> None:
    seed = base64.b64encode(bytes(range(32))).decode()
    key = signing_key_from_env({"AETHERIS_SIGNING_KEY": seed})
    assert key is not None and key.key_id == SigningKey.from_seed(seed).key_id
    (tmp_path / "seed.key").write_text(seed + "\n")
    from_file = signing_key_from_env({"AETHERIS_SIGNING_KEY": str(tmp_path / "seed.key")})
    assert from_file is not None and from_file.key_id == key.key_id
    assert signing_key_from_env({}) is None


@pytest.mark.parametrize(
    ("value", "says"),
    [("c2hvcnQ=", "32-byte"), ("/no/such/key.pem", "does not exist"), ("%%%", "32-byte")],
)
def test_a_bad_signing_key_is_refused_clearly(value: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        signing_key_from_env({"AETHERIS_SIGNING_KEY": value})


def test_trusted_keys_come_as_keys_or_files_of_keys(tmp_path: Path) -> None:
    a, b, c = (SigningKey.generate() for _ in range(3))
    listing = tmp_path / "trusted.txt"
    listing.write_text(f"# the old key\n{b.public.text}\n\n{c.public.text}  # the new one\n")
    trusted = trusted_from_env({"AETHERIS_TRUSTED_KEYS": f"{a.public.text}, {listing}"})
    assert set(trusted.keys) == {a.key_id, b.key_id, c.key_id}
    assert not trusted_from_env({})
    with pytest.raises(ConfigurationError, match="not an Ed25519 public key"):
        TrustedKeys.parse(["ed25519:short"])


def test_the_whole_journal_is_vouched_for_by_its_last_signature() -> None:
    key = SigningKey.generate()
    trusted = TrustedKeys.of([key.public])
    assert check_anchors("j", journal(key), trusted) == key.key_id
    # An anchor in the middle that does not hold is covered by the last one, which does.
    events = journal(key)
    assert events[2].anchor is not None
    events[2] = Event(**{**_fields(events[2]), "anchor": key.anchor("j", 2, "0" * 64)})
    assert check_anchors("j", events, trusted) == key.key_id


def test_the_first_event_not_vouched_for_is_reported() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    trusted = TrustedKeys.of([key.public])
    cut = journal(key, n=4, signed=(0, 2))  # the last event carries no anchor
    assert check_anchors("j", cut, trusted) == (
        3,
        pytest.approx(check_anchors("j", cut, trusted)[1]),
    )
    found = check_anchors("j", cut, trusted)
    assert isinstance(found, tuple)
    seq, why = found
    assert seq == 3 and "carries no anchor" in why
    mixed = journal(key)
    mixed[4] = Event(**{**_fields(mixed[4]), "anchor": other.anchor("j", 4, mixed[4].hash)})
    found = check_anchors("j", mixed, trusted)
    assert isinstance(found, tuple)
    seq, why = found
    assert seq == 3 and f"key {other.key_id}, which is not trusted" in why
    found = check_anchors("j", journal(None), trusted)
    assert isinstance(found, tuple)
    seq, why = found
    assert seq == 0 and "no event carries an anchor" in why


def test_an_anchor_statement_names_the_job_seq_and_hash() -> None:
    assert (
        anchor_statement("j", 3, "ab") == b'{"aetheris":"anchor/1","hash":"ab","job":"j","seq":3}'
    )


def test_a_witness_remembers_the_furthest_it_saw(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    witness = Witness.load(path)
    witness.record("j", 5, "h5")
    witness.record("j", 3, "h3")  # never backwards
    witness.save()
    again = Witness.load(path)
    assert again.seen("j") is not None and again.seen("j") == witness.seen("j")
    assert again.jobs["j"].events == 5
    path.write_text("{}")
    with pytest.raises(ConfigurationError, match="not a readable witness file"):
        Witness.load(path)
