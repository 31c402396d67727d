"""Regenerate the golden ledger from fixed keys: ``python tests/vectors/ledger_v1/generate.py``.

The files beside this script are a compatibility promise for the mltrail/1 format:
``test_golden_ledger.py`` fails when the canonical form, hashing, signing, Merkle
tree or checkpoint format drift. Never regenerate them to make a test pass unless
the format version changes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mltrail.core.merkle import range_root
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.testing import FixedClock, MemoryStore, fixed_signer

ORIGIN = "golden.mltrail.local/ledger-v1"
HERE = Path(__file__).parent


def build_golden() -> dict[str, bytes]:
    """Build the golden ledger in memory; return file name -> exact bytes."""
    clock = FixedClock(
        datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC),
        timedelta(seconds=7, microseconds=1),
    )
    first, second = fixed_signer("golden-key-1"), fixed_signer("golden-key-2")
    actor = {"user": "auditor", "host": "golden-host", "ci": None}
    store = MemoryStore()
    ledger = Ledger.create(store, first, origin=ORIGIN, clock=clock, actor=actor)
    manifest = b"3f2a...  train/part-000.csv\n9c1b...  train/part-001.csv\n"
    ref = {**ledger.put_blob(manifest), "name": "manifest.txt"}
    ledger.append_many(
        [
            Draft("note", {"text": "dataset snapshot 2026-W11", "attachments": [ref]}),
            Draft(
                "note",
                {
                    "text": "Größe, 数据, \U0001f600 and \u2028 separators",
                    "refers_to": 1,
                },
                run="run-0001",
            ),
            Draft(
                "note",
                {
                    "text": "numbers",
                    "lr": 2e-05,
                    "big": 1e16,
                    "steps": 9007199254740991,
                    "neg": -0.0,
                    "nested": {"b": [1, 2.5, True, None], "a": "x"},
                },
            ),
        ]
    )
    ledger.checkpoint()
    ledger.rotate_key(second, reason="golden rotation")
    ledger.append("note", {"text": "signed by the second key"})
    ledger.checkpoint()
    return _files(store, ledger, manifest)


def _files(store: MemoryStore, ledger: Ledger, manifest: bytes) -> dict[str, bytes]:
    rows = list(store.rows())
    cps = store.checkpoints()
    size = cps[-1].size
    inclusion = ledger.prove_inclusion(2, size)
    consistency = ledger.prove_consistency(cps[0].size, size)
    proofs = {
        "inclusion": {
            **inclusion.to_dict(),
            "leaf_hash": ledger.leaf_hash(2).hex(),
            "root": range_root(0, size, store.node).hex(),
        },
        "consistency": {
            **consistency.to_dict(),
            "root1": range_root(0, cps[0].size, store.node).hex(),
            "root2": range_root(0, size, store.node).hex(),
        },
        "record_hashes": [row.hash.hex() for row in rows],
    }
    files = {
        "records.jsonl": b"".join(row.data + b"\n" for row in rows),
        "proofs.json": (json.dumps(proofs, indent=2) + "\n").encode(),
        "blobs/" + ledger.put_blob(manifest)["blob"].removeprefix("sha256:"): manifest,
    }
    for i, cp in enumerate(cps, start=1):
        files[f"checkpoint-{i}.txt"] = cp.text.encode()
    return files


def main() -> None:
    """Write the golden files next to this script."""
    for name, data in build_golden().items():
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


if __name__ == "__main__":
    main()
