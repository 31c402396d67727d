"""``mltrail purge``: erase a blob's bytes after a signed record says why."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from mltrail.cli.output import console, emit_json, json_option, open_from, open_index
from mltrail.cli.typed_text import typed
from mltrail.errors import InputError
from mltrail.index import INDEX_FILE

if TYPE_CHECKING:
    from mltrail.ledger.erasure import PurgeResult
    from mltrail.ledger.home import Home

__all__ = ["purge"]

_BEYOND_REACH = (
    "copies outside this home (backups, exports, file-system snapshots, other "
    "machines) are beyond mltrail's reach"
)


@click.command()
@click.argument("blob", required=False)
@click.option("--reason", help="Why its bytes must go (kept in the signed record).")
@click.option(
    "--policy",
    help="The rule the erasure follows, e.g. 'GDPR Art. 17' or 'secret leaked'.",
)
@click.option(
    "--resume", is_flag=True, help="Finish purges whose erasure was interrupted."
)
@json_option
@click.pass_context
def purge(
    ctx: click.Context,
    blob: str | None,
    reason: str | None,
    policy: str | None,
    resume: bool,
    as_json: bool,
) -> None:
    """Erase a blob's bytes; a signed blob.purged record says who, why and when.

    BLOB is a blob digest (sha256:<hex>) or a unique prefix of 8+ hex digits,
    as `mltrail show SEQ` lists them. The record is written first; then the bytes
    leave ledger.db (deleted with secure_delete, the file rebuilt, its WAL
    emptied) and the hash cache. The records that referenced the blob keep its
    hash, so they still verify, and `mltrail verify` reports it as purged by
    policy. A purge interrupted between the two is finished by the next purge,
    by --resume, or by the next command that writes. The whole ledger is
    verified first: unless it is intact, nothing is written or erased (exit 3;
    run `mltrail verify`). Values inline in a record
    cannot be purged; copies outside the home (backups, exports, snapshots) are
    beyond mltrail's reach.

    \b
    Examples:
      mltrail purge sha256:9f86d081884c7d65... --reason "erasure request 12" \\
          --policy "GDPR Art. 17"
      mltrail purge 9f86d081 --reason "API key printed in the log" --policy "secret leaked"
      mltrail purge --resume
    """
    if resume == (blob is not None):
        raise InputError("give a BLOB to purge, or --resume (not both)")
    if not resume and not (reason or "").strip():
        raise InputError("--reason is required: say why the bytes must go")
    home = open_from(ctx, writable=True, finish_purges=False, local_only="purge")
    if blob is None:
        results = home.finish_purges()
    else:
        why = typed(home, (reason or "").strip()) or ""
        rule = typed(home, (policy or "").strip() or None)
        results = [home.purge_blob(blob, reason=why, policy=rule)]
    _refresh_index(home)
    if as_json:
        emit_json({"purged": [r.to_dict() for r in results]})
        return
    if not results:
        console.print("no purge was left unfinished")
    for result in results:
        _print(result)
    if results:
        console.print(f"  {_BEYOND_REACH}", markup=False)


def _refresh_index(home: Home) -> None:
    """Rebuild the derived index (it notices the purge), so it keeps nothing read
    from the purged blob."""
    if (home.path / INDEX_FILE).exists():
        open_index(home).close()


def _print(result: PurgeResult) -> None:
    note = result.note
    done = "finished the interrupted purge of" if result.resumed else "purged"
    console.print(
        f"{done} blob {note.digest} ({note.size} bytes): recorded at seq "
        f"{note.seq} ({note.describe()})",
        markup=False,
    )
    if note.referenced_by:
        seqs = ", ".join(map(str, note.referenced_by[:20]))
        more = ", ..." if len(note.referenced_by) > 20 else ""
        console.print(f"  referenced by seq {seqs}{more}: they keep its hash")
    erased = "erased from" if result.held else "already gone from"
    console.print(
        f"  its bytes {erased} ledger.db and its write-ahead log; "
        f"{result.cached} hash-cache entr{'y' if result.cached == 1 else 'ies'} "
        "held them"
    )
