"""MLflow interop against a real MLflow store (SQLite backend) made here: import
(values equal MLflow's own, idempotent) and the mirror of ``mlflow.log_*``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from optional_extras import require_extra

(mlflow,) = require_extra("mlflow", "mlflow")

import mltrail  # noqa: E402
from mltrail.audit.query import load_run  # noqa: E402
from mltrail.index import open_index  # noqa: E402
from mltrail.integrations import mlflow as mlflow_integration  # noqa: E402
from mltrail.integrations.mlflow import (  # noqa: E402
    import_mlflow,
    imported_run_id,
    mirror,
    unmirror,
)
from mltrail.ledger.home import open_home  # noqa: E402

COMMIT = "a" * 40
# MLflow's SQLAlchemy store uses loader options SQLAlchemy 2.1 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def mltrail_cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "MLTRAIL_RUN_ID"}
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )  # fmt: skip


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory):
    """An MLflow SQLite database with its tables made (MLflow's migrations take
    seconds; each test copies this file instead)."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def new_store(empty_db, folder):
    """A client and URI of a new MLflow store ``folder/mlflow.db``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_db, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return mlflow.tracking.MlflowClient(tracking_uri=uri), uri


@pytest.fixture
def store(tmp_path, isolated_home, empty_db):
    """A SQLite MLflow store with two runs in experiment 'churn' and one elsewhere."""
    client, uri = new_store(empty_db, tmp_path)
    churn = client.create_experiment("churn", artifact_location=str(tmp_path / "art"))
    other = client.create_experiment("other", artifact_location=str(tmp_path / "art2"))
    good = client.create_run(churn, run_name="good", tags={
        "mlflow.source.git.commit": COMMIT, "mlflow.user": "alice", "team": "risk"})  # fmt: skip
    client.log_param(good.info.run_id, "lr", "0.01")
    client.log_param(good.info.run_id, "api_key", "sk-live-0123456789abcdefABCDEF")
    for step, loss in enumerate([0.9, 0.5, 0.25]):
        client.log_metric(good.info.run_id, "loss", loss, step=step)
    client.log_text(good.info.run_id, "weights", "model.txt")
    client.set_terminated(good.info.run_id, "FINISHED")
    bad = client.create_run(churn, run_name="bad")
    client.set_terminated(bad.info.run_id, "FAILED")
    lone = client.create_run(other, run_name="lone")
    client.set_terminated(lone.info.run_id, "FINISHED")
    ok(mltrail_cli("init", cwd=tmp_path))
    return uri, client, good.info.run_id, bad.info.run_id, lone.info.run_id


def _head(home_path):
    home = open_home(home_path, writable=False)
    try:
        return home.ledger.head().size
    finally:
        home.close()


def test_import_matches_mlflow_and_is_idempotent(store, isolated_home, tmp_path):
    uri, client, good, bad, lone = store
    out = ok(mltrail_cli("import", "mlflow", "--tracking-uri", uri, "--experiment", "churn",
                         "--json", cwd=tmp_path)).stdout  # fmt: skip
    assert {r["mlflow_run_id"] for r in json.loads(out)["imported"]} == {good, bad}
    size = _head(isolated_home)
    proc = mltrail_cli("import", "mlflow", "--tracking-uri", uri, "--experiment", "churn",
                       "--json", cwd=tmp_path)  # fmt: skip
    again = json.loads(ok(proc).stdout)
    assert again["imported"] == []
    assert set(again["skipped"]) == {good, bad}
    assert again["changed"] == []  # a run as it was imported is no change
    assert _head(isolated_home) == size
    home = open_home(isolated_home, writable=False)
    index = open_index(home)
    try:
        view = load_run(home, index, imported_run_id(good))
        theirs = client.get_run(good)
        started = view.body("run.started")
        assert started["imported"]["run_id"] == good
        assert started["imported"]["user"] == theirs.info.user_id
        assert started["imported"]["status"] == "FINISHED"
        assert started["imported"]["tags"]["team"] == "risk"
        assert started["name"] == "good"
        assert view.body("run.code")["commit"] == COMMIT
        params = {k: v for k, (v, _) in view.params().items()}
        assert params["lr"] == "0.01"
        assert "sk-live" not in json.dumps(params)
        metrics = view.body("run.metrics")
        assert metrics["series"]["loss"]["count"] == 3
        assert metrics["series"]["loss"]["last"] == 0.25
        points = json.loads(home.ledger.get_blob(metrics["points"]["blob"]))
        history = client.get_metric_history(good, "loss")
        assert points["loss"]["values"] == [m.value for m in history]
        artifact = view.body("run.artifact")
        assert artifact["files"] == 1
        assert view.body("run.ended")["status"] == "succeeded"
        assert (
            load_run(home, index, imported_run_id(bad)).body("run.ended")["status"]
            == "failed"
        )
        assert not index.query(
            "SELECT 1 FROM runs WHERE id = ?", (imported_run_id(lone),)
        )
    finally:
        index.close()
        home.close()
    ok(mltrail_cli("verify", cwd=tmp_path))


def _points_of(home_path, mlflow_run_id):
    """The metric points the ledger holds for an imported run, by name."""
    home = open_home(home_path, writable=False)
    try:
        run = imported_run_id(mlflow_run_id)
        bodies = [
            r.entry.body for r in home.ledger.records()
            if r.entry.run == run and r.entry.kind == "run.metrics"
        ]  # fmt: skip
        if not bodies:
            return {}
        (body,) = bodies
        return json.loads(home.ledger.get_blob(body["points"]["blob"]))
    finally:
        home.close()


def _import_in_process(home_path, uri, **options):
    seen = []
    home = open_home(home_path)
    index = open_index(home)
    try:
        result = import_mlflow(
            home, index, uri, on_run=lambda r, skipped: seen.append((r, skipped)),
            **options,
        )  # fmt: skip
    finally:
        index.close()
        home.close()
    return result, seen


@pytest.mark.parametrize("reader", ["bulk", "bulk over its limit", "run by run"])
def test_batched_import_keeps_every_point_as_mlflow_has_it(
    tmp_path, isolated_home, monkeypatch, reader, empty_db
):
    """Runs written a few per append, histories read for a batch at once (or one
    run at a time): every point of every run equals MLflow's own history."""
    client, uri = new_store(empty_db, tmp_path)
    exp = client.create_experiment("many", artifact_location=str(tmp_path / "art"))
    ids = []
    for n in range(7):
        rid = client.create_run(exp, run_name=f"r{n}").info.run_id
        ids.append(rid)
        client.log_param(rid, "n", str(n))
        for step in range(n):  # run 0 logs no metric at all
            client.log_metric(rid, "loss", 1 / (step + 1) + n, step=step, timestamp=10)
            if step % 2 == 0:
                client.log_metric(rid, "acc", step * 0.1, step=step)
        if n == 5:  # a step logged twice, and a value that is not a number
            client.log_metric(rid, "loss", 42.0, step=1, timestamp=5)
            client.log_metric(rid, "acc", float("nan"), step=9)
        client.set_terminated(rid, "FINISHED")
    ok(mltrail_cli("init", cwd=tmp_path))
    monkeypatch.setattr(mlflow_integration, "_BATCH", 3)
    if reader == "bulk over its limit":
        monkeypatch.setattr(mlflow_integration, "_BULK_POINTS", 4)
    elif reader == "run by run":
        monkeypatch.setattr(mlflow_integration, "_bulk_reader", lambda client: None)

    first, seen = _import_in_process(isolated_home, uri, experiments=("many",))

    assert first.imported == [r for r, _ in seen]
    assert first.skipped == []
    assert set(first.imported) == set(ids)
    for rid in ids:
        expected = {}
        for key in client.get_run(rid).data.metrics:
            history = sorted(client.get_metric_history(rid, key), key=lambda m: m.step)
            expected[key] = {
                "steps": [m.step for m in history],
                "values": [m.value if m.value == m.value else "nan" for m in history],
            }
        assert _points_of(isolated_home, rid) == expected, rid
    # step 1 twice: the earlier-dated value first, as get_metric_history gives them
    assert _points_of(isolated_home, ids[5])["loss"]["values"][1:3] == [42.0, 5.5]
    again, seen = _import_in_process(isolated_home, uri)
    assert again.imported == []
    assert sorted(again.skipped) == sorted(ids)
    assert [r for r, skipped in seen if skipped] == again.skipped
    assert mltrail.verify(isolated_home).ok


def test_unknown_experiment_is_an_input_error(store, tmp_path):
    uri = store[0]
    proc = mltrail_cli("import", "mlflow", "--tracking-uri", uri, "--experiment", "nope",
                       cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no MLflow experiment 'nope'")


def test_mirror_sends_mlflow_logs_to_the_active_run(store, isolated_home):
    uri = store[0]
    mlflow.set_tracking_uri(uri)
    mirror()
    try:
        with mltrail.start_run(name="mirrored") as run, mlflow.start_run():
            mlflow.log_param("lr", 0.1)
            mlflow.log_params({"epochs": 3, "opt": "adam"})
            mlflow.log_metric("loss", 0.5, step=1)
            mlflow.log_metrics({"loss": 0.25, "acc": 0.9}, step=2)
            run_id = run.id
    finally:
        unmirror()
    home = open_home(isolated_home, writable=False)
    index = open_index(home)
    try:
        view = load_run(home, index, run_id)
        params = {k: v for k, (v, _) in view.params().items()}
        # (pytest's own argv is captured too: compare the mirrored keys)
        assert {k: params[k] for k in ("lr", "epochs", "opt")} == {
            "lr": 0.1, "epochs": 3, "opt": "adam"
        }  # fmt: skip
        series = {}
        for body in view.bodies("run.metrics"):
            series.update(body["series"])
        assert series["loss"]["last"] == 0.25
        assert series["loss"]["last_step"] == 2
        assert series["acc"]["last"] == 0.9
    finally:
        index.close()
        home.close()


def test_an_imported_run_never_passes_as_one_mltrail_watched(
    store, tmp_path, isolated_home
):
    """An imported run's commit is an MLflow tag anyone can set, its files were
    hashed at import, its times are the import's. ``export intoto`` signed it
    with the ledger key as a build by ``mltrail run`` (the tag's commit as the
    resolved code, nothing saying "imported"), and ``show`` printed the tag's
    commit as a clean work tree, with no word of MLflow."""
    uri, _, good, _, _ = store
    _import_in_process(isolated_home, uri, experiments=("churn",))
    run = imported_run_id(good)

    signed = mltrail_cli(
        "export", "intoto", run, "-o", tmp_path / "p.json", cwd=tmp_path
    )
    assert signed.returncode == 2, signed.stdout + signed.stderr
    assert signed.stderr.startswith(
        f"error: refusing to sign provenance: run {run} was imported from MLflow "
        f"(its run {good})"
    ), signed.stderr
    assert not (tmp_path / "p.json").exists()

    shown = ok(mltrail_cli("show", run, cwd=tmp_path)).stdout
    assert f"imported: from MLflow run {good}" in shown
    assert COMMIT in shown
    assert "clean" not in shown
    # a bundle hands the records on as they are, marked: it is still made
    ok(mltrail_cli("export", "bundle", run, "-o", tmp_path / "b.json", cwd=tmp_path))


def test_a_run_still_running_in_mlflow_waits_for_its_end(
    tmp_path, isolated_home, empty_db
):
    """An MLflow run still RUNNING was imported with a ``run.ended`` "aborted"
    MLflow never said, and once it ended, importing again skipped it as
    "already imported": the ledger kept the abort and lost every later point."""
    client, uri = new_store(empty_db, tmp_path)
    exp = client.create_experiment("live", artifact_location=str(tmp_path / "art"))
    live = client.create_run(exp, run_name="live").info.run_id
    client.log_metric(live, "loss", 0.9, step=0)
    ok(mltrail_cli("init", cwd=tmp_path))

    first, _ = _import_in_process(isolated_home, uri)
    assert first.imported == []  # not with an end MLflow never said
    assert (first.skipped, first.unfinished) == ([], [live])
    assert _points_of(isolated_home, live) == {}

    client.log_metric(live, "loss", 0.4, step=1)
    client.set_terminated(live, "FINISHED")
    again, _ = _import_in_process(isolated_home, uri)
    assert (again.imported, again.unfinished) == ([live], [])
    assert _points_of(isolated_home, live)["loss"]["values"] == [0.9, 0.4]
    home = open_home(isolated_home, writable=False)
    index = open_index(home)
    try:
        view = load_run(home, index, imported_run_id(live))
        assert view.body("run.ended")["status"] == "succeeded"
    finally:
        index.close()
        home.close()


def test_artifacts_outside_the_stores_folder_are_not_hashed(
    tmp_path, isolated_home, empty_db
):
    """The store names each run's artifact folder, and whoever wrote the store
    or its artifact folders can point it anywhere: an experiment whose artifact
    location is a private folder of this machine, or a run's ``artifacts``
    made a symbolic link to one. The import hashed them, and their file names,
    sizes and digests went into the ledger (and wherever it is pushed)."""
    from mltrail.ledger.home import init_home

    store_dir, private, linked_to = (tmp_path / n for n in ("store", "private", "ssh"))
    client, uri = new_store(empty_db, store_dir)
    mine = client.create_experiment("mine", artifact_location=str(store_dir / "art"))
    away = client.create_experiment("away", artifact_location=str(private))
    runs = {}
    for name, exp in (("inside", mine), ("away", away), ("linked", mine)):
        runs[name] = client.create_run(exp, run_name=name).info.run_id
        client.log_text(runs[name], "weights", "model.txt")
        client.set_terminated(runs[name], "FINISHED")
    (
        private / runs["away"] / "artifacts" / "plan-of-the-private-folder.txt"
    ).write_text("x")
    (linked_to / "id_private_key_name").parent.mkdir()
    (linked_to / "id_private_key_name").write_text("k")
    artifacts = store_dir / "art" / runs["linked"] / "artifacts"
    shutil.rmtree(artifacts)
    artifacts.symlink_to(linked_to, target_is_directory=True)
    init_home(isolated_home, env={})

    result, _ = _import_in_process(isolated_home, uri)

    assert sorted(result.imported) == sorted(runs.values())
    stored = b"\0".join(p.read_bytes() for p in isolated_home.rglob("*") if p.is_file())
    for name in (b"plan-of-the-private-folder", b"id_private_key_name"):
        assert name not in stored
    assert sorted(result.artifacts_elsewhere) == sorted([
        (runs["away"], str(private / runs["away"] / "artifacts")),
        (runs["linked"], str(artifacts)),
    ])  # fmt: skip
    home = open_home(isolated_home, writable=False)
    index = open_index(home)
    try:
        outputs = {
            name: load_run(home, index, imported_run_id(run)).bodies("run.artifact")
            for name, run in runs.items()
        }
    finally:
        index.close()
        home.close()
    assert [o["files"] for o in outputs["inside"]] == [1]
    assert outputs["away"] == outputs["linked"] == []

    # a folder the user names is hashed
    other = tmp_path / "other-home"
    init_home(other, env={})
    again, _ = _import_in_process(other, uri, artifact_roots=(private,))
    assert again.artifacts_elsewhere == [(runs["linked"], str(artifacts))]


def test_a_run_changed_in_mlflow_since_its_import_is_told(store, isolated_home):
    """Idempotence is keyed on the MLflow run id alone. A run ended again with
    another status, or given other tags, after its import (or another store's
    run under the same id) was "already imported", nothing said: the ledger's
    account and MLflow's now disagree and an auditor is never told."""
    uri, client, good, bad, _ = store
    client.set_tag(
        bad, "mlflow.note.content", "why it failed:\n" + "a long story " * 40
    )
    client.set_tag(
        bad, "deploy", "curl -H 'Authorization: Bearer hf_" + "Ab1" * 12 + "'"
    )
    first, _ = _import_in_process(isolated_home, uri, experiments=("churn",))
    assert sorted(first.imported) == sorted([good, bad])
    again, _ = _import_in_process(isolated_home, uri, experiments=("churn",))
    assert (again.imported, again.changed) == ([], [])  # the same run is no change

    client.set_terminated(bad, "FINISHED")  # failed when imported, now "finished"
    client.set_tag(good, "team", "someone else")
    later, _ = _import_in_process(isolated_home, uri, experiments=("churn",))
    assert later.imported == []
    assert sorted(later.changed) == sorted([good, bad])


def _started_of(home_path, mlflow_run_id):
    home = open_home(home_path, writable=False)
    index = open_index(home)
    try:
        return load_run(home, index, imported_run_id(mlflow_run_id)).body("run.started")
    finally:
        index.close()
        home.close()


def test_a_change_is_told_whatever_its_tags_look_like_or_its_blobs_left(
    tmp_path, isolated_home, empty_db
):
    """The check of a run already imported took any tags mapping shaped like a
    blob reference (tags ``blob``: ``sha256:…``, which the store's writer names)
    as one, and a blob it could not read (purged, or deleted from the store) as
    equal to anything: every later change of such a run's tags passed as none."""
    from mltrail.ledger.home import init_home

    client, uri = new_store(empty_db, tmp_path / "store")
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "store" / "a"))
    shaped = client.create_run(exp, tags={"blob": "sha256:" + "0" * 64}).info.run_id
    client.delete_tag(shaped, "mlflow.runName")  # its tags: the "reference" alone
    note = "why:\n" + "a long story " * 40
    noted, kept = (client.create_run(exp, run_name=n).info.run_id for n in "nk")
    for run in (shaped, noted, kept):
        if run != shaped:
            client.set_tag(run, "mlflow.note.content", note)
        client.set_terminated(run, "FINISHED")
    init_home(isolated_home, env={})
    first, _ = _import_in_process(isolated_home, uri)
    assert sorted(first.imported) == sorted([shaped, noted, kept])
    home = open_home(isolated_home)
    try:
        tags = _started_of(isolated_home, noted)["imported"]["tags"]
        # both notes erased: one text, one blob
        home.purge_blob(tags["mlflow.note.content"]["blob"], reason="erasure")
    finally:
        home.close()
    again, _ = _import_in_process(isolated_home, uri)
    assert again.changed == []  # a purged text unchanged is no change

    client.set_tag(shaped, "team", "someone else")
    client.set_tag(noted, "mlflow.note.content", "another story:\n" + "x " * 80)
    later, _ = _import_in_process(isolated_home, uri)
    assert sorted(later.changed) == sorted([shaped, noted])


def test_a_status_mltrail_does_not_know_is_no_end(tmp_path, isolated_home, empty_db):
    """Only RUNNING and SCHEDULED were held back: any other status (a store
    written by another tool or version: ``running``) was imported as ended,
    "aborted", and skipped ever after. And a run imported once, then made
    RUNNING again in MLflow (``mlflow.start_run(run_id=…)`` resumes it), was
    said to be "still running, not imported (import again once they end)":
    it was imported, and importing again skips it."""
    import sqlite3

    from mltrail.ledger.home import init_home

    client, uri = new_store(empty_db, tmp_path / "store")
    exp = client.create_experiment("e", artifact_location=str(tmp_path / "store" / "a"))
    odd, resumed = (client.create_run(exp, run_name=n).info.run_id for n in "or")
    for run in (odd, resumed):
        client.set_terminated(run, "FINISHED")
    db = sqlite3.connect(tmp_path / "store" / "mlflow.db")
    try:  # past MLflow's CHECK on the column, as another writer may be
        db.execute("PRAGMA ignore_check_constraints = ON")
        db.execute("UPDATE runs SET status = 'running' WHERE run_uuid = ?", (odd,))
        db.commit()
    finally:
        db.close()
    assert client.get_run(odd).info.status == "running"
    init_home(isolated_home, env={})

    first, _ = _import_in_process(isolated_home, uri)
    assert (first.imported, first.unfinished) == ([resumed], [odd])

    client.update_run(resumed, status="RUNNING")
    again, _ = _import_in_process(isolated_home, uri)
    assert (again.skipped, again.changed, again.unfinished) == (
        [resumed], [resumed], [odd]
    )  # fmt: skip


def test_an_artifact_link_swapped_after_its_check_is_not_followed(
    tmp_path, isolated_home, empty_db, monkeypatch
):
    """The artifact folder was checked by its real path, then hashed by the
    path the store gave: a link inside the store's folder, pointed out of it
    between the check and the walk, had the folder it then named hashed."""
    from mltrail.ledger.home import init_home

    store_dir, private = tmp_path / "store", tmp_path / "private"
    client, uri = new_store(empty_db, store_dir)
    exp = client.create_experiment("e", artifact_location=str(store_dir / "a"))
    run = client.create_run(exp, run_name="r").info.run_id
    client.log_text(run, "weights", "model.txt")
    client.set_terminated(run, "FINISHED")
    (private / "id_private_key_name").parent.mkdir()
    (private / "id_private_key_name").write_text("k")
    artifacts = store_dir / "a" / run / "artifacts"
    kept = store_dir / "kept" / run / "artifacts"  # inside, as MLflow lays out
    kept.parent.mkdir(parents=True)
    artifacts.rename(kept)
    artifacts.symlink_to(kept, target_is_directory=True)
    hash_folder = mlflow_integration.artifact_body

    def swapped_first(path, *args, **kwargs):  # what a racing writer does
        artifacts.unlink()
        artifacts.symlink_to(private, target_is_directory=True)
        return hash_folder(path, *args, **kwargs)

    monkeypatch.setattr(mlflow_integration, "artifact_body", swapped_first)
    init_home(isolated_home, env={})
    result, _ = _import_in_process(isolated_home, uri)
    assert result.imported == [run]
    stored = b"\0".join(p.read_bytes() for p in isolated_home.rglob("*") if p.is_file())
    assert b"id_private_key_name" not in stored
    assert b"model.txt" in stored


def test_a_store_in_a_folder_of_other_things_names_only_its_runs_folders(
    tmp_path, isolated_home, empty_db
):
    """The folder of a ``sqlite:///`` store was a root as a whole: a store kept
    (or received) in a home folder could name any folder of it, ``~/.ssh``,
    as a run's artifacts (the runs table's ``artifact_uri``), and it was
    hashed. In the store's folder only a run's own ``<run id>/artifacts``
    folder is hashed; a folder the user names with --artifact-root is trusted
    as a whole."""
    import sqlite3

    from mltrail.ledger.home import init_home

    home_like = tmp_path / "home-like"
    client, uri = new_store(empty_db, home_like)
    exp = client.create_experiment("e", artifact_location=str(home_like / "mlruns"))
    mine, theirs = (client.create_run(exp, run_name=n).info.run_id for n in "mt")
    for run in (mine, theirs):
        client.log_text(run, "weights", "model.txt")
        client.set_terminated(run, "FINISHED")
    (home_like / ".ssh").mkdir()
    (home_like / ".ssh" / "id_private_key_name").write_text("k")
    db = sqlite3.connect(home_like / "mlflow.db")
    try:
        db.execute(
            "UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?",
            (str(home_like / ".ssh"), theirs),
        )
        db.commit()
    finally:
        db.close()
    init_home(isolated_home, env={})

    result, _ = _import_in_process(isolated_home, uri)
    assert sorted(result.imported) == sorted([mine, theirs])
    assert result.artifacts_elsewhere == [(theirs, str(home_like / ".ssh"))]
    stored = b"\0".join(p.read_bytes() for p in isolated_home.rglob("*") if p.is_file())
    assert b"id_private_key_name" not in stored
    assert b"model.txt" in stored

    other = tmp_path / "other-home"
    init_home(other, env={})
    named, _ = _import_in_process(other, uri, artifact_roots=(home_like,))
    assert named.artifacts_elsewhere == []


def test_a_text_an_older_import_kept_inline_is_no_change(
    store, isolated_home, monkeypatch
):
    """The first imports kept long tags inline (no blob): re-imported by the
    check that reads spilled texts back, each such run was "changed"."""
    uri, client, good, _, _ = store
    client.set_tag(good, "mlflow.note.content", "why:\n" + "a long story " * 40)
    with monkeypatch.context() as old:
        old.setattr(mlflow_integration, "spill_text", lambda value: value)
        first, _ = _import_in_process(isolated_home, uri, experiments=("churn",))
    assert good in first.imported
    assert isinstance(
        _started_of(isolated_home, good)["imported"]["tags"]["mlflow.note.content"], str
    )
    again, _ = _import_in_process(isolated_home, uri, experiments=("churn",))
    assert again.changed == []
