"""``mltrail demo``: the ledger's promises shown on a throwaway ledger, in seconds."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import click

from mltrail.cli.output import console
from mltrail.core.checkpoint import parse_signed_checkpoint
from mltrail.core.merkle import verify_inclusion
from mltrail.home import Home, init_home, open_home, rotate_home_key

__all__ = ["demo"]


def _step(text: str) -> None:
    console.print(f"\n[bold]== {text}[/bold]")


def _record_history(home: Home) -> None:
    ledger = home.ledger
    manifest = "\n".join(f"{i:064x}  data/part-{i:03}.csv" for i in range(20)).encode()
    ref = {**ledger.put_blob(manifest), "name": "train-manifest.txt"}
    ledger.append(
        "note",
        {"text": "raw customer data snapshot 2026-W42 received", "attachments": [ref]},
    )
    ledger.append("note", {"text": "cleaning script v3 removed 112 duplicate rows"})
    ledger.append("note", {"text": "fine-tune approved: lr=2e-5, lora r=16, alpha=32"})
    record = ledger.append("note", {"text": "model credit-v7 promoted to production"})
    console.print(f"appended 4 signed entries; the last is seq {record.seq}")


def _prove(home: Home, seq: int) -> None:
    signed = home.checkpoint()
    cp = signed.checkpoint
    console.print(signed.to_text().rstrip(), markup=False)
    proof = home.ledger.prove_inclusion(seq, cp.size)
    verify_inclusion(seq, cp.size, home.ledger.leaf_hash(seq), proof.hashes, cp.root)
    console.print(
        f"inclusion proof of seq {seq} in the tree of {cp.size}: "
        f"{len(proof.hashes)} hashes, verified against the signed root"
    )


def _verify(home: Home) -> None:
    report = home.verify()
    console.print(report.verdict(), style="green" if report.ok else "bold red")
    for problem in report.problems[:6]:
        console.print(f"  {problem}", markup=False)


def _tamper(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    conn = sqlite3.connect(target / "ledger.db")
    conn.execute("DROP TRIGGER records_no_UPDATE")
    row = conn.execute("SELECT record FROM records WHERE seq = 3").fetchone()
    forged = bytes(row[0]).replace(b"lr=2e-5", b"lr=9e-5")
    conn.execute("UPDATE records SET record = ? WHERE seq = 3", (forged,))
    conn.commit()
    conn.close()


@click.command()
@click.option(
    "--keep", is_flag=True, help="Keep the demo ledger and print where it is."
)
def demo(keep: bool) -> None:
    """Show the ledger at work on a throwaway home: append, prove, rotate, tamper.

    Nothing outside a temporary folder is touched. It finishes in seconds.
    """
    workdir = Path(tempfile.mkdtemp(prefix="mltrail-demo-"))
    try:
        _run(workdir)
        if keep:
            console.print(
                f"\ndemo ledger kept at {workdir / 'home'} "
                f"(MLTRAIL_HOME={workdir / 'home'} mltrail log)"
            )
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(workdir: Path) -> None:
    _step("1. a new ledger: Ed25519 key, genesis record, first checkpoint")
    result = init_home(workdir / "home", origin="demo.mltrail.local/credit-team")
    console.print(f"origin {result.origin}, key {result.key_id[:16]}...")
    home = open_home(result.home, env={})
    _step("2. signed, hash-chained entries (a blob holds the data manifest)")
    _record_history(home)
    _step("3. a signed checkpoint (C2SP tlog-checkpoint) and an RFC 9162 proof")
    _prove(home, 3)
    _step("4. key rotation: the old key is revoked through the ledger itself")
    new_key = rotate_home_key(home, reason="demo rotation")
    size = home.ledger.head().size
    console.print(
        f"key {new_key[:16]}... added and the old key revoked "
        f"(seqs {size - 2} and {size - 1})"
    )
    home.ledger.append("note", {"text": f"now signing with {new_key[:16]}..."})
    home.checkpoint()
    _step("5. verify: every signature, hash, blob, checkpoint and proof")
    _verify(home)
    home.close()
    _step("6. someone edits seq 3 in the SQLite file directly (lr=2e-5 -> 9e-5)")
    _tamper(workdir / "home", workdir / "tampered")
    tampered = open_home(workdir / "tampered", writable=False, env={})
    _verify(tampered)
    tampered.close()
    root = parse_signed_checkpoint((workdir / "home/witness/checkpoint").read_text())
    console.print(f"\nthe intact ledger's signed root: {root.checkpoint.root.hex()}")
