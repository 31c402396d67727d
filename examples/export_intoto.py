"""Record a tiny run, export its SLSA provenance, and verify the DSSE signature.

The verification uses only ``cryptography`` (no mltrail, no in-toto library):
DSSE signs ``PAE(payloadType, payload)`` with the ledger's Ed25519 key, the key
``mltrail keys export`` gives to whoever verifies. The same envelope comes from
``mltrail export intoto RUN``.

Run: python examples/export_intoto.py
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def verify(envelope: dict, public_keys: dict[str, bytes]) -> dict:
    """The statement, once its signature checks (raises InvalidSignature if not)."""
    payload = base64.b64decode(envelope["payload"])
    [signature] = envelope["signatures"]
    public = Ed25519PublicKey.from_public_bytes(public_keys[signature["keyid"]])
    public.verify(base64.b64decode(signature["sig"]),
                  pae(envelope["payloadType"], payload))  # fmt: skip
    return json.loads(payload)


def main() -> None:
    """Write a model file in a run, attest it, verify the attestation."""
    import mltrail
    from mltrail.index import open_index
    from mltrail.integrations.intoto import export_intoto

    with tempfile.TemporaryDirectory() as tmp:
        home_dir, model = Path(tmp) / "audit", Path(tmp) / "model.bin"
        with mltrail.start_run("tiny", params={"lr": 0.1}, home=home_dir) as run:
            model.write_bytes(b"weights")
            run.log_artifact(model)
        home = mltrail.open_home(home_dir)
        index = open_index(home)
        try:
            envelope = export_intoto(home, index, run.id, version=mltrail.__version__)
        finally:
            index.close()
        # What `mltrail keys export` prints: key id -> raw Ed25519 public key.
        keys = home.ledger.keys().valid_keys(home.ledger.head().size)
        statement = verify(envelope, keys)
        [subject] = statement["subject"]
        print(f"verified {statement['predicateType']} of {subject['name']} "
              f"(sha256 {subject['digest']['sha256'][:12]}...)")  # fmt: skip


if __name__ == "__main__":
    main()
