"""The time rule of pushed windows (ADR 0031): appends and verification.

Forged ledgers are written through ``Store.append`` with the time checks
switched off, as a writer holding the store and the key could; verification
must then name the record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mltrail.core import chain
from mltrail.core.checkpoint import CheckpointSigner
from mltrail.core.codec import format_time
from mltrail.core.entry import Entry, sign_entry
from mltrail.errors import InputError
from mltrail.ledger.ledger import Ledger
from mltrail.ledger.stored import chain_head, new_batch
from mltrail.testing import FixedClock, MemoryStore, fixed_signer

ORIGIN = "example.org/pushed"
LOG = fixed_signer("log")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def _ledger() -> Ledger:
    return Ledger.create(
        MemoryStore(), LOG, origin=ORIGIN, clock=FixedClock(NOW), actor={"user": "a"}
    )


def _entry(kind: str, when: datetime, **body: Any) -> Entry:
    return sign_entry(
        Entry(kind, format_time(when), {"user": "a"}, body or {"text": "x"}), LOG
    )


LAPTOP = "example.org/laptop"


def _laptop_checkpoint(size: int, signer: Any = LOG, origin: str = LAPTOP) -> str:
    """A checkpoint of the pushed (laptop) ledger, signed by the key that pushes."""
    return CheckpointSigner(origin, signer).sign(size, bytes(32))


def _header(
    count: int, when: datetime = NOW, *, checkpoint: str | None = None, key: str = ""
) -> Entry:
    return _entry(
        "ledger.pushed",
        when + timedelta(seconds=30),
        origin=LAPTOP,
        key=key or LOG.key_id,
        checkpoint=checkpoint or _laptop_checkpoint(count + 1),
        count=count,
        to=count + 1,
        **{"from": 1},
    )


def _old(days: float, minutes: float = 0) -> datetime:
    return NOW - days * DAY + timedelta(minutes=minutes)


def _forge(
    ledger: Ledger, entries: list[Entry], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Append ``entries`` with the time rule switched off."""
    with monkeypatch.context() as patch:
        patch.setattr(chain, "check_entry_time", lambda *a, **k: None)
        patch.setattr(chain, "open_window", lambda *a, **k: None)

        def prepare(head: Any) -> Any:
            batch = chain.seal_entries(chain_head(head), entries, now=NOW + DAY)
            text = CheckpointSigner(ORIGIN, LOG).sign(
                batch.head.size, batch.head.root()
            )
            return new_batch(batch.with_checkpoint(text))

        ledger.store.append(prepare)


def _errors(ledger: Ledger) -> list[tuple[int | None, str]]:
    return [(p.seq, p.code) for p in ledger.verify().errors]


def test_a_header_lets_its_entries_keep_times_days_old() -> None:
    ledger = _ledger()
    ledger.append("note", {"text": "now"})
    pushed = [_entry("note", _old(3, n)) for n in range(3)]
    records = ledger.append_entries([_header(3), *pushed])
    assert [r.entry.time for r in records[1:]] == [e.time for e in pushed]
    assert ledger.verify().ok


def test_the_window_does_not_move_the_floor() -> None:
    ledger = _ledger()
    ledger.append_entries([_header(1), _entry("note", _old(3))])
    floor = ledger.time_floor()
    assert floor is not None
    assert floor[0] == format_time(NOW + timedelta(seconds=30))
    ledger.append_entries([_entry("note", NOW - timedelta(minutes=4))])
    with pytest.raises(
        InputError, match="already holds an entry dated 2026-06-01T00:00:30"
    ):
        ledger.append_entries([_entry("note", NOW - timedelta(minutes=5))])


def test_an_entry_after_the_window_is_not_back_dated() -> None:
    ledger = _ledger()
    with pytest.raises(InputError, match="the ledger already holds"):
        ledger.append_entries(
            [_header(1), _entry("note", _old(3)), _entry("note", _old(3))]
        )
    assert ledger.head().size == 1


def test_a_header_announcing_more_than_the_append_holds_is_refused() -> None:
    ledger = _ledger()
    with pytest.raises(InputError, match="announces 1 more pushed entries"):
        ledger.append_entries([_header(2), _entry("note", _old(3))])
    assert ledger.head().size == 1


@pytest.mark.parametrize(
    ("pushed", "match"),
    [
        ([_old(0, 2)], "after its header"),
        ([_old(3, 10), _old(3)], "before the previous pushed entry"),
    ],
)
def test_the_window_keeps_order_and_is_older_than_the_push(
    pushed: list[datetime], match: str
) -> None:
    ledger = _ledger()
    entries = [_entry("note", t) for t in pushed]
    with pytest.raises(InputError, match=match):
        ledger.append_entries([_header(len(entries)), *entries])


def test_a_clock_reset_is_never_pushed() -> None:
    ledger = _ledger()
    reset = _entry("clock.reset", _old(3), reason="r", newest_time=format_time(NOW))
    with pytest.raises(InputError, match="never pushed"):
        chain.seal_entries(ledger.head(), [_header(1), reset], now=NOW)


def test_verify_names_a_back_dated_entry_after_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = _ledger()
    entries = [_header(1), _entry("note", _old(3)), _entry("note", _old(3))]
    _forge(ledger, entries, monkeypatch)
    assert _errors(ledger) == [(3, "time")]


def test_verify_names_a_window_out_of_order_and_one_after_its_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = _ledger()
    late = _entry("note", NOW + timedelta(minutes=2))
    entries = [_header(3), _entry("note", _old(3, 10)), _entry("note", _old(3)), late]
    _forge(ledger, entries, monkeypatch)
    assert _errors(ledger) == [(3, "pushed-time"), (4, "pushed-time")]


def test_verify_names_a_header_whose_entries_the_ledger_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = _ledger()
    _forge(ledger, [_header(3), _entry("note", _old(3))], monkeypatch)
    assert _errors(ledger) == [(1, "pushed-count")]


BAD_CHECKPOINTS = [
    (lambda: _laptop_checkpoint(2), "", "covers 2 records"),
    (lambda: _laptop_checkpoint(4, fixed_signer("other")), "", "does not verify"),
    (lambda: _laptop_checkpoint(4, origin="example.org/x"), "", "does not verify"),
    (lambda: "not a checkpoint", "", "does not verify"),
    (lambda: _laptop_checkpoint(4), "cd" * 32, "never added"),
]


@pytest.mark.parametrize(("checkpoint", "key", "why"), BAD_CHECKPOINTS)
def test_verify_names_a_header_whose_checkpoint_does_not_vouch_for_it(
    checkpoint: Any, key: str, why: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _ledger()
    header = _header(3, checkpoint=checkpoint(), key=key)
    _forge(
        ledger, [header, *(_entry("note", _old(3, n)) for n in range(3))], monkeypatch
    )
    problems = [p for p in ledger.verify().errors if p.code == "pushed-checkpoint"]
    assert [p.seq for p in problems] == [1]
    assert why in problems[0].message


@pytest.mark.parametrize(("checkpoint", "key", "why"), BAD_CHECKPOINTS)
def test_an_append_refuses_a_header_whose_checkpoint_does_not_vouch_for_it(
    checkpoint: Any, key: str, why: str
) -> None:
    ledger = _ledger()
    header = _header(3, checkpoint=checkpoint(), key=key)
    pushed = [_entry("note", _old(3, n)) for n in range(3)]
    with pytest.raises(InputError, match=f"ledger.pushed header at seq 1: .*{why}"):
        ledger.append_entries([header, *pushed])
    assert ledger.head().size == 1
    assert ledger.verify().ok


def _authors(ledger: Ledger) -> tuple[Any, Any]:
    """Author keys of pia (whose laptop was pushed) and bob, registered."""
    from mltrail.core.keyring import make_key_proof

    pia, bob = fixed_signer("pia"), fixed_signer("bob")
    for name, signer in (("pia", pia), ("bob", bob)):
        proof = make_key_proof(signer, ORIGIN, name)
        ledger.register_key(signer.public_key, name, proof)
    return pia, bob


def _header_of(user: str, signer: Any, named: Any, count: int = 1) -> Entry:
    """A header signed by ``signer`` as ``user``, naming ``named``'s key and
    carrying a genuine checkpoint of that key's laptop ledger."""
    body = {
        "origin": LAPTOP,
        "key": named.key_id,
        "from": 1,
        "to": count + 1,
        "count": count,
        "checkpoint": _laptop_checkpoint(count + 1, named),
    }
    when = format_time(NOW + timedelta(seconds=30))
    return sign_entry(Entry("ledger.pushed", when, {"user": user}, body), signer)


def _note_of(user: str, signer: Any) -> Entry:
    return sign_entry(
        Entry("note", format_time(_old(3)), {"user": user}, {"text": "x"}), signer
    )


def test_an_append_refuses_a_header_naming_another_users_key() -> None:
    """bob copies the checkpoint of pia's laptop (every reader sees it in her
    earlier header) into a header of his own naming her key: it would move
    where her next push resumes, and put his entries in her laptop's window."""
    ledger = _ledger()
    pia, bob = _authors(ledger)
    size = ledger.head().size
    with pytest.raises(InputError, match="of 'pia', but is signed by a key of 'bob'"):
        ledger.append_entries([_header_of("bob", bob, pia), _note_of("bob", bob)])
    assert ledger.head().size == size
    ledger.append_entries([_header_of("pia", pia, pia), _note_of("pia", pia)])
    assert ledger.verify().ok


def test_verify_names_a_header_naming_another_users_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = _ledger()
    pia, bob = _authors(ledger)
    size = ledger.head().size
    _forge(ledger, [_header_of("bob", bob, pia), _note_of("bob", bob)], monkeypatch)
    problems = [p for p in ledger.verify().errors if p.code == "pushed-checkpoint"]
    assert [p.seq for p in problems] == [size]
    assert "signed by a key of 'bob'" in problems[0].message


def test_push_resumes_after_its_own_users_headers_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ledger stored before appends refused it holds bob's header naming pia's
    laptop up to seq 5: pia's push must not take it as how far she got."""
    from mltrail.ledger.push import _last_header

    ledger = _ledger()
    pia, bob = _authors(ledger)
    ledger.append_entries([_header_of("pia", pia, pia), _note_of("pia", pia)])
    _forge(
        ledger, [_header_of("bob", bob, pia, 4), *[_note_of("bob", bob)] * 4],
        monkeypatch,
    )  # fmt: skip
    found = {
        user: _last_header(ledger.store, LAPTOP, pia.key_id, user)
        for user in ("pia", "bob")
    }
    assert {user: last and last[0] for user, last in found.items()} == {
        "pia": 2,
        "bob": 5,
    }
