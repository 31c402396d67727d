"""What mltrail hands to outsiders, made from a home someone edited without the key.

A real home is made by the CLI (``mltrail init``, two ``mltrail run`` of a script
that writes the same model), copied, and edited with SQLite the way an insider
would: a record's bytes changed with the triggers dropped, a blob replaced, rows
of ``index.db`` deleted. Then ``mltrail export intoto`` (which signs with the
ledger key), ``mltrail export openlineage`` and ``mltrail report`` are run as
subprocesses and their output read back (ADR 0019 and ADR 0024 amendments).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import mltrail
from mltrail.report import render_markdown

TRAIN = """
import pathlib, sys
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/model.bin").write_bytes(b"weights" * 10)
"""


def mltrail_cli(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    ceiling = {"GIT_CEILING_DIRECTORIES": str(cwd.parent), "MLTRAIL_URL": ""}
    return mltrail(home, *args, cwd=cwd, env=ceiling, timeout=180)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    return proc


def refused(
    proc: subprocess.CompletedProcess[str], out: Path, *said: str
) -> subprocess.CompletedProcess[str]:
    """``proc`` refused (exit 3), said each of ``said`` on stderr, and wrote
    nothing to ``out``."""
    assert proc.returncode == 3, proc.stdout + proc.stderr
    for text in said:
        assert text in proc.stderr, proc.stderr
    assert not out.exists()
    return proc


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(project, home): runs "base" (--lr 0.1) and "again" (--lr 0.5) both wrote
    out/model.bin."""
    base = tmp_path_factory.mktemp("exports")
    project, home = base / "project", base / "home"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.csv").write_text("a,b\n1,2\n")
    (project / "train.py").write_text(TRAIN)
    ok(mltrail_cli(home, project, "init", "--origin", "example.org/exports"))
    for name, lr in (("base", "0.1"), ("again", "0.5")):
        ok(mltrail_cli(home, project, "run", "--name", name,
                       "--data", "train=data/train.csv", "--output", "out/model.bin",
                       "--", sys.executable, "train.py", "--lr", lr))  # fmt: skip
    ok(mltrail_cli(home, project, "runs"))  # index.db caught up
    return project, home


def copy_of(made, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(made[1], home)
    return home


def edit(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    try:
        for sql in statements:
            conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


def tamper_lr(home: Path) -> None:
    """Run "base"'s recorded --lr 0.1 becomes 0.001 in its run.params record."""
    edit(
        home / "ledger.db",
        "DROP TRIGGER records_no_UPDATE",
        "UPDATE records SET record = CAST(replace(CAST(record AS TEXT), "
        "'\"lr\":0.1', '\"lr\":0.001') AS BLOB) WHERE kind = 'run.params' "
        "AND CAST(record AS TEXT) LIKE '%\"lr\":0.1%'",
    )


def test_intoto_and_openlineage_refuse_a_tampered_record(made, tmp_path):
    """The ledger key never signs a value from a record whose signature fails."""
    project, _ = made
    home = copy_of(made, tmp_path)
    tamper_lr(home)
    out = tmp_path / "p.intoto.json"
    proc = mltrail_cli(home, project, "export", "intoto", "base", "-o", str(out))
    refused(
        proc,
        out,
        "refusing to sign provenance: the ledger fails verification",
        "TAMPERED",
    )
    assert "0.001" not in proc.stdout
    events = tmp_path / "events.jsonl"
    proc = mltrail_cli(home, project, "export", "openlineage", "-o", str(events))
    refused(proc, events, "refusing to export OpenLineage events")


def test_intoto_refuses_a_blob_that_does_not_hash_to_its_address(made, tmp_path):
    """A dataset manifest replaced in the blobs table is not signed over."""
    project, _ = made
    home = copy_of(made, tmp_path)
    edit(
        home / "ledger.db",
        "DROP TRIGGER blobs_no_UPDATE",
        'UPDATE blobs SET data = CAST(replace(CAST(data AS TEXT), \'"sha256":"\', '
        "'\"sha256\":\"0') AS BLOB) WHERE CAST(data AS TEXT) LIKE '%train.csv%'",
    )
    out = tmp_path / "p.intoto.json"
    proc = mltrail_cli(home, project, "export", "intoto", "base", "-o", str(out))
    refused(proc, out, "was replaced")


def swap_in_forged(
    home: Path, project: Path, tmp_path: Path, *, naming_the_real_key: bool
) -> None:
    """An insider's own ledger (same origin, own genesis key, a run "base" with
    --lr 0.9) put in place of ``home``'s ledger.db, with its witness file and
    its key as ``trusted_key``; ``signing_key`` still names the real key. With
    ``naming_the_real_key`` it also adds the home's real public key as a log key
    (a ``key.added`` its own key signs: no proof of possession is asked of a
    log key), so that the real key is a current log key of it."""
    from mltrail.core.signing import encode_b64
    from mltrail.ledger.home import open_home
    from mltrail.ledger.ledger import Draft

    forged = tmp_path / "forged"
    ok(mltrail_cli(forged, project, "init", "--origin", "example.org/exports"))
    if naming_the_real_key:
        real = open_home(home)
        real_key = real.ledger.signer
        assert real_key is not None
        real.close()
        forger = open_home(forged)
        body = {
            "alg": "ed25519",
            "key": real_key.key_id,
            "public_key": encode_b64(real_key.public_key),
            "reason": "taken in",
        }
        forger.ledger._append_signed(forger.ledger._sign([Draft("key.added", body)]))
        forger.close()
    ok(mltrail_cli(forged, project, "run", "--name", "base",
                   "--output", "out/model.bin",
                   "--", sys.executable, "train.py", "--lr", "0.9"))  # fmt: skip
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm", "index.db"):
        (home / name).unlink(missing_ok=True)
    shutil.copy(forged / "ledger.db", home / "ledger.db")
    shutil.copy(forged / "witness" / "checkpoint", home / "witness" / "checkpoint")
    settings = json.loads((home / "ledger.json").read_text())
    settings["trusted_key"] = json.loads((forged / "ledger.json").read_text())[
        "trusted_key"
    ]
    (home / "ledger.json").write_text(json.dumps(settings))


def intoto_of_forged(
    made, tmp_path: Path, *said: str, naming_the_real_key: bool
) -> tuple[Path, Path]:
    """(project, home): ``export intoto`` of run "base" in a copy of the home
    with a forged ledger swapped in (``swap_in_forged``), which verifies on its
    own, refused (``refused``) without showing the forged --lr 0.9."""
    project, _ = made
    home = copy_of(made, tmp_path)
    swap_in_forged(home, project, tmp_path, naming_the_real_key=naming_the_real_key)
    ok(mltrail_cli(home, project, "verify"))  # without a key pinned outside: whole
    out = tmp_path / "p.intoto.json"
    proc = mltrail_cli(home, project, "export", "intoto", "base", "-o", str(out))
    refused(proc, out, *said)
    assert "0.9" not in proc.stdout
    return project, home


def test_intoto_refuses_a_ledger_swapped_in_beside_the_real_key(made, tmp_path):
    """The swapped ledger verifies on its own; the home's real key must not
    sign provenance of it."""
    intoto_of_forged(
        made,
        tmp_path,
        "refusing to sign provenance: the signing key",
        "of this ledger",
        naming_the_real_key=False,
    )


def test_intoto_refuses_a_swapped_ledger_that_adds_the_real_key(made, tmp_path):
    """Named a current log key of the forged ledger, the real key signed none
    of its checkpoints, and signs nothing (ADR 0024 amendment)."""
    project, home = intoto_of_forged(
        made,
        tmp_path,
        "refusing to sign provenance",
        "signed no checkpoint",
        naming_the_real_key=True,
    )
    # Nor does the home's next run write on it (its checkpoint would then be
    # the real key's, and the forged history signed): the head check refuses.
    proc = mltrail_cli(home, project, "run", "--name", "next", "--",
                       sys.executable, "train.py", "--lr", "0.2")  # fmt: skip
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "is not signed by this writer's key" in proc.stderr
    out = tmp_path / "p.intoto.json"
    refused(mltrail_cli(home, project, "export", "intoto", "base", "-o", str(out)), out)


def test_adopt_refuses_a_swapped_ledger_whose_checkpoints_were_removed(made, tmp_path):
    """The same forged ledger with its checkpoints and witness removed verifies
    but for the coverage, and every write says `mltrail checkpoint --adopt`
    covers it: adopting signed the forged history with the real key, which an
    auditor pinning only the real key then found intact. Only records the key
    wrote are adopted (ADR 0011 amendment)."""
    project, _ = made
    home = copy_of(made, tmp_path)
    swap_in_forged(home, project, tmp_path, naming_the_real_key=True)
    edit(home / "ledger.db", "DROP TRIGGER checkpoints_no_DELETE",
         "DELETE FROM checkpoints")  # fmt: skip
    (home / "witness" / "checkpoint").unlink()
    proc = mltrail_cli(home, project, "checkpoint", "--adopt")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "refusing to adopt: record seq 0 is not signed by this writer's key" in (
        proc.stderr
    )
    with sqlite3.connect(home / "ledger.db") as conn:
        assert conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 0


RANDOM_VIEW = (
    "ALTER TABLE records RENAME TO records_real",
    "CREATE VIEW records AS SELECT seq, hash, kind, run, time, CASE WHEN "
    "kind = 'run.params' AND abs(random()) % 2 = 0 THEN CAST(replace(CAST(record "
    "AS TEXT), '\"lr\":0.1', '\"lr\":0.001') AS BLOB) ELSE record END AS record "
    "FROM records_real",
)


def test_a_store_that_answers_each_read_otherwise_gets_nothing_signed(made, tmp_path):
    """``records`` replaced by a view that hands out run "base"'s params as
    signed or edited at random, each read anew: verification may see the
    signed bytes and the export the edited ones. Every export reads only the
    records it verified (ADR 0024 amendment): signed with the real value, or
    refused (exit 3), never signed with the edited one. Before, about one
    export in four signed lr 0.001."""
    project, _ = made
    home = copy_of(made, tmp_path)
    edit(home / "ledger.db", *RANDOM_VIEW)
    (home / "index.db").unlink()
    outcomes = []
    for attempt in range(16):
        out = tmp_path / f"p{attempt}.intoto.json"
        proc = mltrail_cli(home, project, "export", "intoto", "base", "-o", str(out))
        assert proc.returncode in (0, 3), proc.stdout + proc.stderr
        if proc.returncode == 0:
            payload = json.loads(
                base64.b64decode(json.loads(out.read_text())["payload"])
            )
            params = payload["predicate"]["buildDefinition"]["externalParameters"]
            outcomes.append(params["hyperparameters"]["lr"])
        else:
            assert not out.exists()
            outcomes.append("refused")
    assert 0.001 not in outcomes, outcomes
    assert "refused" in outcomes  # the view was read (P(never) = 2**-16 or so)
    report = tmp_path / "report.md"
    for _ in range(4):
        proc = mltrail_cli(home, project, "report", "out/model.bin", "-o", str(report))
        if proc.returncode == 0:
            assert "0.001" not in report.read_text()


def test_intoto_signs_with_the_new_key_after_a_rotation(made, tmp_path):
    """The rotation's checkpoint is signed by the new key: the newest checkpoint
    check passes without another append."""
    project, _ = made
    home = copy_of(made, tmp_path)
    ok(mltrail_cli(home, project, "keys", "rotate", "--reason", "test"))
    new_key = ok(mltrail_cli(home, project, "keys", "export", "--format", "id"))
    out = tmp_path / "p.intoto.json"
    ok(mltrail_cli(home, project, "export", "intoto", "base", "-o", str(out)))
    envelope = json.loads(out.read_text())
    assert envelope["signatures"][0]["keyid"] == new_key.stdout.strip()


def test_intoto_refuses_records_written_after_the_newest_checkpoint(made, tmp_path):
    """A record appended without the key (no checkpoint covers it) verifies
    with a warning; the key signs nothing until it is adopted."""
    project, _ = made
    home = copy_of(made, tmp_path)
    edit(home / "ledger.db", "DROP TRIGGER checkpoints_no_DELETE",
         "DELETE FROM checkpoints WHERE size = (SELECT max(size) FROM checkpoints)")  # fmt: skip
    out = tmp_path / "p.intoto.json"
    proc = mltrail_cli(home, project, "export", "intoto", "base", "-o", str(out))
    refused(proc, out, "signed no checkpoint that covers this ledger")


def test_intoto_of_an_intact_ledger_still_signs(made, tmp_path):
    project, home = made
    out = tmp_path / "p.intoto.json"
    ok(mltrail_cli(home, project, "export", "intoto", "base", "-o", str(out)))
    statement = json.loads(base64.b64decode(json.loads(out.read_text())["payload"]))
    params = statement["predicate"]["buildDefinition"]["externalParameters"]
    assert params["hyperparameters"]["lr"] == 0.1


def test_the_verification_before_an_export_shows_its_progress_on_a_terminal(
    made, tmp_path
):
    """The full verify an export pays (seconds on a large ledger) is not silent."""
    from tests.terminal import run_on_terminal

    project, home = made
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    out = tmp_path / "p.intoto.json"
    code, shown = run_on_terminal(
        [sys.executable, "-m", "mltrail", "export", "intoto", "base", "-o", str(out)],
        env,
        cwd=str(project),
    )
    assert code == 0, shown
    assert b"verifying" in shown
    assert out.exists()


def test_a_report_of_a_tampered_ledger_says_so_at_its_top_and_exits_3(made, tmp_path):
    """Markdown, HTML and JSON: the document is written, heads with the warning,
    lists verify's errors as errors, and the command exits 3."""
    project, _ = made
    home = copy_of(made, tmp_path)
    tamper_lr(home)
    model = str(project / "out" / "model.bin")
    md = mltrail_cli(home, project, "report", model)
    assert md.returncode == 3, md.stderr
    assert "the report was written, but the ledger fails verification" in md.stderr
    top = md.stdout.split("## 1.")[0].replace("\\", "")
    assert "> **THE LEDGER IS NOT INTACT" in top
    assert "do not rely on this report" in top
    assert "- error: seq " in md.stdout
    assert "- warning: seq " not in md.stdout  # errors are not called warnings
    jinja2 = pytest.importorskip("jinja2")
    assert jinja2
    html = tmp_path / "r.html"
    proc = mltrail_cli(home, project, "report", model, "-o", str(html))
    assert proc.returncode == 3, proc.stderr
    page = html.read_text()
    assert '<p id="not-intact" class="bad"><strong>THE LEDGER IS NOT INTACT' in page
    assert page.index('id="not-intact"') < page.index("<h2>1.")
    assert '<h3 class="bad">Errors</h3>' in page
    if importlib.util.find_spec("weasyprint") and importlib.util.find_spec("pypdf"):
        import pypdf

        pdf = tmp_path / "r.pdf"
        proc = mltrail_cli(home, project, "report", model, "-o", str(pdf))
        assert proc.returncode == 3, proc.stderr
        first = pypdf.PdfReader(str(pdf)).pages[0].extract_text()
        assert "THE LEDGER IS NOT INTACT" in " ".join(first.split())
    proc = mltrail_cli(home, project, "report", model, "--json")
    assert proc.returncode == 3, proc.stderr
    kept = json.loads(proc.stdout)["record_keeping"]
    assert kept["ok"] is False
    assert kept["first_bad_seq"] is not None
    assert kept["errors"]
    assert all("signature" not in w for w in kept["warnings"])


def test_reports_and_exports_never_read_index_db(made, tmp_path):
    """Rows deleted from index.db (a run's claim on the model, a run itself)
    do not leave the report or the OpenLineage export, and verify (the
    ledger) stays intact: only the derived index was edited."""
    project, _ = made
    home = copy_of(made, tmp_path)
    edit(
        home / "index.db",
        "DELETE FROM data WHERE direction = 'out' AND run = "
        "(SELECT id FROM runs WHERE name = 'base')",
        "DELETE FROM runs WHERE name = 'base'",
    )
    model = str(project / "out" / "model.bin")
    proc = ok(mltrail_cli(home, project, "report", model, "--json"))
    made_by = json.loads(proc.stdout)["model"]["made_by"]
    assert sorted(c["name"] for c in made_by) == ["again", "base"]
    events = tmp_path / "events.jsonl"
    ok(mltrail_cli(home, project, "export", "openlineage", "-o", str(events)))
    names = {
        json.loads(line)["job"]["name"] for line in events.read_text().splitlines()
    }
    assert len(names) == 2, names


def test_markdown_escapes_every_recorded_value_of_a_split():
    """Split and overlap row counts go through the Markdown escape like every
    other value (schemas say integer; a record that says otherwise is inert)."""
    report = {
        "model": {"id": "ab", "type": "file", "label": "m", "path": None},
        "description": {},
        "development": None,
        "data": [
            {
                "role": "train",
                "path": "d",
                "file_hashes": [],
                "manifest": "no manifest",
                "table": {"rows": "[x](https://evil.example)", "label": {}},
                "overlaps": [{"role": "test", "rows": "![i](https://evil.example/i)"}],
            }
        ],
        "preprocessing": [],
        "training": [],
        "finetune": None,
        "validation": [],
        "approvals": [],
        "promotions": [],
        "flags": [],
        "sealed": [],
        "lineage": {"nodes": [], "edges": []},
        "record_keeping": {"origin": "o", "records": 1, "timestamps": []},
    }
    text = render_markdown(report)
    assert "](https://evil.example" not in text
    assert "\\[x\\]\\(https://evil.example\\)" in text
    assert "\\!\\[i\\]" in text


def test_a_cleared_flag_stays_in_the_report_with_who_cleared_it(made, tmp_path):
    """Any writer's clear closes every open flag of a model: the report used to
    say only "No open flag."; it now lists the flag and the record that cleared
    it, with its user and note."""
    from mltrail.ledger.home import open_home

    project, _ = made
    home = copy_of(made, tmp_path)
    model = project / "out" / "model.bin"
    ident = hashlib.sha256(model.read_bytes()).hexdigest()
    opened = open_home(home)
    try:
        opened.ledger.actor = {"user": "alice", "uid": 1001, "host": "ws-a"}
        opened.ledger.append("model.flagged", {
            "model": ident, "model_type": "file", "status": "open",
            "source": "loans-db", "reason": "upstream rows changed",
        })  # fmt: skip
        opened.ledger.actor = {"user": "bob", "uid": 1002, "host": "ws-b"}
        opened.ledger.append("model.flagged", {
            "model": ident, "model_type": "file", "status": "cleared",
            "note": "looked fine to me",
        })  # fmt: skip
    finally:
        opened.close()
    text = ok(mltrail_cli(home, project, "report", str(model))).stdout
    flags = text.split("## 10.")[1].split("## 11.")[0].replace("\\", "")
    assert "No open flag." in flags
    assert "Cleared flags" in flags
    assert "| upstream rows changed |" in flags
    assert "| bob | looked fine to me |" in flags
    found = json.loads(ok(mltrail_cli(home, project, "report", str(model),
                                      "--json")).stdout)  # fmt: skip
    [flag] = found["cleared_flags"]
    assert (flag["user"], flag["cleared"]["user"]) == ("alice", "bob")
    if importlib.util.find_spec("jinja2"):
        html = tmp_path / "r.html"
        ok(mltrail_cli(home, project, "report", str(model), "-o", str(html)))
        assert "<td>bob</td><td>looked fine to me</td>" in html.read_text()


def test_described_fields_name_who_set_them(made, tmp_path):
    """Any writer can describe any model: Bob's later "risk tier low" over
    Alice's "high" was shown as the model's risk tier with no author."""
    from mltrail.ledger.home import open_home

    project, _ = made
    home = copy_of(made, tmp_path)
    model = project / "out" / "model.bin"
    ident = hashlib.sha256(model.read_bytes()).hexdigest()
    opened = open_home(home)
    try:
        for user, tier in (("alice", "high"), ("bob", "low")):
            opened.ledger.actor = {"user": user, "uid": 1000, "host": "ws"}
            opened.ledger.append("model.described", {
                "model": ident, "model_type": "file", "risk_tier": tier,
            })  # fmt: skip
        seq = opened.ledger.head().size - 1
    finally:
        opened.close()
    text = ok(mltrail_cli(home, project, "report", str(model))).stdout
    assert f"| Risk tier | low \\(seq {seq}, by bob\\) |" in text
    found = json.loads(ok(mltrail_cli(home, project, "report", str(model),
                                      "--json")).stdout)  # fmt: skip
    tier = found["description"]["risk_tier"]
    assert (tier["value"], tier["seq"], tier["user"]) == ("low", seq, "bob")
    if importlib.util.find_spec("jinja2"):
        html = tmp_path / "r.html"
        ok(mltrail_cli(home, project, "report", str(model), "-o", str(html)))
        assert f"<td>low (seq {seq}, by bob)</td>" in html.read_text()


def test_a_bundle_of_a_tampered_ledger_is_not_written(made, tmp_path):
    """The bundle is checked as its recipient would before it is written: an
    altered record or a replaced blob is refused (exit 3), not handed out."""
    project, _ = made
    home = copy_of(made, tmp_path)
    tamper_lr(home)
    out = tmp_path / "b.json"
    proc = mltrail_cli(home, project, "export", "base", "-o", str(out))
    refused(proc, out, "refusing to write the bundle: it fails its own verification")


def test_a_model_bundle_carries_every_claimant_whatever_index_db_says(made, tmp_path):
    """With run "base"'s output row deleted from index.db, the model's bundle
    left out base's records and still verified intact: the recipient never saw
    that another run claims the model."""
    project, _ = made
    home = copy_of(made, tmp_path)
    runs = {}
    conn = sqlite3.connect(home / "index.db")
    try:
        for name, run in conn.execute("SELECT name, id FROM runs"):
            runs[name] = run
    finally:
        conn.close()
    edit(
        home / "index.db",
        f"DELETE FROM data WHERE direction = 'out' AND run = '{runs['base']}'",
    )
    out = tmp_path / "b.json"
    model = str(project / "out" / "model.bin")
    ok(mltrail_cli(home, project, "export", model, "-o", str(out)))
    carried = {
        json.loads(r["record"])["entry"].get("run")
        for r in json.loads(out.read_text())["records"]
    }
    assert {runs["base"], runs["again"]} <= carried


def test_a_bundle_quoted_by_the_report_is_checked(made, tmp_path):
    """`report --bundle FILE` quoted the file's SHA-256 as the model's proof
    whatever it held: a bundle of another subject, or one that fails. The
    record-keeping section now says what checking it found."""
    project, home = made
    model = str(project / "out" / "model.bin")
    of_model, of_run = tmp_path / "model.json", tmp_path / "run.json"
    ok(mltrail_cli(home, project, "export", model, "-o", str(of_model)))
    ok(mltrail_cli(home, project, "export", "base", "-o", str(of_run)))
    broken = tmp_path / "broken.json"
    bundle = json.loads(of_model.read_text())
    bundle["records"][-1]["record"] = bundle["records"][-1]["record"].replace(
        '"entry":{', '"entry":{"added":1,', 1
    )
    broken.write_text(json.dumps(bundle))

    def check(path: Path) -> str:
        text = ok(mltrail_cli(home, project, "report", model, "--bundle", str(path)))
        [line] = [s for s in text.stdout.splitlines() if s.startswith("| Bundle check")]
        return line.replace("\\", "")

    line = check(of_model)
    assert "bundle intact" in line
    assert "NOT the model of this report" not in line
    line = check(of_run)
    assert "bundle intact" in line
    assert "NOT the model of this report" in line
    assert "bundle NOT intact" in check(broken)
    proc = ok(mltrail_cli(home, project, "report", model, "--bundle", str(broken),
                          "--json"))  # fmt: skip
    facts = json.loads(proc.stdout)["record_keeping"]["bundle"]
    assert (facts["ok"], facts["of_this_model"]) == (False, True)


def unreadable_hardware(home: Path) -> None:
    """Run "base"'s run.hardware record becomes bytes that are not a record: the
    index left it out, so nothing that reads runs through an index sees it."""
    edit(
        home / "ledger.db",
        "DROP TRIGGER records_no_UPDATE",
        "UPDATE records SET record = CAST('{\"garbage\":' AS BLOB) WHERE seq = "
        "(SELECT min(seq) FROM records WHERE kind = 'run.hardware')",
    )


def test_a_bundle_is_not_written_without_a_record_that_cannot_be_read(made, tmp_path):
    """A record made unreadable is left out of the index the bundle is chosen
    through: the bundle of its run, without it, verified (exit 0)."""
    project, _ = made
    home = copy_of(made, tmp_path)
    unreadable_hardware(home)
    out = tmp_path / "b.json"
    proc = mltrail_cli(home, project, "export", "base", "-o", str(out))
    refused(proc, out, "cannot be read")


def test_a_report_of_a_ledger_with_an_unreadable_record_is_written_and_exits_3(
    made, tmp_path
):
    """It failed with `error: record is not valid JSON` (exit 2) and no report:
    the run's records were read in ranges that took in the unreadable one."""
    project, _ = made
    home = copy_of(made, tmp_path)
    unreadable_hardware(home)
    md = mltrail_cli(home, project, "report", str(project / "out" / "model.bin"))
    assert md.returncode == 3, md.stderr
    assert "> **THE LEDGER IS NOT INTACT" in md.stdout.replace("\\", "")
    show = mltrail_cli(home, project, "show", "base")
    assert show.returncode == 0, show.stderr
