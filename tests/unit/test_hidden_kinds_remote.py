"""``refuse_hidden_kinds`` reads no record over HTTP (ADR 0018 amendment of
2026-12-08, "not over HTTP"): a client's ``promote`` would download the whole
ledger once per promotion."""

from __future__ import annotations

from typing import Any

from mltrail.ledger.columns import refuse_hidden_kinds
from mltrail.storage.http import HttpStore


class _NoReads(HttpStore):
    def __init__(self) -> None:  # no server: any read fails the test
        pass

    def __getattribute__(self, name: str) -> Any:
        if name in {"head", "rows", "rows_of_kinds", "_rows", "_head"}:
            raise AssertionError(f"read {name} over HTTP")
        return super().__getattribute__(name)


def test_a_store_over_http_is_not_read_whole() -> None:
    refuse_hidden_kinds(_NoReads(), ("stage.gated", "model.approved"))
