"""``mltrail hook``: a real virtual environment whose python records scripts in a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

from ledger_reading import entries

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def env_python(tmp_path_factory):
    """A venv (no pip) that sees this interpreter's packages, as a user's would."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, system_site_packages=True, with_pip=False, symlinks=True)
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # The packages this test runs with (mltrail's dependencies) seen from the venv.
    ours = [p for p in sys.path if p.endswith("-packages") and Path(p).is_dir()]
    Path(purelib, "deps.pth").write_text("\n".join(ours) + "\n")
    return python


@pytest.fixture
def project(tmp_path, env_python, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", SRC)
    monkeypatch.delenv("MLTRAIL_RUN_ID", raising=False)
    monkeypatch.delenv("MLTRAIL_HOOK", raising=False)
    monkeypatch.setenv("MLTRAIL_HOME", str(tmp_path / "home"))
    proj = tmp_path / "proj"
    proj.mkdir()
    yield proj
    _mltrail(env_python, "hook", "remove")


def _mltrail(
    python: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, "-m", "mltrail", *args], capture_output=True, text=True, check=check
    )


def _runs(python: Path, home: Path) -> list[dict]:
    if not home.exists():
        return []
    out = _mltrail(python, "--home", str(home), "runs", "--json").stdout
    return json.loads(out)


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def test_install_records_scripts_in_the_folder_only(env_python, project, tmp_path):
    home = tmp_path / "home"
    out = _mltrail(env_python, "hook", "install", "--project", str(project), "--json")
    installed = json.loads(out.stdout)
    assert installed["installed"]
    assert installed["projects"] == [str(project.resolve())]
    train = _script(project, "train.py", "import sys\nprint('trained')\nsys.exit(3)\n")
    done = subprocess.run(
        [env_python, train, "--lr", "0.1"], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (3, "trained\n")
    assert "mltrail hook" not in done.stderr
    assert "Traceback" not in done.stderr
    [run] = _runs(env_python, home)
    assert (run["name"], run["status"], run["exit_code"]) == ("train.py", "failed", 3)
    assert run["command"][1:] == [str(train), "--lr", "0.1"]

    elsewhere = _script(tmp_path, "other.py", "print('elsewhere')\n")
    subprocess.run([env_python, elsewhere], check=True, cwd=project)
    subprocess.run([env_python, "-c", "pass"], check=True, cwd=project)
    subprocess.run([env_python, "-m", "json.tool", "--help"], check=True,
                   capture_output=True, cwd=project)  # fmt: skip
    off = subprocess.run([env_python, train], env={**os.environ, "MLTRAIL_HOOK": "0"})
    assert off.returncode == 3
    assert len(_runs(env_python, home)) == 1

    removed = json.loads(_mltrail(env_python, "hook", "remove", "--json").stdout)
    assert removed["installed"] is False
    subprocess.run([env_python, train], capture_output=True)
    assert len(_runs(env_python, home)) == 1


def test_a_child_python_joins_the_hooked_run(env_python, project, tmp_path):
    _mltrail(env_python, "hook", "install", "--project", str(project))
    _script(project, "child.py", """\
        import mltrail
        with mltrail.start_run() as run:
            run.log_metrics({"acc": 0.9})
    """)  # fmt: skip
    parent = _script(project, "parent.py", """\
        import subprocess, sys
        from pathlib import Path
        subprocess.run([sys.executable, Path(__file__).with_name("child.py")], check=True)
    """)  # fmt: skip
    subprocess.run([env_python, parent], check=True)
    [run] = _runs(env_python, tmp_path / "home")
    assert (run["name"], run["status"]) == ("parent.py", "succeeded")
    shown = _mltrail(env_python, "--home", str(tmp_path / "home"), "show", run["id"])
    assert "acc" in shown.stdout


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [("exit(5)\n", "failed", 5), ("quit()\n", "succeeded", 0)],
)
def test_the_exit_builtins_are_recorded_with_their_status(
    env_python, project, tmp_path, body, status, code
):
    # exit() and quit() (site's builtins) raise SystemExit without sys.exit:
    # exit(5) was recorded as succeeded, without an exit code.
    _mltrail(env_python, "hook", "install", "--project", str(project))
    script = _script(project, "leave.py", body)
    done = subprocess.run([env_python, script], capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    [run] = _runs(env_python, tmp_path / "home")
    assert (run["status"], run["exit_code"]) == (status, code)


@pytest.mark.parametrize(
    ("body", "code", "status", "exit_code"),
    [
        ("raise SystemExit(3)\n", 3, "aborted", None),
        ("import sys\ntry:\n    sys.exit(2)\nexcept SystemExit:\n    pass\n",
         0, "succeeded", None),
        # the script's own `del __file__` is no sign its code ended: Python
        # removes __cached__ with it, the script did not
        ("import sys\ndel __file__\nsys.exit(2)\n", 2, "failed", 2),
    ],
    ids=["raise-at-top-level", "sys-exit-caught", "file-deleted-then-sys-exit"],
)  # fmt: skip
def test_an_exit_status_the_hook_cannot_see_is_not_recorded_as_another(
    env_python, project, tmp_path, body, code, status, exit_code
):
    """``raise SystemExit(3)`` at top level: Python handles it in C before the
    ``atexit`` end, which saw no ``sys.exit`` and recorded the run as
    succeeded. It is now aborted, its exit status unknown, and says so. A
    ``sys.exit(2)`` the script caught, then ended normally, was recorded as
    failed with exit code 2."""
    _mltrail(env_python, "hook", "install", "--project", str(project))
    script = _script(project, "leave.py", body)
    done = subprocess.run([env_python, script], capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    [run] = _runs(env_python, tmp_path / "home")
    assert (run["status"], run["exit_code"]) == (status, exit_code)
    if status == "aborted":
        ended = _mltrail(env_python, "--home", str(tmp_path / "home"), "show",
                         run["id"], "--json").stdout  # fmt: skip
        assert "exit status is unknown" in ended


def test_a_script_python_cannot_open_makes_no_run(env_python, project, tmp_path):
    # Python exits 2 ("can't open file") after the hook has started a run: a
    # typo, a symlink loop or an unreadable script was recorded as succeeded.
    _mltrail(env_python, "hook", "install", "--project", str(project))
    (project / "loop-a.py").symlink_to(project / "loop-b.py")
    (project / "loop-b.py").symlink_to(project / "loop-a.py")
    for name in ("typo.py", "loop-a.py"):
        done = subprocess.run(
            [env_python, project / name], capture_output=True, text=True
        )
        assert done.returncode == 2
        assert "can't open file" in done.stderr
        assert "mltrail" not in done.stderr
    assert _runs(env_python, tmp_path / "home") == []


def test_a_folder_or_zip_without_main_makes_no_run(env_python, project, tmp_path):
    # Python exits 1 ("can't find '__main__' module") for a folder without a
    # __main__.py and for a zip archive without __main__, after the hook had
    # started a run: each left a run (failed) of a script that never ran.
    import zipfile

    _mltrail(env_python, "hook", "install", "--project", str(project))
    (project / "pkg").mkdir()
    _script(project / "pkg", "train.py", "print('never run')\n")
    with zipfile.ZipFile(project / "lib.zip", "w") as z:
        z.writestr("train.py", "print('never run')\n")
    for name in ("pkg", "lib.zip"):
        done = subprocess.run(
            [env_python, project / name], capture_output=True, text=True
        )
        assert done.returncode == 1, done.stderr
        assert "can't find '__main__' module" in done.stderr
        assert "mltrail" not in done.stderr
    assert _runs(env_python, tmp_path / "home") == []

    (project / "app").mkdir()
    _script(project / "app", "__main__.py", "print('app')\n")
    with zipfile.ZipFile(project / "app.pyz", "w") as z:
        z.writestr("__main__.py", "print('zipped app')\n")
    for name, said in (("app", "app\n"), ("app.pyz", "zipped app\n")):
        done = subprocess.run(
            [env_python, project / name], capture_output=True, text=True
        )
        assert (done.returncode, done.stdout) == (0, said), done.stderr
    runs = _runs(env_python, tmp_path / "home")
    assert sorted((r["name"], r["status"]) for r in runs) == [
        ("app", "succeeded"),
        ("app.pyz", "succeeded"),
    ]


def test_a_forked_child_leaves_the_run_to_its_parent(env_python, project, tmp_path):
    # A forked child runs the parent's atexit and exception hooks: it used to
    # end the run (as succeeded, or failed with its own error), and the parent
    # then wrote a second run.ended.
    _mltrail(env_python, "hook", "install", "--project", str(project))
    fork = _script(project, "fork.py", """\
        import os, sys
        for end in ("exit", "raise"):
            pid = os.fork()
            if pid == 0:
                if end == "exit":
                    sys.exit(0)
                raise ValueError("the child failed")
            os.waitpid(pid, 0)
        print("parent done")
        sys.exit(3)
    """)  # fmt: skip
    done = subprocess.run([env_python, fork], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (3, "parent done\n")
    home = tmp_path / "home"
    [run] = _runs(env_python, home)
    assert (run["name"], run["status"], run["exit_code"]) == ("fork.py", "failed", 3)
    ended = [e for e in entries(home, run["id"]) if e.kind == "run.ended"]
    assert [e.body["exit_code"] for e in ended] == [3]


def test_a_child_script_does_not_log_its_arguments_as_the_runs(
    env_python, project, tmp_path
):
    # A child python of the folder joins the run; its argparse arguments were
    # recorded as the run's parameters too: the parent's --lr 0.1 showed as 0.5.
    _mltrail(env_python, "hook", "install", "--project", str(project))
    _script(project, "child.py", """\
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float)
        parser.parse_args()
    """)  # fmt: skip
    parent = _script(project, "parent.py", """\
        import argparse, subprocess, sys
        from pathlib import Path
        parser = argparse.ArgumentParser()
        parser.add_argument("--lr", type=float)
        parser.parse_args()
        child = Path(__file__).with_name("child.py")
        subprocess.run([sys.executable, child, "--lr", "0.5"], check=True)
    """)  # fmt: skip
    subprocess.run([env_python, parent, "--lr", "0.1"], check=True)
    home = tmp_path / "home"
    [run] = _runs(env_python, home)
    parsed = [
        e.body["params"]
        for e in entries(home, run["id"])
        if e.kind == "run.params" and e.body["source"] == "argparse"
    ]
    assert parsed == [{"lr": 0.1}]


def test_a_broken_home_does_not_stop_the_script(env_python, project, tmp_path):
    not_a_folder = tmp_path / "home-file"
    not_a_folder.write_text("not a ledger")
    _mltrail(env_python, "hook", "install", "--project", str(project),
             "--home", str(tmp_path / "home"))  # fmt: skip
    train = _script(project, "train.py", "print('still trained')\n")
    env = {**os.environ, "MLTRAIL_HOME": str(not_a_folder)}
    # The installed --home is made unusable too: a file where the folder should be.
    (tmp_path / "home").write_text("not a ledger")
    done = subprocess.run([env_python, train], capture_output=True, text=True, env=env)
    assert (done.returncode, done.stdout) == (0, "still trained\n")
    [line] = done.stderr.splitlines()
    assert line.startswith("mltrail hook: not recording this script: ")


def test_status_says_when_no_hook_is_installed(env_python, project):
    status = json.loads(_mltrail(env_python, "hook", "status", "--json").stdout)
    assert status["installed"] is False
    assert status["site_dir"].endswith("site-packages")


def test_install_outside_a_venv_is_an_input_error(env_python, project, tmp_path):
    base = subprocess.run(
        [env_python, "-c", "import sys; print(sys.base_prefix)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    real = Path(base) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not real.exists():
        pytest.skip(f"no base interpreter at {real}")
    done = subprocess.run(
        [real, "-m", "mltrail", "hook", "install", "--project", str(project)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "no active virtual environment" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [[], ["install"], ["remove"], ["status"]])
def test_help_has_examples(args):
    from click.testing import CliRunner

    from mltrail.cli.main import cli

    result = CliRunner().invoke(cli, ["hook", *args, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output


def test_status_names_a_hook_left_by_another_version(tmp_path):
    from mltrail.record.hook import MODULE_NAME, hook_status, install_hook

    site_dir = tmp_path / "site"
    installed = install_hook([tmp_path], site_dir=site_dir, home=tmp_path / "h")
    assert installed.current
    assert installed.home == str((tmp_path / "h").resolve())
    module = site_dir / MODULE_NAME
    module.write_text("# older\n" + module.read_text())
    assert hook_status(site_dir).current is False


def test_a_reinstall_replaces_the_module_without_rewriting_it(tmp_path):
    # Every Python start-up of the venv reads the module: `hook install` run
    # again truncated and rewrote it in place, so a start-up reading it then
    # could get half a module (a SyntaxError traceback in that process).
    from mltrail.record.hook import MODULE_NAME, install_hook

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    site_dir = tmp_path / "site"
    install_hook([first], site_dir=site_dir)
    with (site_dir / MODULE_NAME).open("rb") as reading:  # a start-up, meanwhile
        install_hook([second], site_dir=site_dir)
        seen = reading.read()
    compile(seen, MODULE_NAME, "exec")
    assert repr(str(first.resolve())).encode() in seen
    assert repr(str(second.resolve())).encode() in (site_dir / MODULE_NAME).read_bytes()
