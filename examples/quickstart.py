"""Quickstart: create a ledger, append signed entries with a blob, checkpoint, prove, verify.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mltrail
from mltrail.core.merkle import verify_inclusion


def main() -> None:
    """Walk through the ledger API on a temporary home."""
    with tempfile.TemporaryDirectory() as tmp:
        home_path = Path(tmp) / "audit"
        mltrail.init_home(home_path, origin="example.org/quickstart", env={})
        home = mltrail.open_home(home_path, env={})
        manifest = home.ledger.put_blob(b"e3b0c442...  data/train.csv\n")
        record = home.ledger.append(
            "note", {"text": "training data snapshot", "attachments": [manifest]}
        )
        signed = home.checkpoint()
        size, root = signed.checkpoint.size, signed.checkpoint.root
        proof = home.ledger.prove_inclusion(record.seq, size)
        verify_inclusion(
            record.seq, size, home.ledger.leaf_hash(record.seq), proof.hashes, root
        )
        home.close()
        report = mltrail.verify(home_path)
        report.raise_for_failure()
        print(report.verdict())


if __name__ == "__main__":
    main()
