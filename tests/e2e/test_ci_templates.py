"""The CI templates (examples/ci) and the CI identity they rely on (issue 15, CI).

The templates must parse and hold the steps the README promises: install,
`mltrail sources check` before training, `mltrail run`, `mltrail verify`, and the
ledger home kept (cache and artifact). Then `mltrail run` under the variables
GitHub Actions and GitLab CI set must record the job, pipeline, commit,
repository and url in the run's ``actor.ci``. The subprocess gets an explicit
environment: our own CI sets ``CI=true`` and other systems' variables.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.ledger_reading import entries

CI_DIR = Path(__file__).resolve().parents[2] / "examples" / "ci"


def _order(commands, *needles):
    """The index of the first command holding each needle (all must be found)."""
    found = []
    for needle in needles:
        hits = [i for i, c in enumerate(commands) if needle in c]
        assert hits, f"no step runs {needle!r}: {commands}"
        found.append(hits[0])
    return found


def test_github_actions_template_trains_gates_verifies_and_keeps_the_ledger():
    workflow = yaml.safe_load((CI_DIR / "github-actions.yml").read_text())
    job = workflow["jobs"]["train"]
    assert job["env"]["MLTRAIL_HOME"]
    steps = job["steps"]
    runs = [s.get("run", "") for s in steps]
    install, gate, train, verify = _order(
        runs,
        "pip install mltrail",
        "mltrail sources check",
        "mltrail run",
        "mltrail verify",
    )
    assert install < gate < train < verify
    assert "-- python train.py" in runs[train]
    uses = {s.get("uses", "").split("@")[0]: s for s in steps if "uses" in s}
    assert uses["actions/cache"]["with"]["path"] == "${{ env.MLTRAIL_HOME }}"
    artifact = uses["actions/upload-artifact"]
    assert artifact["with"]["path"] == "${{ env.MLTRAIL_HOME }}"
    assert artifact["if"] == "always()"
    # a failing gate fails the job: no step lets it pass
    assert not steps[gate].get("continue-on-error")


def test_gitlab_template_trains_gates_verifies_and_keeps_the_ledger():
    pipeline = yaml.safe_load((CI_DIR / "gitlab-ci.yml").read_text())
    job = pipeline["train"]
    assert job["stage"] in pipeline["stages"]
    home = pipeline["variables"]["MLTRAIL_HOME"]
    assert home.startswith("$CI_PROJECT_DIR/")
    kept = home.removeprefix("$CI_PROJECT_DIR/") + "/"
    assert kept in job["cache"]["paths"]
    assert kept in job["artifacts"]["paths"]
    assert job["artifacts"]["when"] == "always"
    commands = job["before_script"] + job["script"]
    install, gate, train, verify = _order(
        commands,
        "pip install mltrail",
        "mltrail sources check",
        "mltrail run",
        "mltrail verify",
    )
    assert install < gate < train < verify
    assert not job.get("allow_failure")


GITHUB = {
    "GITHUB_ACTIONS": "true",
    "CI": "true",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_JOB": "train",
    "GITHUB_WORKFLOW": "train",
    "GITHUB_SHA": "4f1c2d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_REPOSITORY": "acme/models",
    "GITHUB_ACTOR": "alice",
    "GITHUB_SERVER_URL": "https://github.com",
}
GITLAB = {
    "GITLAB_CI": "true",
    "CI": "true",
    "CI_JOB_ID": "4242",
    "CI_JOB_NAME": "train",
    "CI_PIPELINE_ID": "777",
    "CI_COMMIT_SHA": "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
    "CI_COMMIT_REF_NAME": "main",
    "CI_PROJECT_PATH": "acme/models",
    "CI_JOB_URL": "https://gitlab.example.com/acme/models/-/jobs/4242",
    "GITLAB_USER_LOGIN": "bob",
}


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            GITHUB,
            {
                "system": "github-actions",
                "job": "train",
                "pipeline": "9876543210",
                "attempt": "2",
                "commit": GITHUB["GITHUB_SHA"],
                "repository": "acme/models",
                "actor": "alice",
                "url": "https://github.com/acme/models/actions/runs/9876543210/attempts/2",
            },
        ),
        (
            GITLAB,
            {
                "system": "gitlab-ci",
                "job": "4242",
                "job_name": "train",
                "pipeline": "777",
                "commit": GITLAB["CI_COMMIT_SHA"],
                "repository": "acme/models",
                "actor": "bob",
                "url": GITLAB["CI_JOB_URL"],
            },
        ),
    ],
    ids=["github-actions", "gitlab-ci"],
)
def test_a_run_in_ci_records_the_job_pipeline_commit_repository_and_url(
    tmp_path, variables, expected
):
    home = tmp_path / "home"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "MLTRAIL_HOME": str(home),
        **{k: os.environ[k] for k in ("PYTHONPATH", "LANG") if k in os.environ},
        **variables,
    }

    def mltrail(*args):
        return subprocess.run(
            [sys.executable, "-m", "mltrail", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )

    assert mltrail("init").returncode == 0
    proc = mltrail("run", "--name", "train", "--", sys.executable, "-c", "pass")
    assert proc.returncode == 0, proc.stderr
    started = next(e for e in entries(home) if e.kind == "run.started")
    ci = started.actor["ci"]
    assert {k: ci.get(k) for k in expected} == expected
