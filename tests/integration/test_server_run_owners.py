"""A writer adds records only to its own runs (real ``mltrail server``
subprocess, real PostgreSQL; ADR 0027, amendment of 2026-12-07).

Found by a review: any writer could append to another user's run, ``run.ended``
with status ``succeeded``, params, data, outputs; signed as its writer, but
``mltrail show RUN`` and ``trace`` then gave them as part of the run ("what
made this model?" answered with another person's records).
"""

from __future__ import annotations

import base64
import threading

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")

A = "/ledgers/team-a"


def _run_records(s, run: str) -> list[tuple[str, str]]:
    """(kind, actor.user) of every stored record of ``run``, in seq order, read
    back through the API as an auditor would."""
    from mltrail.core.codec import decode_record

    admin, found, start = s.token("admin"), [], 0
    while start is not None:
        status, page = s.call("GET", f"{A}/records?start={start}&limit=1000", admin)
        assert status == 200, page
        for row in page["records"]:
            entry = decode_record(base64.b64decode(row["data"])).record.entry
            if entry.run == run:
                found.append((entry.kind, entry.actor["user"]))
        start = page["next"]
    return found


def _post(s, token: str, *entries) -> tuple[int, dict]:
    return s.call("POST", f"{A}/entries", token, {"entries": list(entries)})


def test_a_writer_cannot_end_or_add_to_another_users_run(team_server):
    from mltrail.record.recorder import new_run_id

    s = team_server
    alice, bob = s.token("writer", "owner-alice"), s.token("writer", "owner-bob")
    run = new_run_id()
    status, answer = _post(
        s,
        alice,
        s.entry("owner-alice", "run.started", {"source": "api"}, run=run),
        s.entry(
            "owner-alice", "run.params", {"source": "api", "params": {"lr": 1}}, run=run
        ),
    )
    assert status == 201, answer

    ended = {"status": "succeeded", "exit_code": 0}
    for batch in (
        [s.entry("owner-bob", "run.ended", ended, run=run)],
        [
            s.entry(
                "owner-bob",
                "run.params",
                {"source": "api", "params": {"lr": 9}},
                run=run,
            )
        ],
        # a batch with one bad entry is refused whole, its valid note included
        [
            s.entry("owner-bob", "note", {"text": "fine"}, run=run),
            s.entry(
                "owner-bob",
                "run.artifact",
                {"path": "model.pt", "exists": True},
                run=run,
            ),
        ],
        # another user's start of an already started run
        [s.entry("owner-bob", "run.started", {"source": "api"}, run=run)],
    ):
        status, answer = _post(s, bob, *batch)
        assert status == 403, answer
        message = answer["error"]["message"]
        assert f"run {run}" in message, message
        assert "'owner-alice'" in message, message
        assert "nothing was stored" in message
    assert _run_records(s, run) == [
        ("run.started", "owner-alice"),
        ("run.params", "owner-alice"),
    ]

    # what stays allowed: a note by anyone, an admin's records, the owner's own
    assert (
        _post(s, bob, s.entry("owner-bob", "note", {"text": "lr high"}, run=run))[0]
        == 201
    )
    admin_note = s.entry(
        "admin", "run.params", {"source": "api", "params": {"x": 1}}, run=run
    )
    assert _post(s, s.token("admin"), admin_note)[0] == 201
    assert (
        _post(s, alice, s.entry("owner-alice", "run.ended", ended, run=run))[0] == 201
    )
    assert [k for k, _ in _run_records(s, run)][-3:] == [
        "note",
        "run.params",
        "run.ended",
    ]


def test_a_run_not_started_yet_is_its_first_writers(team_server):
    """Ranks above 0 of a distributed run may write before rank 0's start (all
    one user): they pass; another user may then neither start that run id nor
    add to it. A run started in the batch itself is the batch's user's."""
    from mltrail.record.recorder import new_run_id

    s = team_server
    alice, bob = s.token("writer", "owner-alice"), s.token("writer", "owner-bob")
    rank1 = {"cpu": {}, "memory": {}, "gpus": [], "rank": {"rank": 1, "world_size": 2}}
    run = new_run_id()
    assert (
        _post(s, alice, s.entry("owner-alice", "run.hardware", rank1, run=run))[0]
        == 201
    )
    status, answer = _post(
        s, bob, s.entry("owner-bob", "run.started", {"source": "api"}, run=run)
    )
    assert status == 403, answer
    assert "has not started" in answer["error"]["message"]
    assert (
        _post(
            s, alice, s.entry("owner-alice", "run.started", {"source": "api"}, run=run)
        )[0]
        == 201
    )

    own = new_run_id()  # started and added to in one batch
    status, answer = _post(
        s,
        bob,
        s.entry("owner-bob", "run.started", {"source": "api"}, run=own),
        s.entry("owner-bob", "run.ended", {"status": "succeeded"}, run=own),
    )
    assert status == 201, answer
    assert _run_records(s, run) == [
        ("run.hardware", "owner-alice"),
        ("run.started", "owner-alice"),
    ]


def test_refused_appends_among_concurrent_ones_fail_alone(team_server):
    """Appends arriving together are committed as one group: a refused one must
    fail alone, every other (the owner's) be stored."""
    from mltrail.record.recorder import new_run_id

    s = team_server
    alice, bob = s.token("writer", "owner-alice"), s.token("writer", "owner-bob")
    run = new_run_id()
    start = s.entry("owner-alice", "run.started", {"source": "api"}, run=run)
    assert _post(s, alice, start)[0] == 201
    statuses: dict[tuple[str, int], int] = {}

    def post(user: str, token: str, i: int) -> None:
        body = {"source": "api", "params": {"i": i}}
        statuses[user, i] = _post(s, token, s.entry(user, "run.params", body, run=run))[
            0
        ]

    threads = [
        threading.Thread(target=post, args=(user, token, i))
        for i in range(6)
        for user, token in (("owner-alice", alice), ("owner-bob", bob))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {k: v for k, v in statuses.items() if k[0] == "owner-bob"} == {
        ("owner-bob", i): 403 for i in range(6)
    }
    assert {k: v for k, v in statuses.items() if k[0] == "owner-alice"} == {
        ("owner-alice", i): 201 for i in range(6)
    }
    assert {user for _, user in _run_records(s, run)} == {"owner-alice"}


def test_a_writer_cannot_lock_another_users_run(team_server):
    """bob appended ``model.sealed`` naming alice's running run in its ``runs``
    (the entry itself in no run, so the run-owner check passed it): from then
    on the ledger refused every record of her run but notes, her ``run.ended``
    included. Now a writer locks only runs it started (or first wrote, while
    not started); naming another's, or a run id nobody wrote yet (which would
    refuse its owner's start), is refused, 403, and nothing stored. An admin
    locks any run."""
    from mltrail.record.recorder import new_run_id

    s = team_server
    alice, bob = s.token("writer", "lock-alice"), s.token("writer", "lock-bob")
    run, later, own = new_run_id(), new_run_id(), new_run_id()
    started = s.entry("lock-alice", "run.started", {"source": "api"}, run=run)
    assert _post(s, alice, started)[0] == 201
    for runs in ([run], [later], [own, run]):
        sealed = {"model": "ab" * 32, "model_type": "model", "runs": runs}
        status, answer = _post(
            s,
            bob,
            s.entry("lock-bob", "run.started", {"source": "api"}, run=own),
            s.entry("lock-bob", "model.sealed", sealed),
        )
        assert status == 403, answer
        assert runs[-1] in answer["error"]["message"]
    ended = {"status": "succeeded", "exit_code": 0}
    status, answer = _post(s, alice, s.entry("lock-alice", "run.ended", ended, run=run))
    assert status == 201, answer
    assert _run_records(s, run) == [
        ("run.started", "lock-alice"),
        ("run.ended", "lock-alice"),
    ]
    assert _run_records(s, own) == []

    # her own run she locks; his own, started in the same append, he locks
    sealed = {"model": "cd" * 32, "model_type": "model", "runs": [run]}
    assert _post(s, alice, s.entry("lock-alice", "model.sealed", sealed))[0] == 201
    sealed = {"model": "ef" * 32, "model_type": "model", "runs": [own]}
    status, answer = _post(
        s,
        bob,
        s.entry("lock-bob", "run.started", {"source": "api"}, run=own),
        s.entry("lock-bob", "model.sealed", sealed),
    )
    assert status == 201, answer
    sealed = {"model": "ab" * 32, "model_type": "model", "runs": [later]}
    admin = s.token("admin")
    assert _post(s, admin, s.entry("admin", "model.sealed", sealed))[0] == 201
