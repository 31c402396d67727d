"""Author keys through the CLI on a real home (ADR 0025).

alice's home holds the log key; bob makes his own key file and alice registers
it to the identity ``bob``. bob's entries, signed with his key elsewhere and
appended with ``Ledger.append_entries``, verify; his key signing an entry as
alice is refused at append, and when forged straight into the SQLite file (by
someone also holding the log key, as a lax server would be) it is named by
`mltrail verify`, `mltrail verify-bundle` and the standalone
examples/verify_bundle.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mltrail.core.bundle import BundlePolicy, verify_bundle
from mltrail.core.canonical import compute_leaf_hash, compute_record_hash
from mltrail.core.checkpoint import Checkpoint, parse_signed_checkpoint, sign_checkpoint
from mltrail.core.codec import decode_record, format_time
from mltrail.core.entry import Entry, Record, sign_entry
from mltrail.core.merkle import CompactRange
from mltrail.errors import InputError
from mltrail.ledger.home import open_home
from mltrail.ledger.keystore import load_signer

ORIGIN = "example.org/authors"
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "verify_bundle.py"


def mltrail(home: Path, *args: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    env["MLTRAIL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout) if proc.stdout.startswith(("{", "[")) else None


def _entry(signer: Any, user: str, kind: str, body: dict[str, Any]) -> Entry:
    time = format_time(datetime.now(UTC))
    return sign_entry(Entry(kind, time, {"user": user}, body, run="run-bob"), signer)


def _errors(report: dict[str, Any]) -> list[tuple[int | None, str]]:
    return [
        (p["seq"], p["code"]) for p in report["problems"] if p["severity"] == "error"
    ]


def _forge(home: Path, entry: Entry, log_key: Any) -> int:
    """Insert ``entry`` at the end of the SQLite file, with its Merkle nodes and a
    checkpoint signed by the log key; return its seq."""
    conn = sqlite3.connect(home / "ledger.db", isolation_level=None)
    try:
        rows = conn.execute("SELECT record FROM records ORDER BY seq").fetchall()
        tree = CompactRange()
        for (data,) in rows:
            tree.append(compute_leaf_hash(bytes(data)))
        seq = len(rows)
        prev = compute_record_hash(bytes(rows[-1][0])).hex()
        data = Record(seq, prev, entry).to_bytes()
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO records (seq, hash, kind, run, time, record) "
            "VALUES (?,?,?,?,?,?)",
            (seq, compute_record_hash(data), entry.kind, entry.run, entry.time, data),
        )
        conn.executemany(
            "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?,?,?)",
            tree.append(compute_leaf_hash(data)),
        )
        text = sign_checkpoint(Checkpoint(ORIGIN, tree.size, tree.root()), log_key)
        conn.execute(
            "INSERT INTO checkpoints (size, note) VALUES (?, ?)",
            (tree.size, text.to_text()),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return seq


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("authors")
    home = base / "alice"
    ok(mltrail(home, "init", "--origin", ORIGIN))
    made = ok(mltrail(home, "keys", "new", "--out", base / "bob.key", "--json"))
    registered = ok(
        mltrail(
            home, "keys", "register", "--key-file", base / "bob.key",
            "--identity", "bob", "--json",
        )
    )  # fmt: skip
    bob = load_signer(base / "bob.key")
    opened = open_home(home, env={})
    try:
        records = opened.ledger.append_entries(
            [
                _entry(bob, "bob", "run.started", {"source": "api", "name": "t"}),
                _entry(bob, "bob", "note", {"text": "bob's own note"}),
            ]
        )
        with pytest.raises(InputError, match="written as user 'alice'"):
            opened.ledger.append_entries(
                [_entry(bob, "alice", "note", {"text": "alice approved this"})]
            )
        opened.checkpoint()
        log_key = opened.ledger.signer
    finally:
        opened.close()
    return {
        "base": base,
        "home": home,
        "bob": bob,
        "log_key": log_key,
        "made": made,
        "registered": registered,
        "records": records,
    }


def test_a_registered_author_keys_entries_verify(world: dict[str, Any]) -> None:
    home = world["home"]
    assert world["registered"] == {
        "seq": 1,
        "key": world["made"]["key"],
        "identity": "bob",
    }
    assert [r.seq for r in world["records"]] == [2, 3]
    listed = ok(mltrail(home, "keys", "list", "--json"))
    assert [(k["identity"], k["role"]) for k in listed] == [
        (None, "log"),
        ("bob", "author"),
    ]
    report = ok(mltrail(home, "verify", "--json"))
    assert _errors(report) == []
    out = world["base"] / "good.json"
    ok(mltrail(home, "export", "run:run-bob", "-o", out))
    ok(mltrail(home, "verify-bundle", out, "--json"))
    standalone = subprocess.run(
        [sys.executable, EXAMPLE, out], capture_output=True, text=True, check=False
    )
    assert standalone.returncode == 0, standalone.stderr


def test_an_entry_forged_as_another_user_is_named_everywhere(
    world: dict[str, Any],
) -> None:
    forged = world["base"] / "forged"
    shutil.copytree(world["home"], forged)
    entry = _entry(world["bob"], "alice", "note", {"text": "alice approved this"})
    seq = _forge(forged, entry, world["log_key"])
    proc = mltrail(forged, "verify", "--json")
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert _errors(report) == [(seq, "author-user")]
    assert "author key" in report["problems"][0]["message"]
    out = world["base"] / "forged.json"
    ok(mltrail(forged, "export", "run:run-bob", "-o", out))
    bundle = json.loads(out.read_text())
    assert seq in [r["seq"] for r in bundle["records"]]
    checked = mltrail(forged, "verify-bundle", out, "--json")
    assert checked.returncode == 3, checked.stdout + checked.stderr
    problems = json.loads(checked.stdout)["problems"]
    assert [(p["seq"], p["code"]) for p in problems if p["severity"] == "error"] == [
        (seq, "author-user")
    ]
    standalone = subprocess.run(
        [sys.executable, EXAMPLE, out], capture_output=True, text=True, check=False
    )
    assert standalone.returncode == 1
    assert f"record {seq}: author key of 'bob' signed another user's entry" in (
        standalone.stderr
    )


def test_keys_revoke_stops_bob_and_refuses_the_log_key(world: dict[str, Any]) -> None:
    home = world["base"] / "revoking"
    shutil.copytree(world["home"], home)
    log_id = world["log_key"].key_id
    refused = mltrail(home, "keys", "revoke", log_id, "--reason", "no")
    assert refused.returncode == 2
    assert "log key" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad = mltrail(
        home, "keys", "register", "--key-file", world["base"] / "bob.key",
        "--identity", "bob",
    )  # fmt: skip
    assert bad.returncode == 2
    assert "already a key" in bad.stderr
    revoked = ok(
        mltrail(
            home, "keys", "revoke", world["bob"].key_id, "--reason", "left", "--json"
        )
    )
    assert revoked["seq"] == 4
    listed = ok(mltrail(home, "keys", "list", "--json"))
    assert listed[1]["revoked_seq"] == 4
    assert _errors(ok(mltrail(home, "verify", "--json"))) == []
    for command in ("new", "register", "revoke", "list"):
        assert "Examples:" in ok_text(mltrail(home, "keys", command, "--help"))


def ok_text(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_records_bob_signed_carry_his_identity_in_the_key_record(
    world: dict[str, Any],
) -> None:
    conn = sqlite3.connect(world["home"] / "ledger.db")
    try:
        (data,) = conn.execute("SELECT record FROM records WHERE seq = 1").fetchone()
    finally:
        conn.close()
    body = decode_record(bytes(data)).record.entry.body
    assert body["identity"] == "bob"
    assert body["key"] == world["bob"].key_id


def test_a_bundle_checkpoint_signed_by_an_author_key_is_named(
    world: dict[str, Any], tmp_path: Path
) -> None:
    good = world["base"] / "good.json"
    if not good.exists():
        ok(mltrail(world["home"], "export", "run:run-bob", "-o", good))
    bundle = json.loads(good.read_text())
    signed = parse_signed_checkpoint(bundle["checkpoint"]).checkpoint
    bundle["checkpoint"] = sign_checkpoint(signed, world["bob"]).to_text()
    report = verify_bundle(bundle, BundlePolicy())
    assert [(p.seq, p.code) for p in report.errors] == [(None, "author-checkpoint")]
    assert "author key" in report.errors[0].message
    out = tmp_path / "resigned.json"
    out.write_text(json.dumps(bundle))
    standalone = subprocess.run(
        [sys.executable, EXAMPLE, out], capture_output=True, text=True, check=False
    )
    assert standalone.returncode == 1
    assert "no signature by a key of the ledger" in standalone.stderr


def _key_entry(log_key: Any, kind: str, body: dict[str, Any]) -> Entry:
    time = format_time(datetime.now(UTC))
    return sign_entry(Entry(kind, time, {"user": "alice"}, body), log_key)


@pytest.mark.parametrize("how", ["added-again", "revoked-twice"])
def test_a_revoked_author_key_made_valid_again_fails_every_verifier(
    world: dict[str, Any], how: str
) -> None:
    """bob's key is revoked; then the log key's holder adds it again (or revokes
    it a second time, later): ``mltrail verify`` and ``verify-bundle`` name the
    key record and bob's later entry. The standalone verifier took the second
    record as the key's history (found by the review of 2026-12-07): revoked
    twice, it passed the bundle, bob's entry between the two included; added
    again, it blamed bob's honest entries from before the revocation."""
    from mltrail.core.keyring import make_key_proof
    from mltrail.core.signing import encode_b64

    home = world["base"] / f"again-{how}"
    shutil.copytree(world["home"], home)
    bob, log_key = world["bob"], world["log_key"]
    revoke = {"key": bob.key_id, "reason": "left"}
    first = _forge(home, _key_entry(log_key, "key.revoked", revoke), log_key)
    if how == "added-again":
        body = {
            "alg": "ed25519",
            "key": bob.key_id,
            "public_key": encode_b64(bob.public_key),
            "identity": "bob",
            "proof": encode_b64(make_key_proof(bob, ORIGIN, "bob")),
            "reason": "back",
        }
        bad = _forge(home, _key_entry(log_key, "key.added", body), log_key)
        late = _forge(home, _entry(bob, "bob", "note", {"text": "late"}), log_key)
    else:
        late = _forge(home, _entry(bob, "bob", "note", {"text": "late"}), log_key)
        bad = _forge(home, _key_entry(log_key, "key.revoked", revoke), log_key)
    proc = mltrail(home, "verify", "--json")
    assert proc.returncode == 3, proc.stderr
    errors = _errors(json.loads(proc.stdout))
    assert (late, "signer") in errors
    assert (bad, "key") in errors
    out = world["base"] / f"again-{how}.json"
    ok(mltrail(home, "export", "run:run-bob", "-o", out))
    seqs = [r["seq"] for r in json.loads(out.read_text())["records"]]
    assert {first, bad, late} <= set(seqs)
    assert mltrail(home, "verify-bundle", out, "--json").returncode == 3
    standalone = subprocess.run(
        [sys.executable, EXAMPLE, out], capture_output=True, text=True, check=False
    )
    assert standalone.returncode == 1, standalone.stdout
    assert f"record {bad}:" in standalone.stderr


class _SmallOrderKey:
    """The identity point ``01 00 .. 00`` as a "key": under it (R = the identity,
    S = 0) is a signature of every message, which anyone can make, and which
    OpenSSL (`cryptography`) accepts and libsodium refuses."""

    public_key = bytes([1]) + bytes(31)
    key_id = hashlib.sha256(public_key).hexdigest()

    def sign(self, message: bytes) -> bytes:
        return self.public_key + bytes(32)


def test_a_small_order_author_key_fails_every_verifier(world: dict[str, Any]) -> None:
    """A key.added of a small-order point (written by the log key's holder:
    ``register_key`` checks the proof with libsodium and refuses it) lets anyone
    sign as its identity where `cryptography` checks the signatures: the
    standalone verifier passed such a bundle; the others name the key record."""
    from mltrail.core.keyring import make_key_proof
    from mltrail.core.signing import encode_b64

    home = world["base"] / "small-order"
    shutil.copytree(world["home"], home)
    weak, log_key = _SmallOrderKey(), world["log_key"]
    body = {
        "alg": "ed25519",
        "key": weak.key_id,
        "public_key": encode_b64(weak.public_key),
        "identity": "mallory",
        "proof": encode_b64(make_key_proof(weak, ORIGIN, "mallory")),
        "reason": "anyone's",
    }
    added = _forge(home, _key_entry(log_key, "key.added", body), log_key)
    note = _forge(home, _entry(weak, "mallory", "note", {"text": "by anyone"}), log_key)
    proc = mltrail(home, "verify", "--json")
    assert proc.returncode == 3, proc.stderr
    errors = _errors(json.loads(proc.stdout))
    assert (added, "key") in errors
    assert (note, "signer") in errors
    out = world["base"] / "small-order.json"
    ok(mltrail(home, "export", "run:run-bob", "-o", out))
    assert mltrail(home, "verify-bundle", out, "--json").returncode == 3
    standalone = subprocess.run(
        [sys.executable, EXAMPLE, out], capture_output=True, text=True, check=False
    )
    assert standalone.returncode == 1, standalone.stdout
    assert f"record {added}: the key is not a valid Ed25519 key" in standalone.stderr
