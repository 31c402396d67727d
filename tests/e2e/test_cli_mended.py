"""Capture mended (issue 15, part 1): mistakes a user makes are said, not recorded.

`append --run` names a run that exists, notes show in `show RUN`, a declared
output never written is a warning (recorded and on stderr), and an unknown
option before `--` is an error instead of the command to run.
"""

import json

import pytest
from tests.ledger_reading import entries

from cli_runner import mltrail


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    assert mltrail(path, "init").returncode == 0
    return path


def _one_run(home, tmp_path, name="baseline"):
    proc = mltrail(home, "run", "--name", name, "--", "true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(mltrail(home, "runs", "--json").stdout)[-1]["id"]


def test_append_to_a_run_that_does_not_exist_is_refused(home, tmp_path):
    run_id = _one_run(home, tmp_path)
    before = len(entries(home))
    typo = run_id[:-3] + ("000" if run_id[-3:] != "000" else "111")
    proc = mltrail(home, "append", "--kind", "note", "--run", typo, "--body", "{}")
    assert proc.returncode == 2
    assert f"no run '{typo}'" in proc.stderr
    assert f"did you mean {run_id}" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = mltrail(
        home, "append", "--kind", "note", "--run", "baseline2", "--body", "{}"
    )
    assert proc.returncode == 2
    assert "did you mean baseline" in proc.stderr
    assert len(entries(home)) == before


def test_a_note_on_a_run_by_name_shows_in_show_run(home, tmp_path):
    run_id = _one_run(home, tmp_path)
    body = json.dumps({"text": "learning rate too high"})
    proc = mltrail(
        home, "append", "--kind", "note", "--run", "baseline", "--body", body
    )
    assert proc.returncode == 0, proc.stderr
    assert entries(home)[-1].run == run_id
    shown = mltrail(home, "show", run_id)
    assert "notes" in shown.stdout
    assert "learning rate too high" in shown.stdout
    as_json = json.loads(mltrail(home, "show", run_id, "--json").stdout)
    assert as_json["notes"] == [{"text": "learning rate too high"}]


def test_an_output_never_written_is_a_recorded_warning(home, tmp_path):
    proc = mltrail(home, "run", "--output", "model.pt", "--", "true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning: output" in proc.stderr
    assert "model.pt was declared but never written" in proc.stderr
    ended = [e for e in entries(home) if e.kind == "run.ended"][-1]
    assert any("never written" in w for w in ended.body["warnings"])
    artifact = [e for e in entries(home) if e.kind == "run.artifact"][-1]
    assert artifact.body["exists"] is False


def test_a_written_output_gives_no_warning(home, tmp_path):
    proc = mltrail(
        home, "run", "--output", "out.txt", "--", "touch", "out.txt", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: output" not in proc.stderr
    ended = [e for e in entries(home) if e.kind == "run.ended"][-1]
    assert not any("never written" in w for w in ended.body.get("warnings", []))


@pytest.mark.parametrize("command", ["run", "step"])
def test_an_unknown_option_before_the_command_is_an_error(home, tmp_path, command):
    marker = tmp_path / "ran"
    proc = mltrail(
        home, command, "--nmae", "x", "--", "touch", str(marker), cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "no such option --nmae; did you mean --name?" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert [e.kind for e in entries(home)] == ["key.added"]


def test_options_after_the_separator_belong_to_the_command(home, tmp_path):
    proc = mltrail(
        home, "run", "--name", "x", "-q", "--", "sh", "-c", "echo --nmae", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "--nmae\n"
    proc = mltrail(home, "run", "--log-limit=1MiB", "echo", "--nmae", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "--nmae\n"
