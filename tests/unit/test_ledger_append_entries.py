"""``Ledger.append_entries``: entries signed by their author elsewhere."""

from __future__ import annotations

import pytest

from mltrail.core.entry import Entry, Signature, sign_entry
from mltrail.errors import ConfigError, InputError
from mltrail.ledger.ledger import Ledger
from mltrail.testing import FixedClock, MemoryStore, fixed_signer
from mltrail.values import replace


def _ledger() -> Ledger:
    return Ledger.create(
        MemoryStore(), fixed_signer(), origin="example.org/t", clock=FixedClock()
    )


def _note(ledger: Ledger, text: str = "hi") -> Entry:
    time = ledger.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return Entry("note", time, {"user": "alice"}, {"text": text})


def test_a_signed_entry_from_a_valid_key_is_appended_byte_for_byte() -> None:
    ledger = _ledger()
    entry = sign_entry(_note(ledger), fixed_signer())
    (record,) = ledger.append_entries([entry])
    assert record.seq == 1
    assert ledger.record(1).entry.sig == entry.sig
    assert ledger.verify().ok


def test_an_entry_whose_signature_does_not_verify_is_refused() -> None:
    ledger = _ledger()
    entry = sign_entry(_note(ledger), fixed_signer())
    forged = replace(entry, body={"text": "changed"}, signed_bytes=None)
    with pytest.raises(InputError, match="signature does not verify"):
        ledger.append_entries([forged])
    assert ledger.head().size == 1


def test_an_entry_signed_by_an_unknown_key_is_refused() -> None:
    ledger = _ledger()
    entry = sign_entry(_note(ledger), fixed_signer("someone-else"))
    with pytest.raises(ConfigError, match="never added"):
        ledger.append_entries([entry])


def test_unsigned_and_key_kinds_are_refused() -> None:
    ledger = _ledger()
    with pytest.raises(InputError, match="unsigned"):
        ledger.append_entries([_note(ledger)])
    key = replace(
        _note(ledger), kind="key.revoked", sig=Signature("0" * 64, "A" * 86 + "==")
    )
    with pytest.raises(InputError, match="cannot be appended by an author"):
        ledger.append_entries([key])


def test_a_batch_is_all_or_nothing() -> None:
    ledger = _ledger()
    good = sign_entry(_note(ledger), fixed_signer())
    bad = replace(
        sign_entry(_note(ledger, "b"), fixed_signer()),
        body={"text": "x"},
        signed_bytes=None,
    )
    with pytest.raises(InputError):
        ledger.append_entries([good, bad])
    assert ledger.head().size == 1


def test_a_key_change_made_by_another_writer_is_seen_by_the_next_append() -> None:
    """append_entries keeps its key ring between calls; the key epoch checked
    under the append lock catches a key revoked or added meanwhile elsewhere."""
    from mltrail.core.keyring import make_key_proof
    from mltrail.core.signing import Ed25519Signer

    store = MemoryStore()
    server = Ledger.create(
        store, fixed_signer(), origin="example.org/t", clock=FixedClock()
    )
    other = Ledger(store, fixed_signer(), origin="example.org/t", clock=FixedClock())
    alice = Ed25519Signer(bytes(range(32)))
    other.register_key(
        alice.public_key, "alice", make_key_proof(alice, "example.org/t", "alice")
    )
    server.append_entries(
        [sign_entry(_note(server, "one"), alice)]
    )  # added elsewhere: seen
    other.revoke_key(alice.key_id, reason="left")
    with pytest.raises((ConfigError, InputError), match="revoked"):
        server.append_entries([sign_entry(_note(server, "two"), alice)])
    assert server.verify().ok
