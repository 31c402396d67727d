"""An insider edits index.db (unsigned, derived): read commands must not lie.

A home is recorded through the CLI (three trainings that read one file and
write a safetensors model, two promotions); each test copies it, edits the
index with sqlite3 as whoever can write the home could, and checks that the
read command's answer is what the signed records say, with a warning on
stderr that the index disagreed and was rebuilt (ADR 0010, amendment of
2026-12-07). Omissions no answer can see are reported by `mltrail verify`.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from datetime import UTC, datetime

import pytest

from cli_runner import mltrail

WARNING = "disagreed with the signed records"

TRAIN = """\
import json, os, struct, sys
lr = float(sys.argv[1])
header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})
header = header.encode() + b" " * (-len(header) % 8)
os.makedirs("model", exist_ok=True)
with open("model/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header + struct.pack("<4f", *[lr] * 4))
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A home with runs ft-0.2, ft-0.5, ft-0.7 (model files kept as m-<lr>.safetensors)
    and ft-0.5 then ft-0.7 promoted to production."""
    root = tmp_path_factory.mktemp("recorded")
    project, home = root / "project", root / "home"
    project.mkdir()
    (project / "train.csv").write_text("a,b\n1,2\n")
    (project / "train.py").write_text(TRAIN)
    assert mltrail(home, "init", cwd=project).returncode == 0
    for lr in ("0.2", "0.5", "0.7"):
        done = mltrail(
            home, "run", "-q", "--name", f"ft-{lr}", "--data", "train=train.csv",
            "--output", "model", "--", sys.executable, "train.py", lr, "--lr", lr,
            cwd=project,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        shutil.copy(
            project / "model" / "model.safetensors", project / f"m-{lr}.safetensors"
        )
    for lr in ("0.5", "0.7"):
        done = mltrail(
            home, "model", "promote", f"m-{lr}.safetensors", "--stage", "production",
            "--override", "test", cwd=project,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    runs = json.loads(mltrail(home, "runs", "--json", cwd=project).stdout)
    ids = {r["name"]: r["id"] for r in runs}
    with sqlite3.connect(home / "index.db") as db:
        models = dict(db.execute("SELECT run, model FROM models"))
    return root, {"runs": ids, "models": {n: models[i] for n, i in ids.items()}}


@pytest.fixture
def case(recorded, tmp_path):
    """A fresh copy of the recorded home: (run CLI, edit the index, facts, home)."""
    root, facts = recorded
    shutil.copytree(root, tmp_path / "copy", symlinks=True)
    home, project = tmp_path / "copy" / "home", tmp_path / "copy" / "project"

    def cli(*args):
        return mltrail(home, *args, cwd=project)

    def edit(*statements, params=()):
        db = sqlite3.connect(home / "index.db")
        for sql in statements:
            db.execute(sql, params)
        db.commit()
        db.close()

    return cli, edit, facts, home


def _json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_an_untouched_index_gives_no_warning(case):
    cli, _, facts, _ = case
    model = facts["models"]["ft-0.5"]
    for args in (
        ("runs", "--param", "lr=0.5", "--json"),
        ("show", "ft-0.5", "--json"),
        ("trace", model, "--json"),
        ("lineage", "m-0.5.safetensors"),
        ("model", "history", "--at", "2999-01-01", "--json"),
        ("flags", "--json"),
        ("diff", "ft-0.2", "ft-0.5"),
    ):
        done = cli(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert WARNING not in done.stderr, args
    verified = cli("verify", "--json")
    assert verified.returncode == 0
    assert not [p for p in _json(verified)["problems"] if p["code"] == "index"]


def test_trace_of_a_model_mapped_to_another_run(case):
    cli, edit, facts, _home = case
    model, other = facts["models"]["ft-0.5"], facts["runs"]["ft-0.2"]
    edit(
        f"UPDATE models SET run = '{other}' WHERE model = '{model}'",
        f"UPDATE data SET run = '{other}' WHERE model = '{model}'",
    )
    done = cli("trace", model, "--json")
    answer = _json(done)
    assert [r["run"]["name"] for r in answer["made_by"]] == ["ft-0.5"]
    assert answer["made_by"][0]["params"]["lr"] == 0.5
    assert WARNING in done.stderr
    text = cli("trace", model)  # rebuilt: the text form agrees, without a warning
    assert "made by run " + facts["runs"]["ft-0.5"] in text.stdout
    assert WARNING not in text.stderr


def test_trace_by_path_after_output_hashes_swapped(case):
    cli, edit, facts, home = case
    real, other = facts["runs"]["ft-0.5"], facts["runs"]["ft-0.2"]
    with sqlite3.connect(home / "index.db") as db:
        (sha,) = db.execute(
            "SELECT sha256 FROM data WHERE run = ? AND direction = 'out'", (real,)
        ).fetchone()
    edit(
        f"UPDATE data SET sha256 = 'ff' WHERE sha256 = '{sha}'",
        f"UPDATE data SET sha256 = '{sha}' WHERE run = '{other}' AND direction = 'out'",
    )
    done = cli("trace", "m-0.5.safetensors", "--json")
    assert [r["run"]["id"] for r in _json(done)["made_by"]] == [real]
    assert WARNING in done.stderr


def test_runs_lists_a_run_whose_param_or_status_was_changed(case):
    cli, edit, facts, _home = case
    runs = facts["runs"]
    edit(
        f"UPDATE params SET value = '0.5' WHERE run = '{runs['ft-0.2']}' AND key = 'lr'"
    )
    done = cli("runs", "--param", "lr=0.5", "--json")
    assert [r["name"] for r in _json(done)] == ["ft-0.5"]
    assert WARNING in done.stderr
    edit(
        f"UPDATE runs SET status = 'failed', exit_code = 1 WHERE id = '{runs['ft-0.7']}'"
    )
    done = cli("runs", "--status", "failed", "--json")
    assert _json(done) == []
    assert WARNING in done.stderr
    edit(f"UPDATE runs SET started_ts = 0 WHERE id = '{runs['ft-0.7']}'")
    done = cli("runs", "--until", "1971-01-01")
    assert done.returncode == 0
    assert "ft-0.7" not in done.stdout
    assert WARNING in done.stderr


def test_show_of_a_run_pointed_at_another_runs_records(case):
    cli, edit, facts, _home = case
    real, other = facts["runs"]["ft-0.5"], facts["runs"]["ft-0.2"]
    edit(
        f"UPDATE records SET run = NULL WHERE run = '{real}'",
        f"UPDATE records SET run = '{real}' WHERE run = '{other}'",
    )
    done = cli("show", real, "--json")
    shown = _json(done)
    assert shown["run"]["id"] == real
    assert shown["params"][0]["params"] == {"lr": 0.5}
    assert WARNING in done.stderr


def test_show_by_name_after_names_swapped(case):
    cli, edit, facts, _home = case
    real, other = facts["runs"]["ft-0.5"], facts["runs"]["ft-0.2"]
    edit(
        f"UPDATE runs SET name = 'ft-0.5' WHERE id = '{other}'",
        f"UPDATE runs SET name = 'ft-0.2' WHERE id = '{real}'",
    )
    done = cli("show", "ft-0.5", "--json")
    assert _json(done)["run"]["id"] == real
    assert WARNING in done.stderr


def test_lineage_with_a_false_or_a_hidden_dependency(case):
    cli, edit, facts, _home = case
    real, other = facts["runs"]["ft-0.5"], facts["runs"]["ft-0.2"]
    edit(  # ft-0.5 claimed to have read what ft-0.2 wrote
        f"INSERT INTO data SELECT '{real}', seq, 'in', 'extra', path, dataset, sha256, "
        f"files, bytes, manifest, NULL, user, own FROM data WHERE run = '{other}' "
        "AND direction = 'out'"
    )
    done = cli("lineage", "m-0.5.safetensors")
    assert done.returncode == 0, done.stderr
    assert "ft-0.2" not in done.stdout
    assert "train.csv" in done.stdout
    assert WARNING in done.stderr
    edit(f"DELETE FROM data WHERE run = '{real}' AND direction = 'in'")
    done = cli("lineage", "m-0.5.safetensors")
    assert "train.csv" in done.stdout
    assert WARNING in done.stderr


def test_model_history_at_a_date_after_a_promotion_was_moved(case):
    cli, edit, facts, home = case
    latest = "model:" + facts["models"]["ft-0.7"]
    with sqlite3.connect(home / "index.db") as db:
        (ts,) = db.execute(
            "SELECT ts FROM promotions WHERE model = ?", (latest,)
        ).fetchone()
    at = datetime.fromtimestamp(ts + 3600, UTC).strftime("%Y-%m-%dT%H:%MZ")
    # the latest promotion made to look ten days later: the one before it holds
    edit("UPDATE promotions SET ts = ts + 864000 WHERE model = ?", params=(latest,))
    done = cli("model", "history", "--at", at, "--json")
    assert [e["model"] for e in _json(done)] == [latest]
    assert WARNING in done.stderr
    edit(f"UPDATE promotions SET model = '{latest}' WHERE model <> '{latest}'")
    done = cli("model", "history", "--json")
    assert [e["model"] for e in _json(done)] == [
        "model:" + facts["models"]["ft-0.5"],
        latest,
    ]
    assert WARNING in done.stderr


def test_a_flag_no_record_raised(case):
    cli, edit, facts, _home = case
    model = "model:" + facts["models"]["ft-0.5"]
    edit(
        "INSERT INTO flags (seq, model, run, source, reason, time) "
        "VALUES (1, ?, NULL, 'crm', 'source crm changed', '2026-01-01T00:00:00Z')",
        params=(model,),
    )
    done = cli("flags", "--json")
    assert _json(done) == []
    assert WARNING in done.stderr


def test_verify_warns_of_a_run_deleted_from_the_index(case):
    cli, edit, facts, _home = case
    gone = facts["runs"]["ft-0.5"]
    edit(
        f"DELETE FROM runs WHERE id = '{gone}'",
        f"DELETE FROM params WHERE run = '{gone}'",
    )
    listed = _json(cli("runs", "--json"))  # an omission no answer can see
    assert gone not in [r["id"] for r in listed]
    done = cli("verify", "--json")
    assert done.returncode == 0  # the ledger is intact: the index is derived
    report = json.loads(done.stdout)
    index = [p for p in report["problems"] if p["code"] == "index"]
    assert index
    assert all(p["severity"] == "warning" for p in index)
    assert any("runs:" in p["message"] and gone in p["message"] for p in index)
    assert "mltrail reindex" in index[0]["message"]
    assert "disagrees with the records" in cli("verify").stdout
    skipped = json.loads(cli("verify", "--no-index", "--json").stdout)
    assert [p for p in skipped["problems"] if p["code"] == "index"] == []
    assert cli("reindex").returncode == 0
    assert gone in [r["id"] for r in _json(cli("runs", "--json"))]


def test_an_index_told_it_holds_records_it_never_ingested(case):
    cli, edit, _facts, home = case
    before = home.parent / "index-before.db"
    shutil.copy(home / "index.db", before)
    assert (
        cli(
            "run", "-q", "--name", "hidden", "--", sys.executable, "-c", "pass"
        ).returncode
        == 0
    )
    for suffix in ("", "-wal", "-shm"):
        (home / f"index.db{suffix}").unlink(missing_ok=True)
    shutil.copy(before, home / "index.db")
    with sqlite3.connect(home / "ledger.db") as led:
        seq, digest = led.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    edit("UPDATE meta SET value = ? WHERE key = 'last_seq'", params=(str(seq),))
    edit(
        "UPDATE meta SET value = ? WHERE key = 'last_hash'",
        params=(bytes(digest).hex(),),
    )
    done = cli("runs", "--name", "hidden", "--json")
    assert [r["name"] for r in _json(done)] == ["hidden"]
    assert "rebuilt from the ledger" in done.stderr
    # the same, with a forged last records row: only verify can see the rest
    for suffix in ("", "-wal", "-shm"):
        (home / f"index.db{suffix}").unlink(missing_ok=True)
    shutil.copy(before, home / "index.db")
    edit("UPDATE meta SET value = ? WHERE key = 'last_seq'", params=(str(seq),))
    edit(
        "UPDATE meta SET value = ? WHERE key = 'last_hash'",
        params=(bytes(digest).hex(),),
    )
    edit(
        "INSERT INTO records (seq, run, kind, time, ts) "
        "VALUES (?, NULL, 'note', '2026-01-01T00:00:00Z', 0)",
        params=(seq,),
    )
    report = _json(cli("verify", "--json"))
    index = [p["message"] for p in report["problems"] if p["code"] == "index"]
    assert any("runs:" in m and "hidden" in m for m in index)


def test_a_long_answer_checks_its_first_and_last_runs_and_verify_the_rest(
    case, monkeypatch
):
    """An answer of more runs than MAX_CHECKED_RUNS checks the first and last
    ones shown (a listing of every run of a large ledger would otherwise rebuild
    the index per answer); a lie in the middle is left to `mltrail verify`."""
    from mltrail.audit.query import RunFilter, search_runs
    from mltrail.index import check, open_index
    from mltrail.ledger.home import open_home

    _, edit, facts, home = case
    runs = facts["runs"]
    monkeypatch.setattr(check, "MAX_CHECKED_RUNS", 2)
    lie = "UPDATE runs SET status = 'failed' WHERE id = '{}'"
    edit(lie.format(runs["ft-0.5"]))  # the middle one of three, oldest first
    opened = open_home(home)
    index = open_index(opened)
    warnings: list[str] = []
    index.warn = warnings.append
    try:
        shown = search_runs(opened, index, RunFilter())
        assert [s.name for s in shown] == ["ft-0.2", "ft-0.5", "ft-0.7"]
        assert warnings == []  # not checked: the middle of a long answer
        edit(lie.format(runs["ft-0.7"]))  # the last one shown is checked
        index.checked_runs.clear()
        search_runs(opened, index, RunFilter())
        assert len(warnings) == 1
        assert WARNING in warnings[0]
    finally:
        index.close()
        opened.close()
