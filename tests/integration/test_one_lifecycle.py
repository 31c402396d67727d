"""One run lifecycle (issue 15, part 3): one process makes one run, whichever way
it starts; one closer at a time; ranks above 0 add only their own hardware.
Real subprocesses, real SQLite homes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from tests.ledger_reading import entries

import mltrail

pytestmark = pytest.mark.usefixtures("isolated_git")

SCRIPT = textwrap.dedent("""
    import argparse, mltrail
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    with mltrail.start_run("inner", params={"seed": 3}) as run:
        for step in range(3):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        inner = mltrail.start_run("innermost")
        inner.log_metrics({"acc": 0.5})
        inner.end()
        assert inner.id == run.id
    print(run.id)
""")


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    mltrail.init_home(path, origin="test.mltrail.local/lifecycle", env={})
    return path


def _env(home, **more):
    env = {**os.environ, "MLTRAIL_HOME": str(home), **more}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_SPOOL", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        if name not in more:
            env.pop(name, None)
    return env


def _python(home, cwd, *args, **env):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=_env(home, **env),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _one_run(home):
    found = entries(home)
    (run_id,) = {e.run for e in found if e.kind == "run.started"}
    kinds = [e.kind for e in found if e.run == run_id]
    assert kinds.count("run.ended") == 1
    return run_id, [e for e in found if e.run == run_id]


def _metric_names(run_entries):
    return {n for e in run_entries if e.kind == "run.metrics" for n in e.body["series"]}


def test_auto_with_a_script_that_starts_its_own_runs_is_one_run(home, tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "conf.yaml").write_text("optimizer:\n  lr: 0.01\n  name: adam\n")
    proc = _python(home, tmp_path, "-m", "mltrail.auto", "train.py",
                   "--config", "conf.yaml", "--lr", "0.2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_id, run_entries = _one_run(home)
    assert proc.stdout.split() == [run_id]
    assert _metric_names(run_entries) == {"loss", "acc"}
    params = {k: v for e in run_entries if e.kind == "run.params"
              for k, v in e.body["params"].items()}  # fmt: skip
    assert params["optimizer.lr"] == 0.01  # the YAML config, as `mltrail run` reads it
    assert params["seed"] == 3
    assert run_entries[-1].body["status"] == "succeeded"


def test_wrapped_auto_with_nested_runs_is_one_run(home, tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    proc = _python(home, tmp_path, "-m", "mltrail", "run", "-q", "--",
                   sys.executable, "-m", "mltrail.auto", "train.py")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_id, run_entries = _one_run(home)
    assert proc.stdout.split() == [run_id]
    assert _metric_names(run_entries) == {"loss", "acc"}


def test_a_nested_start_run_does_not_end_the_outer_run(home, tmp_path):
    code = textwrap.dedent("""
        import mltrail
        with mltrail.start_run("outer") as outer:
            with mltrail.start_run("inner") as inner:
                inner.log_metrics({"x": 1})
            assert inner.id == outer.id and outer.status is None
            outer.log_metrics({"y": 2})
    """)
    proc = _python(home, tmp_path, "-c", code)
    assert proc.returncode == 0, proc.stderr
    _, run_entries = _one_run(home)
    assert _metric_names(run_entries) == {"x", "y"}
    assert run_entries[-1].kind == "run.ended"


def test_closers_racing_write_at_most_one_run_ended(home, tmp_path):
    code = textwrap.dedent("""
        import os, mltrail
        run = mltrail.start_run("dies")
        print(run.id, flush=True)
        os._exit(0)  # the recorder dies without recording the end
    """)
    proc = _python(home, tmp_path, "-c", code)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.split()[0]
    closers = [
        subprocess.Popen(
            [sys.executable, "-m", "mltrail", "runs", "close",
             *([run_id] if n % 2 else ["--stale"])],
            cwd=tmp_path, env=_env(home), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for n in range(6)
    ]  # fmt: skip
    for closer in closers:
        closer.communicate(timeout=120)
    ended = [e for e in entries(home, run_id) if e.kind == "run.ended"]
    assert len(ended) == 1
    assert ended[0].body["status"] == "aborted"


def test_threads_closing_by_hand_and_stale_cleanup_write_one_end(home, tmp_path):
    import threading

    from mltrail.errors import InputError
    from mltrail.record.open_runs import close_run, close_stale_runs

    code = "import os, mltrail\nprint(mltrail.start_run('dies').id)\nos._exit(0)\n"
    run_id = _python(home, tmp_path, "-c", code).stdout.split()[0]
    errors: list[Exception] = []

    def close(by_hand):
        opened = mltrail.open_home(home, env={})
        try:
            if by_hand:
                close_run(opened, run_id, reason="closed by hand")
            else:
                close_stale_runs(opened)
        except InputError as e:
            errors.append(e)
        finally:
            opened.close()

    threads = [threading.Thread(target=close, args=(n % 2 == 0,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ended = [e for e in entries(home, run_id) if e.kind == "run.ended"]
    assert len(ended) == 1
    assert all("already ended" in str(e) or "no run" in str(e) for e in errors)


def test_a_rank_above_zero_does_not_read_git_again(home, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    marker = tmp_path / "git-was-called"
    (fake / "git").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (fake / "git").chmod(0o755)
    run_id = "01936f0e-0000-7000-8000-0000000000bb"
    launch = {"MLTRAIL_RUN_ID": run_id, "WORLD_SIZE": "2"}
    rank0 = _python(home, tmp_path, "-c",
                    "import mltrail\nr = mltrail.start_run()\nimport os; os._exit(0)",
                    RANK="0", **launch)  # fmt: skip
    assert rank0.returncode == 0, rank0.stderr
    marker.unlink(missing_ok=True)
    path = f"{fake}{os.pathsep}{os.environ['PATH']}"
    rank1 = _python(home, tmp_path, "-c", "import mltrail; mltrail.start_run().end()",
                    RANK="1", LOCAL_RANK="1", PATH=path, **launch)  # fmt: skip
    assert rank1.returncode == 0, rank1.stderr
    assert not marker.exists()
    added = [
        e for e in entries(home, run_id) if e.body.get("rank", {}).get("rank") == 1
    ]
    assert [e.kind for e in added] == ["run.hardware"]


@pytest.mark.parametrize(
    ("how", "status", "exit_code"),
    [("raise SystemExit(0)", "succeeded", 0), ("raise SystemExit(3)", "failed", 3)],
)
def test_the_api_and_auto_end_a_system_exit_alike(
    home, tmp_path, how, status, exit_code
):
    """One lifecycle: ``with start_run()`` and ``python -m mltrail.auto`` map an
    exit the same way (``lifecycle.ended_by``)."""
    (tmp_path / "api.py").write_text(
        f"import mltrail\nwith mltrail.start_run('api'):\n    {how}\n"
    )
    (tmp_path / "plain.py").write_text(f"{how}\n")
    assert _python(home, tmp_path, "api.py").returncode == exit_code
    assert _python(home, tmp_path, "-m", "mltrail.auto", "plain.py").returncode == (
        exit_code
    )
    ended = [e.body for e in entries(home) if e.kind == "run.ended"]
    assert [(b["status"], b["exit_code"]) for b in ended] == [(status, exit_code)] * 2


def test_a_callback_ends_the_run_as_its_exception_says(home, tmp_path):
    code = textwrap.dedent("""
        import mltrail
        run = mltrail.start_run("callback")
        run.log_metrics({"loss": 0.5})
        run.end_after(KeyboardInterrupt())  # a framework's on_exception hook
        run.end_after(None)  # ending twice does nothing
    """)
    proc = _python(home, tmp_path, "-c", code)
    assert proc.returncode == 0, proc.stderr
    _, run_entries = _one_run(home)
    assert _metric_names(run_entries) == {"loss"}
    assert run_entries[-1].body["status"] == "interrupted"
    assert not list((home / "runs" / "open").glob("*"))
