"""``GET /blobs/{digest}`` when a purge erases the blob between the route's two
reads (its size, then its bytes): the answer names the purge (410), as it does
for a blob erased before the request, never a bare 404 (ADR 0028 amendment of
2026-12-08: a verification over HTTP reads a 404 as a blob missing with no
purge, which is tampering)."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from mltrail.server.app import ApiError
from mltrail.server.routes_read import get_blob
from mltrail.storage.base import StoredPurge

if TYPE_CHECKING:
    from collections.abc import Iterator

DIGEST = "sha256:" + "ab" * 32


class _ErasedMeanwhile:
    """A store that lists the blob, then has it erased by purge record 7
    before its bytes are read."""

    def __init__(self, *, purged: bool) -> None:
        self.purged = purged
        self.erased = False

    def find_blobs(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        return [] if self.erased else [(DIGEST, 10)]

    def get_blob(self, digest: str) -> bytes | None:
        self.erased = True  # the purge's erasure lands between the two reads
        return None

    def purge_of(self, digest: str) -> StoredPurge | None:
        if self.purged and digest == DIGEST:
            return StoredPurge(DIGEST, 10, 7, self.erased)
        return None


def _ctx(store: _ErasedMeanwhile) -> SimpleNamespace:
    @contextmanager
    def reader() -> Iterator[SimpleNamespace]:
        yield SimpleNamespace(store=store)

    limits = SimpleNamespace(large_body_bytes=1 << 30)
    return SimpleNamespace(
        handle=SimpleNamespace(reader=reader),
        state=SimpleNamespace(limits=limits),
        principal=None,
    )


def test_a_blob_erased_between_the_two_reads_is_gone_naming_its_purge() -> None:
    request = SimpleNamespace(method="GET")
    with pytest.raises(ApiError) as caught:
        get_blob(_ctx(_ErasedMeanwhile(purged=True)), DIGEST, request)  # type: ignore[arg-type]
    assert caught.value.status == 410
    assert caught.value.extra == {"seq": 7}


def test_a_blob_gone_with_no_purge_is_not_found() -> None:
    request = SimpleNamespace(method="GET")
    with pytest.raises(ApiError) as caught:
        get_blob(_ctx(_ErasedMeanwhile(purged=False)), DIGEST, request)  # type: ignore[arg-type]
    assert caught.value.status == 404
