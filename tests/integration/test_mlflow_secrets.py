"""`mltrail import mlflow` cleans what it imports as a recorded run is cleaned.

An MLflow run holds free text mltrail never saw being typed: its name, tags
(``mlflow.note.content``, a command someone pasted), long params (a prompt).
Before, the importer redacted only secret-named tags and params, with no
masking and no detector, and kept every value inline: a token in a run name or
a header in a tag was stored in clear, and a note holding personal data could
never be purged (ADR 0014: what may need erasing is a blob). Now each imported
body goes through the home's secret guard, and long or multi-line tags and
params are blobs, as for ``log_params``.
"""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest

import mltrail
from mltrail.index import open_index
from mltrail.record.commitments import check_value
from optional_extras import require_extra

(mlflow,) = require_extra("mlflow", "mlflow")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RNG = random.Random(20261207)


def token(n: int) -> str:
    while True:
        text = "".join(
            RNG.choice(string.ascii_letters + string.digits) for _ in range(n)
        )
        if any(c.isdigit() for c in text) and text != text.lower():
            return text


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "MLTRAIL_RUN_ID"}
    env["MLTRAIL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args], capture_output=True, env=env,
        cwd=home.parent, timeout=300, check=False,
    )  # fmt: skip


def test_an_imported_run_keeps_no_secret_and_no_long_text_inline(tmp_path):
    hf, bearer, note_pii, prompt_pii = (
        "hf_" + token(34), token(30), "NOTE-PII-" + token(12), "PROMPT-PII-" + token(12)
    )  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("exp", artifact_location=str(tmp_path / "art"))
    run = client.create_run(exp, run_name=f"eval with {hf}", tags={
        "mlflow.source.git.commit": "a" * 40,
        "mlflow.note.content": f"Customer {note_pii} asked for this run. " * 8,
        "deploy": f"curl -H 'Authorization: Bearer {bearer}' https://h.example.com/x",
    })  # fmt: skip
    client.log_param(run.info.run_id, "prompt", f"You help {prompt_pii}.\n" * 12)
    client.log_param(run.info.run_id, "lr", "0.01")
    client.set_terminated(run.info.run_id, "FINISHED")
    home = tmp_path / "home"
    assert cli(home, "init").returncode == 0

    done = cli(home, "import", "mlflow", "--tracking-uri", uri)
    assert done.returncode == 0, done.stderr.decode()

    stored = b"\0".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    shown = cli(home, "log", "--json").stdout + cli(home, "runs", "--json").stdout
    for secret in (hf, bearer):
        assert secret.encode() not in stored + shown
    # the long texts are blobs: nothing inline in a record, so a purge can erase them
    records = json.loads(cli(home, "log", "--json").stdout)
    inline = json.dumps([r["entry"]["body"] for r in records])
    assert note_pii not in inline
    assert prompt_pii not in inline
    started = next(
        r["entry"]["body"] for r in records if r["entry"]["kind"] == "run.started"
    )
    params = next(
        r["entry"]["body"] for r in records if r["entry"]["kind"] == "run.params"
    )
    note = started["imported"]["tags"]["mlflow.note.content"]
    assert note["blob"].startswith("sha256:")
    assert params["params"]["prompt"]["blob"].startswith("sha256:")
    assert params["params"]["lr"] == "0.01"  # short values stay queryable inline
    assert started["name"] == "eval with [MASKED:secret]"  # the words stay

    purged = cli(home, "purge", note["blob"], "--reason", "erasure request")
    assert purged.returncode == 0, purged.stderr.decode()
    after = b"\0".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert note_pii.encode() not in after
    assert cli(home, "verify").returncode == 0


def test_an_imported_command_keeps_its_secrets_and_commitments_are_checkable(
    tmp_path,
):
    """``mlflow.source.name`` becomes the imported run's command, and was kept as
    free text: ``--db-password VALUE`` (no ``=``) was stored in clear, in the
    command and in the tag. And the params and tags were redacted before the
    home's guard saw them, under a key nobody keeps: ``mltrail secrets check``
    could never confirm an imported ``api_key`` (ADR 0013, amendment
    2026-12-08)."""
    password, api_key = token(16), token(20)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("exp", artifact_location=str(tmp_path / "art"))
    source = f"train.py --db-password {password} --epochs 3"
    run = client.create_run(exp, run_name="r", tags={"mlflow.source.name": source})
    client.log_param(run.info.run_id, "api_key", api_key)
    client.log_param(run.info.run_id, "max_tokens", "512")
    client.set_terminated(run.info.run_id, "FINISHED")
    home = tmp_path / "home"
    assert cli(home, "init").returncode == 0
    done = cli(home, "import", "mlflow", "--tracking-uri", uri)
    assert done.returncode == 0, done.stderr.decode()

    stored = b"\0".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    shown = cli(home, "log", "--json").stdout
    for secret in (password, api_key):
        assert secret.encode() not in stored + shown
    records = json.loads(shown)
    started = next(
        r["entry"]["body"] for r in records if r["entry"]["kind"] == "run.started"
    )
    [command] = started["command"]
    assert command.startswith("train.py --db-password <redacted hmac-sha256:")
    assert command.endswith(" --epochs 3")  # the rest of the command stays
    assert started["imported"]["tags"]["mlflow.source.name"] == command
    params = next(
        r["entry"]["body"] for r in records if r["entry"]["kind"] == "run.params"
    )
    assert params["params"]["max_tokens"] == "512"
    opened = mltrail.open_home(home, writable=False, env={})
    try:  # the auditor with the home's key confirms each
        assert check_value(opened, api_key).found
        assert check_value(opened, password).found
    finally:
        opened.close()


def test_a_run_imported_with_its_command_in_clear_is_not_told_as_changed(
    tmp_path, monkeypatch
):
    """A run imported before the command was read as a command line keeps
    ``--db-password VALUE`` in clear. Imported again after the upgrade, the
    fresh ``run.started`` has a commitment there, so the import warned that
    the run "changed in MLflow since", which it did not, and said nothing of
    the secret the ledger holds (ADR 0013, amendment 2026-12-08, second)."""
    from mltrail.integrations import mlflow as importer

    password = token(16)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("exp", artifact_location=str(tmp_path / "art"))
    for source in (f"train.py --db-password {password}", "train.py --epochs 3"):
        run = client.create_run(exp, tags={"mlflow.source.name": source})
        client.set_terminated(run.info.run_id, "FINISHED")
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/mlflow", env={})

    def imported() -> importer.ImportResult:
        opened = mltrail.open_home(home, writable=True, env={})
        index = open_index(opened)
        try:
            return importer.import_mlflow(opened, index, uri, env={})
        finally:
            index.close()
            opened.close()

    with monkeypatch.context() as old:  # the reading before: free text
        old.setattr(importer, "_command_line", lambda _guard, source: source)
        first = imported()
    assert len(first.imported) == 2
    again = imported()
    assert again.changed == []
    [clear] = again.command_in_clear
    assert clear in first.imported
    client.set_tag(clear, "team", "churn")  # a real change is still told
    done = cli(home, "import", "mlflow", "--tracking-uri", uri)
    assert done.returncode == 0, done.stderr.decode()
    warned = done.stderr.decode()
    assert "changed in MLflow" in warned
    assert "in clear" in warned
