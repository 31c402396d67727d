"""`mltrail report MODEL`: Markdown, HTML and PDF documentation of one model.

A real project (git repository, a preprocessing step, a training run reading
described CSV splits and logging metrics, a promotion, a description and an
approval) is recorded through the CLI; the report is then written in every
format and read back: the PDF's text through pypdf, the HTML rendered by headless
Chromium (its DOM dumped, a screenshot kept under the test's tmp folder, or
``tests-artifacts/`` when MLTRAIL_TEST_ARTIFACTS is set).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mltrail
from mltrail.ledger.home import open_home
from optional_extras import in_ci, require_extra

XSS = "<script>alert('x')</script><img src=x onerror=alert(1)>"

PREP = """
import csv, pathlib
rows = list(csv.DictReader(open("raw/loans.csv")))
out = pathlib.Path("clean"); out.mkdir(exist_ok=True)
for name, part in (("train", rows[:8]), ("test", rows[8:])):
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["income", "debt", "label"])
        w.writeheader(); w.writerows(part)
"""
TRAIN = """
import argparse, hashlib, pathlib, mltrail
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float); p.add_argument("--tag")
a = p.parse_args()
with mltrail.start_run() as run:
    for step in range(3):
        run.log_metrics({"val_auc": 0.7 + step / 10}, step=step)
out = pathlib.Path("model"); out.mkdir(exist_ok=True)
(out / "weights.bin").write_bytes(hashlib.sha256(str(a.lr).encode()).digest() * 8)
"""


def mltrail_cli(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MLTRAIL_HOME": str(home),
        "GIT_CEILING_DIRECTORIES": str(cwd.parent),
    }
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    return proc


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    project, home = base / "loan", base / "ledger"
    (project / "raw").mkdir(parents=True)
    (project / "prep.py").write_text(textwrap.dedent(PREP))
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    rows = [f"{30 + i},{i % 4},{i % 2}" for i in range(12)]
    (project / "raw" / "loans.csv").write_text(
        "income,debt,label\n" + "\n".join(rows) + "\n"
    )
    (project / ".gitignore").write_text("clean/\nmodel/\n")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-qm", "loan model")
    commit = git(project, "rev-parse", "HEAD")
    ok(mltrail_cli(home, project, "init", "--origin", "bank.example/loan-team"))
    ok(mltrail_cli(home, project, "step", "--name", "split", "--in", "raw",
                   "--out", "clean", "--", sys.executable, "prep.py"))  # fmt: skip
    ok(mltrail_cli(home, project, "run", "--name", "loan-train",
                   "--data", "train=clean/train.csv", "--data", "test=clean/test.csv",
                   "--label", "label", "--output", "model", "--",
                   sys.executable, "train.py", "--lr", "0.01", "--tag", XSS))  # fmt: skip
    ok(mltrail_cli(home, project, "model", "describe", "model/weights.bin",
                   "--purpose", "Score consumer loan applications",
                   "--owner", "credit-risk@bank.example", "--risk-tier", "high",
                   "--limitations", XSS))  # fmt: skip
    ok(mltrail_cli(home, project, "model", "approve", "model/weights.bin",
                   "--stage", "production", "--note", "validated by MRM"))  # fmt: skip
    ok(mltrail_cli(home, project, "model", "promote", "model/weights.bin",
                   "--stage", "production", "--note", "first release"))  # fmt: skip
    trace = json.loads(ok(mltrail_cli(home, project, "trace", "model/weights.bin",
                                      "--json")).stdout)  # fmt: skip
    node = trace["node"]
    model_id = node["details"]["id"]
    bundle = base / "proof.json"
    bundle.write_text('{"bundle": "example"}\n')
    return project, home, model_id, commit, bundle


def test_markdown_report_has_every_section(recorded):
    project, home, model_id, commit, bundle = recorded
    md = ok(mltrail_cli(home, project, "report", "model/weights.bin", "--bundle",
                        str(bundle))).stdout  # fmt: skip
    for heading in ("Description and intended purpose", "Owner and risk tier",
                    "Development process and code", "Data and data governance",
                    "Preprocessing chain", "hyperparameters", "Fine-tuning",
                    "Validation", "Approvals", "Promotions", "Open flags", "Lineage",
                    "Record-keeping"):  # fmt: skip
        assert heading in md, heading
    assert model_id in md
    assert commit in md
    assert "credit-risk@bank.example" in md
    assert "validated by MRM" in md
    assert "first release" in md
    assert "val\\_auc" in md
    import hashlib

    assert hashlib.sha256(bundle.read_bytes()).hexdigest() in md
    train = (project / "clean" / "train.csv").read_bytes()
    assert hashlib.sha256(train).hexdigest() in md
    program = (project / "train.py").read_bytes()  # the program run.code hashed
    assert hashlib.sha256(program).hexdigest() in md
    assert "OK:" in md
    assert "ledger intact" in md
    assert "<script>" not in md  # markup in ledger values is inert


def test_json_report_and_bad_input(recorded):
    project, home, model_id, _, _ = recorded
    data = json.loads(
        ok(mltrail_cli(home, project, "report", model_id[:12], "--json")).stdout
    )
    assert data["model"]["id"] == model_id
    assert data["description"]["risk_tier"]["value"] == "high"
    assert [p["name"] for p in data["training"]][:2] == ["lr", "tag"]
    assert data["record_keeping"]["ok"] is True
    assert [s["name"] for s in data["preprocessing"]] == ["split"]
    run = mltrail_cli(home, project, "report", "loan-train")
    assert run.returncode == 2
    assert "not a model" in run.stderr
    pdf = mltrail_cli(home, project, "report", "model/weights.bin", "--format", "pdf")
    assert pdf.returncode == 2
    assert "needs a file" in pdf.stderr


def test_html_escapes_ledger_values(recorded, tmp_path):
    require_extra("report", "jinja2")
    project, home, model_id, _, _ = recorded
    out = tmp_path / "report.html"
    ok(mltrail_cli(home, project, "report", "model/weights.bin", "-o", str(out)))
    html = out.read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<svg" in html
    assert 'class="lineage"' in html
    assert model_id in html


def test_pdf_text_holds_the_values(recorded, tmp_path):
    (pypdf,) = require_extra("report", "pypdf")
    require_extra("report", "weasyprint")
    project, home, model_id, commit, _ = recorded
    out = tmp_path / "report.pdf"
    ok(mltrail_cli(home, project, "report", "model/weights.bin", "-o", str(out)))
    assert out.read_bytes().startswith(b"%PDF-")
    text = "".join(page.extract_text() for page in pypdf.PdfReader(out).pages)
    flat = "".join(text.split())  # long hashes wrap across lines
    assert model_id in flat
    assert commit in flat
    import hashlib

    train = hashlib.sha256((project / "clean" / "train.csv").read_bytes()).hexdigest()
    assert train in flat
    assert "0.01" in text  # the learning rate
    assert "ledgerintact" in flat
    assert "credit-risk@bank.example" in flat


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def _artifacts(tmp_path: Path) -> Path:
    where = os.environ.get("MLTRAIL_TEST_ARTIFACTS")
    folder = Path(where) if where else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_chromium_renders_the_html(recorded, tmp_path):
    require_extra("report", "jinja2")
    browser = _chromium()
    if browser is None:
        message = "chromium not installed: apt-get install -y chromium (.ci/run does)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    project, home, model_id, _, _ = recorded
    page = tmp_path / "report.html"
    ok(mltrail_cli(home, project, "report", "model/weights.bin", "-o", str(page)))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert model_id in dom.stdout
    assert 'id="verdict"' in dom.stdout
    assert "ledger intact" in dom.stdout
    assert "<script>alert" not in dom.stdout  # the payload stayed text
    shot = _artifacts(tmp_path) / "model-report.png"
    taken = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_report_python_api_without_jinja_is_markdown(recorded):
    from mltrail.index import open_index
    from mltrail.report import gather_report, render_markdown

    _, home, model_id, _, _ = recorded
    opened = open_home(home, writable=False)
    try:
        index = open_index(opened)
        facts = gather_report(opened, index, f"file:{model_id}", verification=None)
    finally:
        opened.close()
    assert "not verified" in render_markdown(facts)
    assert mltrail.__version__
