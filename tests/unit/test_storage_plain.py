"""The store contract speaks plain values and knows no entry kinds (ADR 0032).

import-linter keeps ``mltrail.storage`` from importing ``mltrail.core``; these
tests check what an import rule cannot: no kind name is written in the storage
package, its Merkle node positions are the core's, the schema text it writes for
the ledger's kinds is the text existing databases hold, and the ledger layer's
conversions keep every value.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mltrail.storage
from mltrail.core import schema
from mltrail.core.chain import seal_entries
from mltrail.core.entry import Entry, sign_entry
from mltrail.core.erasure import PURGE_KIND
from mltrail.core.head import EMPTY_HEAD, KEY_KINDS
from mltrail.core.merkle import frontier_positions
from mltrail.ledger.stored import KIND_ROLES, chain_head, new_batch
from mltrail.storage.base import EMPTY_STORE_HEAD, KindRoles, frontier_nodes
from mltrail.storage.postgres_schema import ledger_migrations
from mltrail.storage.sqlite_schema import purge_schema
from mltrail.testing import fixed_signer

STORAGE = Path(mltrail.storage.__file__).parent
KINDS = sorted(
    p.name.removesuffix(".json") for p in Path(schema.__file__).parent.glob("*.*.json")
)


def test_the_kinds_looked_for_include_every_kind_a_store_plays_a_role_for() -> None:
    assert {*KEY_KINDS, PURGE_KIND, "clock.reset", "ledger.pushed"} <= set(KINDS)


@pytest.mark.parametrize("path", sorted(STORAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_storage_package_names_no_entry_kind(path: Path) -> None:
    text = path.read_text("utf-8")
    assert [kind for kind in KINDS if kind in text] == []


@given(st.integers(min_value=0, max_value=1 << 40))
def test_a_stores_frontier_nodes_are_the_cores_frontier_positions(size: int) -> None:
    assert frontier_nodes(size) == frontier_positions(size)


def test_frontier_nodes_of_small_trees() -> None:
    for size in range(1100):
        assert frontier_nodes(size) == frontier_positions(size)


@pytest.mark.parametrize(
    "bad", ["", "Blob.purged", "blob.purged'", "a b", "x;DROP", ".x", "x.", 3]
)
def test_kind_roles_take_plain_dotted_names_only(bad: object) -> None:
    with pytest.raises(ValueError, match="plain dotted kind name"):
        KindRoles(epoch_kinds=("key.added",), reset_kind="x.y", purge_kind=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="plain dotted kind name"):
        KindRoles(epoch_kinds=(bad,), reset_kind="x.y", purge_kind="z")  # type: ignore[arg-type]


def test_the_ledgers_kind_roles() -> None:
    assert (
        KindRoles(
            epoch_kinds=("key.added", "key.revoked"),
            reset_kind="clock.reset",
            purge_kind="blob.purged",
        )
        == KIND_ROLES
    )


def test_the_schema_text_for_the_ledgers_kinds_is_the_text_databases_hold() -> None:
    """Existing SQLite files and PostgreSQL schemas keep their triggers (no
    migration): the text written for the ledger's purge kind must not change.
    The digests are those of the text before the kinds became the opener's
    (PostgreSQL: migration 1; later ones only add statements)."""
    pg = repr(ledger_migrations(KIND_ROLES.purge_kind)[:1])
    sqlite = repr(purge_schema(KIND_ROLES.purge_kind))
    assert hashlib.sha256(pg.encode()).hexdigest() == (
        "ddfed85a6230597738f0d83bbcf27de5c4c351c56b7084e9b99bfc3db5132e9c"
    )
    assert hashlib.sha256(sqlite.encode()).hexdigest() == (
        "b66a4b3448004b824baae30b3bafeb397fbd4a8bb62af8c640b11a89d253f5a2"
    )
    assert "{purge_kind}" not in pg + sqlite
    assert "'run.ended'" in repr(purge_schema("run.ended"))


def test_the_ledger_layer_converts_heads_and_batches_without_loss() -> None:
    signer = fixed_signer()
    assert chain_head(EMPTY_STORE_HEAD) == EMPTY_HEAD
    entries = [
        sign_entry(
            Entry("note", f"2026-01-01T00:00:0{i}.000000Z", {}, {"text": str(i)}),
            signer,
        )
        for i in range(3)
    ]
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    sealed = seal_entries(EMPTY_HEAD, entries, now=now).with_checkpoint("cp\n")
    plain = new_batch(sealed)
    assert [
        (r.seq, r.prev, r.hash, r.kind, r.run, r.time, r.data) for r in plain.records
    ] == [
        (r.seq, r.prev, r.hash, r.kind, r.run, r.time, r.record_bytes)
        for r in sealed.records
    ]
    assert plain.nodes == sealed.nodes
    assert plain.checkpoint == sealed.checkpoint == "cp\n"
    back = chain_head(plain.head)
    assert back == sealed.head
    assert (back.floor_time, back.checkpoint) == (
        sealed.head.floor_time,
        sealed.head.checkpoint,
    )
    assert back.root() == sealed.head.root()
