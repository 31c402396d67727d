"""The Ledger API over the memory store, fixed keys and a fixed clock; and ledger homes."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mltrail.core.checkpoint import parse_signed_checkpoint, verify_checkpoint
from mltrail.core.merkle import verify_consistency, verify_inclusion
from mltrail.errors import (
    AuthError,
    ConfigError,
    InputError,
    ProofError,
    SchemaError,
    StoreError,
)
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.testing import FixedClock, MemoryStore, fixed_signer

ORIGIN = "example.org/unit-ledger"
SIGNER = fixed_signer("ledger-api-key")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BLOB = b"some attachment bytes\n" * 10


@pytest.fixture
def ledger() -> Ledger:
    return Ledger.create(
        MemoryStore(),
        SIGNER,
        origin=ORIGIN,
        clock=FixedClock(T0),
        actor={"user": "unit"},
    )


def _snapshot(ledger: Ledger) -> tuple:
    store = ledger.store
    return (store.head(), list(store.rows()), store.checkpoints())


@pytest.fixture
def unchanged(ledger: Ledger) -> Callable[[], None]:
    """Call at the end of a test: asserts the store is exactly as it was at its start."""
    ledger.append("note", {"text": "before"})
    before = _snapshot(ledger)

    def check() -> None:
        assert _snapshot(ledger) == before

    return check


# -- what gets written ---------------------------------------------------------


def test_create_writes_genesis_and_checkpoint(ledger: Ledger) -> None:
    [genesis] = list(ledger.records())
    assert genesis.seq == 0
    assert genesis.prev == "0" * 64
    assert genesis.entry.kind == "key.added"
    assert genesis.entry.body["key"] == SIGNER.key_id
    assert genesis.entry.sig.key == SIGNER.key_id
    assert ledger.latest_checkpoint()[0] == 1
    assert ledger.store.meta() == {"origin": ORIGIN, "format": "mltrail/1"}
    assert ledger.trusted_key == SIGNER.key_id


def test_create_refuses_a_store_with_records(ledger: Ledger) -> None:
    with pytest.raises(InputError, match="already holds a ledger"):
        Ledger.create(ledger.store, SIGNER, origin=ORIGIN)


@pytest.mark.parametrize("origin", ["", "two words", "a+b", "{json", "line\nbreak"])
def test_create_refuses_bad_origin_before_writing(origin: str) -> None:
    store = MemoryStore()
    with pytest.raises(InputError, match="invalid ledger origin"):
        Ledger.create(store, SIGNER, origin=origin)
    assert store.head().size == 0
    assert store.meta() == {}


def test_append_returns_the_stored_record(ledger: Ledger) -> None:
    first = ledger.append("note", {"text": "hello"}, run="run-1")
    second = ledger.append("note", {"text": "again", "refers_to": first.seq})
    assert (first.seq, second.seq) == (1, 2)
    assert second.prev == first.compute_hash().hex()
    assert first.entry.run == "run-1"
    assert second.entry.run is None
    assert first.entry.actor == {"user": "unit"}
    assert first.entry.sig.key == SIGNER.key_id
    assert first.entry.time.endswith("Z")
    assert datetime.fromisoformat(first.entry.time) < datetime.fromisoformat(
        second.entry.time
    )
    assert ledger.record(1) == first
    assert ledger.record(2) == second
    assert ledger.verify().ok


def test_records_and_record(ledger: Ledger) -> None:
    for i in range(6):
        ledger.append("note", {"text": f"n{i}"})
    texts = [r.entry.body.get("text") for r in ledger.records()]
    assert texts == [None, "n0", "n1", "n2", "n3", "n4", "n5"]
    assert [r.seq for r in ledger.records(2, 5)] == [2, 3, 4]
    assert [r.seq for r in ledger.records(5)] == [5, 6]
    assert ledger.record(4).entry.body == {"text": "n3"}
    with pytest.raises(InputError, match=r"no record with seq 7 \(the ledger has 7\)"):
        ledger.record(7)


# -- validation: errors are clear and nothing is written ----------------------


def test_unknown_kind(ledger: Ledger, unchanged: Callable[[], None]) -> None:
    with pytest.raises(
        SchemaError, match=r"unknown kind 'run\.bogus'; known kinds: .*note"
    ):
        ledger.append("run.bogus", {"text": "x"})
    unchanged()


def test_invalid_kind_name(ledger: Ledger, unchanged: Callable[[], None]) -> None:
    with pytest.raises(SchemaError, match="not a valid kind name"):
        ledger.append("Not A Kind!", {"text": "x"})
    unchanged()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'text' is a required property"),
        ({"text": 5}, "text: 5 is not of type 'string'"),
        ({"text": "x", "refers_to": -1}, "refers_to: -1 is less than the minimum of 0"),
        ({"text": "x", "refers_to": "3"}, "refers_to: '3' is not of type 'integer'"),
        (
            {"text": "x", "attachments": [{"blob": "md5:00", "size": 1}]},
            "attachments/0/blob: 'md5:00' does not match",
        ),
        (
            {"text": "x", "attachments": {"blob": "x"}},
            "attachments: .* is not of type 'array'",
        ),
    ],
)
def test_body_off_schema(
    ledger: Ledger, unchanged: Callable[[], None], body: dict, message: str
) -> None:
    with pytest.raises(
        SchemaError, match="body of note does not match its schema"
    ) as info:
        ledger.append("note", body)
    assert isinstance(info.value, InputError)
    assert re.search(message, str(info.value)), str(info.value)
    unchanged()


def test_run_id_checked(ledger: Ledger, unchanged: Callable[[], None]) -> None:
    with pytest.raises(SchemaError, match="is not 1 to 128 characters"):
        ledger.append("note", {"text": "x"}, run="r" * 129)
    unchanged()


@pytest.mark.parametrize("kind", ["key.added", "key.revoked"])
def test_key_kinds_refused(
    ledger: Ledger, unchanged: Callable[[], None], kind: str
) -> None:
    body = {"key": "0" * 64, "reason": "sneaky"}
    with pytest.raises(
        InputError, match=rf"{kind} entries are written by `mltrail keys`"
    ):
        ledger.append(kind, body)
    with pytest.raises(InputError, match="not appended directly"):
        ledger.append_many([Draft("note", {"text": "ok"}), Draft(kind, body)])
    unchanged()


def test_blob_referenced_but_not_stored(
    ledger: Ledger, unchanged: Callable[[], None]
) -> None:
    ref = {"blob": "sha256:" + "ab" * 32, "size": 3}
    with pytest.raises(
        InputError,
        match=r"body\.attachments\[0\] references blob "
        r"sha256:abab.* \(3 bytes\) which is not stored",
    ) as info:
        ledger.append("note", {"text": "x", "attachments": [ref]})
    assert "put_blob" in info.value.hint
    unchanged()


def test_blob_stored_with_other_size(
    ledger: Ledger, unchanged: Callable[[], None]
) -> None:
    ref = ledger.put_blob(BLOB)
    wrong = {**ref, "size": ref["size"] + 1}
    with pytest.raises(InputError, match="which is not stored"):
        ledger.append("note", {"text": "x", "attachments": [wrong]})
    unchanged()


def test_blob_stored_then_referenced(ledger: Ledger) -> None:
    ref = ledger.put_blob(BLOB)
    assert ref == {"blob": ref["blob"], "size": len(BLOB)}
    assert ref["blob"].startswith("sha256:")
    assert ledger.put_blob(BLOB) == ref
    record = ledger.append(
        "note", {"text": "x", "attachments": [{**ref, "name": "a.txt"}]}
    )
    assert record.entry.body["attachments"][0]["blob"] == ref["blob"]
    assert ledger.get_blob(ref["blob"]) == BLOB
    report = ledger.verify()
    assert report.ok
    assert report.blobs_checked == 1
    with pytest.raises(InputError, match="is not in this ledger"):
        ledger.get_blob("sha256:" + "00" * 32)


class _JumpClock:
    """Reads ``first`` once (when the entry is dated), then ``then`` (when it is sealed)."""

    def __init__(self, first: datetime, then: datetime) -> None:
        self._times = [first]
        self._then = then

    def now(self) -> datetime:
        return self._times.pop() if self._times else self._then


def test_entry_dated_in_the_future_refused(
    ledger: Ledger, unchanged: Callable[[], None]
) -> None:
    now = T0 + timedelta(hours=1)
    ahead = Ledger(
        ledger.store,
        SIGNER,
        origin=ORIGIN,
        clock=_JumpClock(now + timedelta(days=30), now),
    )
    with pytest.raises(InputError, match="is in the future") as info:
        ahead.append("note", {"text": "from the future"})
    assert "clock" in info.value.hint
    unchanged()


def test_entry_within_tolerance_accepted(ledger: Ledger) -> None:
    now = T0 + timedelta(hours=1)
    slightly = Ledger(
        ledger.store,
        SIGNER,
        origin=ORIGIN,
        clock=_JumpClock(now + timedelta(minutes=4), now),
    )
    assert slightly.append("note", {"text": "a bit early"}).seq == 1


def test_entry_dated_before_the_head_refused(ledger: Ledger) -> None:
    """A writer whose clock ran far ahead leaves a head no honest clock may precede."""
    ahead = Ledger(
        ledger.store, SIGNER, origin=ORIGIN, clock=FixedClock(T0 + timedelta(days=1))
    )
    ahead.append("note", {"text": "written with a clock a day ahead"})
    before = _snapshot(ledger)
    with pytest.raises(InputError, match="the ledger already holds an entry dated"):
        ledger.append("note", {"text": "behind the head"})
    assert _snapshot(ledger) == before


def test_entry_slightly_before_the_head_accepted(ledger: Ledger) -> None:
    ahead = Ledger(
        ledger.store, SIGNER, origin=ORIGIN, clock=FixedClock(T0 + timedelta(minutes=4))
    )
    ahead.append("note", {"text": "four minutes ahead"})
    assert ledger.append("note", {"text": "within tolerance"}).seq == 2


# -- append_many ------------------------------------------------------------------


def test_append_many_lands_all(ledger: Ledger) -> None:
    drafts = [Draft("note", {"text": f"batch {i}"}, run="run-9") for i in range(4)]
    records = ledger.append_many(drafts)
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert [r.entry.body["text"] for r in records] == [f"batch {i}" for i in range(4)]
    assert list(ledger.records(1)) == records
    assert ledger.verify().ok


@pytest.mark.parametrize(
    "bad",
    [
        Draft("note", {"text": 1}),
        Draft("unknown.kind", {"text": "x"}),
        Draft(
            "note",
            {"text": "x", "attachments": [{"blob": "sha256:" + "cd" * 32, "size": 1}]},
        ),
    ],
)
def test_append_many_is_atomic(
    ledger: Ledger, unchanged: Callable[[], None], bad: Draft
) -> None:
    drafts = [Draft("note", {"text": "good 1"}), Draft("note", {"text": "good 2"}), bad]
    with pytest.raises(InputError):
        ledger.append_many(drafts)
    unchanged()


def test_append_many_empty(ledger: Ledger, unchanged: Callable[[], None]) -> None:
    with pytest.raises(InputError, match="nothing to append"):
        ledger.append_many([])
    unchanged()


# -- checkpoints and proofs -------------------------------------------------------


def test_proofs_verify_against_checkpoint_roots(ledger: Ledger) -> None:
    roots = {}
    for target in (5, 8, 12, 13, 17):
        while ledger.head().size < target:
            ledger.append("note", {"text": f"n{ledger.head().size}"})
        signed = ledger.checkpoint()
        verify_checkpoint(
            signed.to_text(), origin=ORIGIN, public_keys=[SIGNER.public_key]
        )
        assert signed.checkpoint.size == target
        roots[target] = signed.checkpoint.root
    for cp in ledger.store.checkpoints():
        parsed = parse_signed_checkpoint(cp.text).checkpoint
        assert parsed.root == roots.get(parsed.size, parsed.root)
        roots[parsed.size] = parsed.root
    # every append stores a checkpoint of its batch: one per size here
    assert sorted(roots) == list(range(1, 18))

    for size, root in roots.items():
        for seq in range(size):
            proof = ledger.prove_inclusion(seq, size)
            assert (proof.index, proof.size) == (seq, size)
            verify_inclusion(seq, size, ledger.leaf_hash(seq), proof.hashes, root)
    for old, old_root in roots.items():
        for new, new_root in roots.items():
            if old <= new:
                proof = ledger.prove_consistency(old, new)
                assert (proof.size1, proof.size2) == (old, new)
                verify_consistency(old, new, old_root, new_root, proof.hashes)


def test_proofs_default_to_the_head(ledger: Ledger) -> None:
    for i in range(6):
        ledger.append("note", {"text": f"n{i}"})
    root = ledger.checkpoint().checkpoint.root
    proof = ledger.prove_inclusion(3)
    assert proof.size == 7
    verify_inclusion(3, 7, ledger.leaf_hash(3), proof.hashes, root)
    assert ledger.prove_consistency(2).size2 == 7


def test_proofs_fail_for_wrong_leaf_or_root(ledger: Ledger) -> None:
    for i in range(9):
        ledger.append("note", {"text": f"n{i}"})
    root = ledger.checkpoint().checkpoint.root
    proof = ledger.prove_inclusion(4, 10)
    with pytest.raises(ProofError):
        verify_inclusion(4, 10, ledger.leaf_hash(5), proof.hashes, root)
    old_root = ledger.head().root()
    ledger.append("note", {"text": "one more"})
    consistency = ledger.prove_consistency(10, 11)
    with pytest.raises(ProofError):
        verify_consistency(10, 11, old_root, root[::-1], consistency.hashes)


@pytest.mark.parametrize(("seq", "size"), [(-1, 3), (3, 3), (0, 0), (0, 99)])
def test_prove_inclusion_bad_arguments(ledger: Ledger, seq: int, size: int) -> None:
    ledger.append_many([Draft("note", {"text": "a"}), Draft("note", {"text": "b"})])
    with pytest.raises(
        InputError, match=rf"seq {seq} is not in a tree of {size} records"
    ):
        ledger.prove_inclusion(seq, size)


@pytest.mark.parametrize(("old", "new"), [(0, 2), (3, 2), (1, 4), (-1, 1)])
def test_prove_consistency_bad_arguments(ledger: Ledger, old: int, new: int) -> None:
    ledger.append_many([Draft("note", {"text": "a"}), Draft("note", {"text": "b"})])
    with pytest.raises(InputError, match="need 0 < OLD <= NEW <= 3"):
        ledger.prove_consistency(old, new)


def test_leaf_hash_of_missing_seq(ledger: Ledger) -> None:
    with pytest.raises(InputError, match="no record with seq 5"):
        ledger.leaf_hash(5)


# -- read-only ledgers and keys -------------------------------------------------------


def test_read_only_ledger_refuses_writes(ledger: Ledger) -> None:
    ledger.append("note", {"text": "written"})
    reader = Ledger(ledger.store, None, origin=ORIGIN, trusted_key=SIGNER.key_id)
    before = _snapshot(ledger)
    with pytest.raises(ConfigError, match="read-only"):
        reader.append("note", {"text": "refused"})
    with pytest.raises(ConfigError, match="read-only"):
        reader.append_many([Draft("note", {"text": "refused"})])
    # no signing needed: the checked checkpoint the last append stored
    assert reader.checkpoint().checkpoint.size == 2
    with pytest.raises(ConfigError, match="read-only"):
        reader.rotate_key(fixed_signer("other"))
    assert _snapshot(ledger) == before
    assert [r.seq for r in reader.records()] == [0, 1]
    assert reader.verify().ok


def test_read_only_verify_with_wrong_trusted_key() -> None:
    store = MemoryStore()
    Ledger.create(store, SIGNER, origin=ORIGIN, clock=FixedClock(T0))
    other = fixed_signer("someone-else")
    report = Ledger(store, None, origin=ORIGIN, trusted_key=other.key_id).verify()
    assert not report.ok
    assert [p.code for p in report.problems] == ["genesis"]


def test_rotate_key_switches_signer(ledger: Ledger) -> None:
    new = fixed_signer("ledger-api-key-2")
    added, revoked = ledger.rotate_key(new, reason="yearly")
    assert (added.seq, revoked.seq) == (1, 2)
    assert added.entry.sig.key == SIGNER.key_id
    assert revoked.entry.sig.key == new.key_id
    assert revoked.entry.body == {
        "key": SIGNER.key_id,
        "reason": "yearly",
        "replaced_by": new.key_id,
    }
    record = ledger.append("note", {"text": "after"})
    assert record.entry.sig.key == new.key_id
    ledger.checkpoint()
    assert ledger.verify().ok
    keys = ledger.keys()
    assert keys.keys[SIGNER.key_id].revoked_seq == 2
    with pytest.raises(InputError, match="already added"):
        ledger.rotate_key(new)


def test_stale_ledger_with_revoked_key_is_refused(ledger: Ledger) -> None:
    stale = Ledger(ledger.store, SIGNER, origin=ORIGIN, clock=FixedClock(T0))
    stale.append("note", {"text": "while valid"})
    ledger.rotate_key(fixed_signer("ledger-api-key-3"))
    before = _snapshot(ledger)
    with pytest.raises(
        ConfigError,
        match=r"cannot append: seq 4 would be signed by key "
        r".* after it was revoked at seq 3",
    ):
        stale.append("note", {"text": "with the revoked key"})
    assert _snapshot(ledger) == before


# -- ledger homes -------------------------------------------------------------------


def test_init_home_twice(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = init_home(home, origin=ORIGIN, env={})
    assert first.created
    assert first.origin == ORIGIN
    second = init_home(home, origin="example.org/other", env={})
    assert not second.created
    assert (second.origin, second.key_id, second.home) == (
        ORIGIN,
        first.key_id,
        first.home,
    )
    opened = open_home(home, env={})
    try:
        assert opened.ledger.head().size == 1
        assert opened.ledger.trusted_key == first.key_id
        assert opened.verify().ok
    finally:
        opened.close()
    assert len(list((home / "keys").iterdir())) == 1


def test_init_home_uses_mltrail_home(tmp_path: Path) -> None:
    result = init_home(env={"MLTRAIL_HOME": str(tmp_path / "from-env")})
    assert result.home == (tmp_path / "from-env").resolve()
    assert result.origin.startswith("mltrail.local/")
    assert (tmp_path / "from-env" / "ledger.json").exists()


def _git_init(path: Path) -> None:
    path.mkdir(parents=True)
    git = shutil.which("git")
    if git is None:
        (path / ".git").mkdir()  # what the check looks for
        return
    subprocess.run([git, "init", "-q", str(path)], check=True, capture_output=True)


def test_init_home_refuses_git_work_tree(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _git_init(repo)
    for where in (repo, repo / "deep" / "inside"):
        with pytest.raises(ConfigError, match="inside the git work tree") as info:
            init_home(where / ".mltrail", origin=ORIGIN, env={})
        assert "--force" in info.value.hint
        assert not (where / ".mltrail" / "ledger.json").exists()
    forced = init_home(repo / ".mltrail", origin=ORIGIN, force=True, env={})
    assert forced.created
    assert (repo / ".mltrail" / "ledger.json").exists()


def test_key_file_mode_is_0600(tmp_path: Path) -> None:
    result = init_home(tmp_path / "home", origin=ORIGIN, env={})
    key_file = tmp_path / "home" / "keys" / f"{result.key_id}.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in key_file.read_bytes()


def test_key_password(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, origin=ORIGIN, password=b"pw", env={})
    assert b"ENCRYPTED" in next((home / "keys").iterdir()).read_bytes()
    with pytest.raises(AuthError, match="wrong password") as info:
        open_home(home, env={"MLTRAIL_KEY_PASSWORD": "bad"})
    assert "MLTRAIL_KEY_PASSWORD" in info.value.hint
    with pytest.raises(AuthError, match="encrypted and no password"):
        open_home(home, env={})
    with pytest.raises(AuthError, match="wrong password"):
        open_home(home, password=b"also bad", env={})
    for opened in (
        open_home(home, env={"MLTRAIL_KEY_PASSWORD": "pw"}),
        open_home(home, password=b"pw", env={}),
    ):
        try:
            assert opened.ledger.append("note", {"text": "signed"}).seq >= 1
        finally:
            opened.close()
    reader = open_home(home, writable=False, env={})  # verifying needs no key
    try:
        assert reader.verify().ok
    finally:
        reader.close()


def test_missing_key_file(tmp_path: Path) -> None:
    result = init_home(tmp_path / "home", origin=ORIGIN, env={})
    (tmp_path / "home" / "keys" / f"{result.key_id}.key").unlink()
    with pytest.raises(ConfigError, match=r"signing key .* not found"):
        open_home(tmp_path / "home", env={})
    reader = open_home(tmp_path / "home", writable=False, env={})
    try:
        assert reader.verify().ok
    finally:
        reader.close()


def test_open_home_without_ledger(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no ledger at"):
        open_home(tmp_path / "nothing-here", env={})


def test_open_home_with_missing_store(tmp_path: Path) -> None:
    init_home(tmp_path / "home", origin=ORIGIN, env={})
    (tmp_path / "home" / "ledger.db").unlink()
    with pytest.raises(ConfigError, match="no ledger at"):
        open_home(tmp_path / "home", env={})


def test_open_home_with_corrupt_store(tmp_path: Path) -> None:
    init_home(tmp_path / "home", origin=ORIGIN, env={})
    (tmp_path / "home" / "ledger.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreError, match="cannot open ledger"):
        open_home(tmp_path / "home", env={})


def test_entries_carry_the_actor_as_it_is_at_each_append(ledger: Ledger) -> None:
    """The actor's bytes are made once per signer and actor (issue 16): a changed
    actor, whether replaced or changed in place, is seen and checked again."""
    ledger.append("note", {"text": "first"})
    ledger.actor["user"] = "changed-in-place"
    second = ledger.append("note", {"text": "second"})
    ledger.actor = {"user": "replaced", "uid": 7}
    third = ledger.append("note", {"text": "third"})
    assert second.entry.actor == {"user": "changed-in-place"}
    assert third.entry.actor == {"user": "replaced", "uid": 7}
    ledger.actor = {"user": "replaced", "uid": True}  # equal in Python, not in JSON
    with pytest.raises(SchemaError, match="uid"):
        ledger.append("note", {"text": "refused"})
    ledger.actor["uid"] = 2**60
    with pytest.raises(SchemaError, match="integer"):
        ledger.append("note", {"text": "refused"})
    assert ledger.verify().ok
    assert ledger.head().size == 4


def test_a_batch_that_locks_a_run_cannot_amend_it_after_the_lock(
    ledger: Ledger,
) -> None:
    """A ``model.sealed`` earlier in the same batch locks the run for the
    entries after it, as verify reads them (``locked-run``): the append refuses
    them instead of writing a ledger that verifies as tampered."""
    ledger.append("note", {"text": "started"}, run="r1")
    lock = Draft(
        "model.sealed", {"model": "a" * 64, "model_type": "model", "runs": ["r1"]}
    )
    ended = Draft("run.ended", {"status": "succeeded", "exit_code": 0}, run="r1")
    with pytest.raises(InputError, match=r"locked by model\.sealed at seq 2"):
        ledger.append_many([lock, Draft("note", {"text": "ok"}, run="r1"), ended])
    ledger.append_many([ended, lock, Draft("note", {"text": "ok"}, run="r1")])
    assert ledger.verify().ok
