"""``RecentTokens``: an authentication reused for a second, never past its expiry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from optional_extras import require_extra

require_extra("server", "fastapi", "psycopg")

from mltrail.server.ledgers import RecentTokens  # noqa: E402
from mltrail.server.tokens import Principal  # noqa: E402


def _principal(token_id: str = "a" * 16, expires: datetime | None = None) -> Principal:
    return Principal(token_id, "team-a", "alice", "writer", expires)


def test_a_token_is_reused_until_its_time_runs_out() -> None:
    recent = RecentTokens(ttl=0.2)
    assert recent.get("mlt_x") is None
    recent.put("mlt_x", _principal())
    assert recent.get("mlt_x") == _principal()
    assert recent.get("mlt_y") is None
    time.sleep(0.25)
    assert recent.get("mlt_x") is None


def test_an_expired_token_is_never_served_from_the_cache() -> None:
    recent = RecentTokens(ttl=60)
    recent.put("mlt_x", _principal(expires=datetime.now(UTC) - timedelta(seconds=1)))
    assert recent.get("mlt_x") is None


def test_forget_drops_every_cached_use_of_a_token_id() -> None:
    recent = RecentTokens(ttl=60)
    recent.put("mlt_x", _principal("b" * 16))
    recent.put("mlt_z", _principal("c" * 16))
    recent.forget("b" * 16)
    assert recent.get("mlt_x") is None
    assert recent.get("mlt_z") is not None


def test_the_cache_holds_no_token_text() -> None:
    recent = RecentTokens(ttl=60)
    recent.put("mlt_0123456789abcdef_secretpart", _principal())
    assert all(isinstance(k, bytes) and b"secret" not in k for k in recent._found)
