"""Regenerate the example proof bundle: ``python tests/vectors/bundle_v1/generate.py``.

Builds a small ledger in memory from fixed keys and a fixed clock (a data step,
a training run whose model is promoted, a key rotation, a witness cosignature,
and records that do not belong to the model), exports the model's bundle and
writes it to ``examples/data/bundle.json``, which ``examples/verify_bundle.py``
checks when run with no arguments. ``test_bundle_vectors.py`` checks that the
committed file is byte for byte what this script makes.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mltrail.core.canonical import canonical_bytes
from mltrail.core.checkpoint import parse_signed_checkpoint
from mltrail.core.cosignature import cosign_checkpoint
from mltrail.evidence.bundle import export_bundle
from mltrail.index.db import Index
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.testing import FixedClock, MemoryStore, fixed_signer

ORIGIN = "bundle.mltrail.local/example"
WITNESS = "witness.mltrail.local/example"
OUTPUT = Path(__file__).resolve().parents[3] / "examples" / "data" / "bundle.json"


def _id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def build_ledger() -> tuple[Ledger, str]:
    """The example ledger, and the model id whose bundle is exported."""
    clock = FixedClock(datetime(2026, 5, 4, 10, 0, tzinfo=UTC), timedelta(seconds=3))
    actor = {"user": "alice", "host": "trainer-1", "ci": None}
    store = MemoryStore()
    ledger = Ledger.create(
        store, fixed_signer("bundle-key-1"), origin=ORIGIN, clock=clock, actor=actor
    )
    raw = ledger.put_blob(b"a1b2  raw/part-0.csv\nc3d4  raw/part-1.csv\n")
    clean = ledger.put_blob(b"e5f6  clean/part-0.csv\n")
    model = _id("model")
    prep, other, train = "run-prepare", "run-unrelated", "run-train"
    ledger.append_many([
        Draft("run.started", {"source": "api", "name": "prepare"}, prep),
        Draft("run.data", {"role": "raw", "path": "data/raw", "dataset": _id("raw"),
                           "files": 2, "bytes": 10, "manifest": raw}, prep),
        Draft("run.artifact", {"path": "data/clean", "exists": True, "type": "directory",
                               "dataset": _id("clean"), "files": 1, "bytes": 8,
                               "manifest": clean}, prep),
        Draft("run.ended", {"status": "succeeded", "exit_code": 0}, prep),
    ])  # fmt: skip
    ledger.append_many(
        [
            Draft("run.started", {"source": "api", "name": "unrelated"}, other),
            Draft("run.ended", {"status": "failed", "exit_code": 1}, other),
        ]
    )
    _cosign(ledger)
    ledger.rotate_key(fixed_signer("bundle-key-2"), reason="yearly rotation")
    ledger.append_many([
        Draft("run.started", {"source": "api", "name": "train"}, train),
        Draft("run.data", {"role": "train", "path": "data/clean",
                           "dataset": _id("clean"), "files": 1, "bytes": 8,
                           "manifest": clean}, train),
        Draft("run.params", {"source": "api", "params": {"lr": 0.0003, "epochs": 3,
                             "note": "Größe \u2028 \U0001f600"}}, train),
        Draft("run.artifact", {"path": "model.safetensors", "exists": True,
                               "type": "file", "sha256": _id("weights"), "size": 100,
                               "model": model, "model_format": "safetensors"}, train),
        Draft("run.ended", {"status": "succeeded", "exit_code": 0,
                            "duration_s": 12.5}, train),
    ])  # fmt: skip
    promoted = ledger.append(
        "model.promoted",
        {"model": model, "model_type": "model", "stage": "production",
         "action": "enter", "run": train},
    )  # fmt: skip
    ledger.append("note", {"text": "reviewed", "refers_to": promoted.seq})
    ledger.append("note", {"text": "not about the model"})
    return ledger, model


def _cosign(ledger: Ledger) -> None:
    latest = ledger.latest_checkpoint()
    assert latest is not None
    size, text = latest
    cosigned = cosign_checkpoint(
        parse_signed_checkpoint(text),
        fixed_signer("bundle-witness"),
        WITNESS,
        1778000000,
    )
    data = cosigned.to_text().encode()
    ledger.store.add_evidence("cosignature", size, text, data, "2026-05-04T10:00:30Z")


def build_bundle() -> bytes:
    """The example bundle's exact bytes (canonical JSON)."""
    ledger, model = build_ledger()
    index = Index(None, ledger)
    index.sync()
    try:
        bundle = export_bundle(ledger, index, f"model:{model}")
    finally:
        index.close()
    return canonical_bytes(bundle)


def witness_vkey() -> str:
    """The example witness's verifier key (for --witness-key)."""
    from mltrail.core.cosignature import WitnessKey
    from mltrail.core.signing import encode_b64

    key = WitnessKey(WITNESS, fixed_signer("bundle-witness").public_key)
    encoded = encode_b64(bytes([0x04]) + key.public_key)
    return f"{WITNESS}+{key.key_hash.hex()}+{encoded}"


if __name__ == "__main__":
    OUTPUT.write_bytes(build_bundle())
    sys.stdout.write(f"wrote {OUTPUT.name}\n")
