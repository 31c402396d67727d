"""Preprocessing lineage: `mltrail step` and `Run.log_step` link datasets by id."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

import mltrail

pytestmark = pytest.mark.usefixtures("isolated_home")


def step(*args):
    return subprocess.run(
        [sys.executable, "-m", "mltrail", "step", *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
        check=False,
    )


def steps(home):
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        return [
            r.entry.body for r in opened.ledger.records() if r.entry.kind == "run.step"
        ]
    finally:
        opened.close()


def test_a_chain_of_steps_links_outputs_to_inputs(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.csv").write_text("x\n1\n1\n2\n")
    (tmp_path / "helpers.py").write_text("DEDUP = True\n")
    (tmp_path / "clean.py").write_text(
        textwrap.dedent(
            """
            import pathlib, sys
            rows = pathlib.Path(sys.argv[1], "a.csv").read_text().splitlines()
            out = pathlib.Path(sys.argv[2]); out.mkdir()
            (out / "a.csv").write_text("\\n".join(dict.fromkeys(rows)) + "\\n")
            """
        )
    )
    (tmp_path / "augment.py").write_text(
        "import shutil, sys\nshutil.copy(sys.argv[1] + '/a.csv', sys.argv[2])\n"
    )
    first = step(
        "--name",
        "clean",
        "--in",
        "raw",
        "--out",
        "clean",
        "--script",
        "helpers.py",
        "--",
        sys.executable,
        "clean.py",
        "raw",
        "clean",
    )
    assert first.returncode == 0, first.stderr
    second = step(
        "--in",
        "clean",
        "--out",
        "train.csv",
        "--",
        sys.executable,
        "augment.py",
        "clean",
        "train.csv",
    )
    assert second.returncode == 0, second.stderr
    clean, augment = steps(tmp_path / "home")
    assert clean["name"] == "clean"
    assert augment["name"].endswith("augment.py")
    assert clean["outputs"][0]["dataset"] == augment["inputs"][0]["dataset"]
    assert clean["inputs"][0]["files"] == 1
    scripts = {s["path"].rsplit("/", 1)[-1]: s for s in clean["scripts"]}
    assert set(scripts) == {"clean.py", "helpers.py"}
    digest = hashlib.sha256((tmp_path / "clean.py").read_bytes()).hexdigest()
    assert scripts["clean.py"]["sha256"] == digest
    out = augment["outputs"][0]
    assert out["type"] == "file"
    assert out["sha256"] == hashlib.sha256(b"x\n1\n2\n").hexdigest()
    assert mltrail.verify(tmp_path / "home").ok


def test_a_missing_input_records_nothing(tmp_path):
    proc = step("--in", "nope", "--", "true")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr
    assert not (tmp_path / "home").exists() or steps(tmp_path / "home") == []


def test_log_step_from_python(tmp_path):
    (tmp_path / "in.csv").write_text("a\n1\n")
    (tmp_path / "prep.py").write_text("# prep\n")
    with mltrail.start_run(capture=False) as run:
        (tmp_path / "out.csv").write_text("a\n2\n")
        ids = run.log_step(
            "double",
            inputs=["in.csv"],
            outputs=["out.csv"],
            scripts=["prep.py"],
            params={"factor": 2},
        )
    (body,) = steps(tmp_path / "home")
    assert body["params"] == {"factor": 2}
    assert ids["inputs"] == [body["inputs"][0]["dataset"]]
    assert ids["outputs"] == [hashlib.sha256(b"a\n2\n").hexdigest()]
    with pytest.raises(mltrail.InputError), mltrail.start_run(capture=False) as run:
        run.log_step("bad", inputs=["missing.csv"])
