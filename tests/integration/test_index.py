"""The derived index on real SQLite files: catching up, rebuilding, concurrency."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from mltrail.index import INDEX_FILE, Index, open_index
from mltrail.index.tables import INDEX_VERSION
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft


def _runs(home, first, count):
    drafts = []
    for i in range(first, first + count):
        run = f"run-{i:05d}"
        drafts += [
            Draft("run.started", {"source": "api", "name": f"n{i % 3}"}, run),
            Draft("run.params", {"source": "api", "params": {"i": i, "lr": 0.1}}, run),
            Draft("run.ended", {"status": "succeeded", "exit_code": 0}, run),
        ]
    home.ledger.append_many(drafts)


def _home(tmp_path):
    init_home(tmp_path / "home", origin="test.mltrail.local/index")
    return open_home(tmp_path / "home")


def test_sync_ingests_only_what_is_new(tmp_path):
    home = _home(tmp_path)
    _runs(home, 0, 10)
    index = open_index(home)
    assert index.query("SELECT count(*) FROM runs")[0][0] == 10
    assert index.sync() == 0
    _runs(home, 10, 5)
    assert index.sync() == 15
    assert index.query("SELECT count(*) FROM runs")[0][0] == 15
    assert index.query("SELECT count(*) FROM params WHERE key = 'lr'")[0][0] == 15
    assert index.last_seq == home.ledger.head().size - 1
    home.close()


def test_an_index_of_another_version_or_ledger_is_rebuilt(tmp_path):
    home = _home(tmp_path)
    _runs(home, 0, 4)
    open_index(home).close()
    db = sqlite3.connect(tmp_path / "home" / INDEX_FILE)
    db.execute("DROP TABLE data")
    db.execute("CREATE TABLE data (run TEXT)")  # an older layout
    db.execute("UPDATE meta SET value = '0' WHERE key = 'version'")
    db.commit()
    db.close()
    index = open_index(home)
    assert index.query("SELECT value FROM meta WHERE key = 'version'") == [
        (INDEX_VERSION,)
    ]
    assert index.query("SELECT count(*) FROM runs")[0][0] == 4
    # a last record whose hash differs (a restored backup, another ledger)
    index.conn.execute(
        "UPDATE meta SET value = ? WHERE key = 'last_hash'", ("00" * 32,)
    )
    assert index.sync() == home.ledger.head().size
    assert index.query("SELECT count(*) FROM runs")[0][0] == 4
    # a ledger shorter than what the index saw
    index.conn.execute("UPDATE meta SET value = '999' WHERE key = 'last_seq'")
    assert index.sync() == home.ledger.head().size
    home.close()


def test_a_read_only_home_gets_an_index_in_memory(tmp_path):
    home = _home(tmp_path)
    _runs(home, 0, 3)
    home.close()
    folder = tmp_path / "home"
    subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
    try:  # read-only whoever runs this, root included (see storage.readonly)
        home = open_home(folder, writable=False)
        index = open_index(home)
        assert index.path is None
        assert index.query("SELECT count(*) FROM runs")[0][0] == 3
        home.close()
        assert sorted(p.name for p in folder.iterdir()) == [
            "keys", "ledger.db", "ledger.json", "witness"
        ]  # fmt: skip
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)


def test_concurrent_readers_agree(tmp_path):
    home = _home(tmp_path)
    _runs(home, 0, 300)
    home.close()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mltrail",
                "--home",
                str(tmp_path / "home"),
                "runs",
                "-n",
                "0",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1
    assert outputs[0][0].count('"id"') == 300


def test_rebuild_gives_the_same_rows(tmp_path):
    home = _home(tmp_path)
    _runs(home, 0, 20)
    index = Index(tmp_path / "home" / INDEX_FILE, home.ledger)
    index.sync()
    before = index.query("SELECT * FROM params ORDER BY run, key")
    seen = []
    assert index.rebuild(lambda done, total: seen.append((done, total))) == 61
    assert seen[-1] == (61, 61)
    assert index.query("SELECT * FROM params ORDER BY run, key") == before
    home.close()


def test_runs_by_parameter_match_alike_however_the_query_is_driven(
    tmp_path, monkeypatch
):
    """A common value (or name glob) is matched run by run (newest first, up to the
    limit), a rare one through its index: both give the same runs, in order."""
    from mltrail.audit import query
    from mltrail.audit.query import RunFilter, TimeWindow, search_runs

    home = _home(tmp_path)
    _runs(home, 0, 60)
    index = open_index(home)
    started = sorted(r[0] for r in index.query("SELECT started_ts FROM runs"))
    specs = [
        RunFilter(params=[("lr", "0.1")], limit=7),
        RunFilter(params=[("lr", "0.1")], limit=None),
        RunFilter(params=[("lr", "0.1"), ("i", "12")], limit=5),
        RunFilter(params=[("i", "12")], limit=3),
        RunFilter(params=[("lr", "0.2")], limit=3),
        RunFilter(
            params=[("lr", "0.1")],
            window=TimeWindow(started[10], started[40]),
            limit=4,
        ),
        RunFilter(name="n1*", limit=3),
        RunFilter(name="n1", window=TimeWindow(started[10], None), limit=2),
        RunFilter(name="x*", limit=3),
    ]
    answers = []
    for threshold in (1, 10**9):
        monkeypatch.setattr(query, "_COMMON_PARAM", threshold)
        answers.append([[s.id for s in search_runs(home, index, f)] for f in specs])
    assert answers[0] == answers[1]
    assert answers[0][0] == [f"run-{i:05d}" for i in range(53, 60)]
    assert answers[0][2] == ["run-00012"]
    assert answers[0][4] == []
    assert answers[0][5] == [f"run-{i:05d}" for i in range(36, 40)]
    assert answers[0][6] == ["run-00052", "run-00055", "run-00058"]
    assert answers[0][7] == ["run-00055", "run-00058"]
    assert answers[0][8] == []
    index.close()
    home.close()


def test_trace_by_model_prefix_uses_an_index(tmp_path):
    """Model ids and written datasets are looked up by prefix through indexes."""
    home = _home(tmp_path)
    _runs(home, 0, 2)
    index = open_index(home)
    for sql in (
        "SELECT model FROM data WHERE model >= 'ab' AND model < 'abg'",
        "SELECT dataset FROM output_files WHERE dataset >= 'ab' AND dataset < 'abg'",
    ):
        plan = " ".join(str(r[3]) for r in index.query(f"EXPLAIN QUERY PLAN {sql}"))
        assert "SCAN" not in plan, plan
        assert "INDEX" in plan, plan
    index.close()
    home.close()
