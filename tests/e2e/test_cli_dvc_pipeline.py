"""`mltrail run -- dvc repro` records each pipeline stage as a step (issue 15, DVC).

DVC itself is not installed (it pulls ~60 packages); a small Python script named
``dvc`` on PATH plays it: it runs the two stages of a handwritten ``dvc.yaml``
(prepare, then train) and writes ``dvc.lock`` the way DVC 3 does (``schema:
'2.0'``, md5 per dep and out, params by file). The wrapper runs it for real, then
the ledger must hold one ``run.step`` per stage with DVC's md5 and our SHA-256 of
each file, and `mltrail trace model.pkl` must walk train <- prepared.csv <- prepare.
"""

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest
from tests.ledger_reading import entries

DVC_YAML = """\
stages:
  prepare:
    cmd: python prepare.py
    deps: [prepare.py, data.csv]
    outs: [prepared.csv]
  train:
    cmd: python train.py
    deps: [train.py, prepared.csv]
    params: [lr]
    outs: [model.pkl]
"""

FAKE_DVC = """\
#!{python}
import hashlib, pathlib, subprocess, sys
assert sys.argv[1:2] == ["repro"], sys.argv
def rec(path):
    data = pathlib.Path(path).read_bytes()
    return (f"    - path: {{path}}\\n      hash: md5\\n"
            f"      md5: {{hashlib.md5(data).hexdigest()}}\\n      size: {{len(data)}}\\n")
lock = "schema: '2.0'\\nstages:\\n"
for name, deps, outs in (("prepare", ["prepare.py", "data.csv"], ["prepared.csv"]),
                         ("train", ["train.py", "prepared.csv"], ["model.pkl"])):
    subprocess.run([sys.executable, f"{{name}}.py"], check=True)
    lock += f"  {{name}}:\\n    cmd: python {{name}}.py\\n    deps:\\n"
    lock += "".join(rec(d) for d in deps)
    if name == "train":
        lock += "    params:\\n      params.yaml:\\n        lr: 0.1\\n"
    lock += "    outs:\\n" + "".join(rec(o) for o in outs)
pathlib.Path("dvc.lock").write_text(lock)
"""

PREPARE = "import pathlib\np = pathlib.Path('data.csv').read_text()\n"
PREPARE += "pathlib.Path('prepared.csv').write_text(p.upper())\n"
TRAIN = "import pathlib\np = pathlib.Path('prepared.csv').read_bytes()\n"
TRAIN += "pathlib.Path('model.pkl').write_bytes(b'model of ' + p)\n"


def mltrail(home, *args, cwd=None, path=None):
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS", "RANK", "WORLD_SIZE"):
        env.pop(name, None)
    if path is not None:
        env["PATH"] = f"{path}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture
def pipeline(tmp_path):
    """A DVC project (dvc.yaml, scripts, data) and a fake ``dvc`` in ``bin``."""
    project = tmp_path / "project"
    project.mkdir()
    (project / ".dvc").mkdir()
    (project / "dvc.yaml").write_text(DVC_YAML)
    (project / "params.yaml").write_text("lr: 0.1\n")
    (project / "data.csv").write_text("a,b\n1,2\n")
    (project / "prepare.py").write_text(PREPARE)
    (project / "train.py").write_text(TRAIN)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dvc = bin_dir / "dvc"
    dvc.write_text(textwrap.dedent(FAKE_DVC.format(python=sys.executable)))
    dvc.chmod(dvc.stat().st_mode | stat.S_IXUSR)
    home = tmp_path / "home"
    assert mltrail(home, "init").returncode == 0
    return project, bin_dir, home


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()  # DVC's hash


def test_dvc_repro_records_each_stage_with_its_hashes(pipeline):
    project, bin_dir, home = pipeline
    proc = mltrail(home, "run", "--", "dvc", "repro", cwd=project, path=bin_dir)
    assert proc.returncode == 0, proc.stderr
    steps = [e for e in entries(home) if e.kind == "run.step"]
    assert [s.body["name"] for s in steps] == ["prepare", "train"]
    assert len({s.run for s in steps}) == 1
    prepare, train = (s.body for s in steps)
    assert prepare["command"] == ["python prepare.py"]
    assert prepare["dvc"]["stage"] == "prepare"
    lock = project / "dvc.lock"
    assert prepare["dvc"]["lock_sha256"] == _sha256(lock)
    assert train["params"] == {"params.yaml": {"lr": 0.1}}
    for body, deps, outs in (
        (prepare, ["prepare.py", "data.csv"], ["prepared.csv"]),
        (train, ["train.py", "prepared.csv"], ["model.pkl"]),
    ):
        assert [i["path"] for i in body["inputs"]] == deps
        assert [o["path"] for o in body["outputs"]] == outs
        for link in body["inputs"] + body["outputs"]:
            file = project / link["path"]
            assert link["sha256"] == _sha256(file)
            assert link["dvc"] == {
                "md5": _md5(file),
                "hash": "md5",
                "size": file.stat().st_size,
            }
    # the index links train's input to prepare's output: the stage chain
    proc = mltrail(home, "trace", "model.pkl", "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    graph = json.loads(proc.stdout)
    edges = {(e["from"], e["to"], e["relation"]) for e in graph["lineage"]["edges"]}
    run = steps[0].run
    prepared = f"file:{_sha256(project / 'prepared.csv')}"
    model = f"file:{_sha256(project / 'model.pkl')}"
    data = f"file:{_sha256(project / 'data.csv')}"
    assert (f"stage:{run}/train", model, "wrote") in edges
    assert (prepared, f"stage:{run}/train", "read") in edges
    assert (f"stage:{run}/prepare", prepared, "wrote") in edges
    assert (data, f"stage:{run}/prepare", "read") in edges
    assert [m["run"]["id"] for m in graph["made_by"]] == [run]
    text = mltrail(home, "trace", "model.pkl", cwd=project).stdout
    assert "stage train" in text
    assert "stage prepare" in text
    assert mltrail(home, "verify").returncode == 0


def test_a_malformed_dvc_lock_is_a_warning_and_the_run_still_ends(pipeline):
    project, bin_dir, home = pipeline
    dvc = bin_dir / "dvc"
    dvc.write_text(
        f"#!{sys.executable}\nimport pathlib\n"
        "pathlib.Path('dvc.lock').write_text('stages: [not, a, mapping')\n"
    )
    proc = mltrail(home, "run", "--", "dvc", "repro", cwd=project, path=bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert "DVC stages not recorded: malformed dvc.lock" in proc.stderr
    assert "Traceback" not in proc.stderr
    kinds = [e.kind for e in entries(home)]
    assert "run.step" not in kinds
    assert kinds[-1] == "run.ended"


def test_another_command_records_no_stages(pipeline):
    project, bin_dir, home = pipeline
    (project / "dvc.lock").write_text("schema: '2.0'\nstages: {s: {cmd: echo}}\n")
    proc = mltrail(home, "run", "--", "true", cwd=project, path=bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert "run.step" not in [e.kind for e in entries(home)]
