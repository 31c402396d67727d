"""Who or what is writing: OS account, host, and CI identity when present.

The account comes from the process's real uid (the passwd database), never from
``$USER`` or ``$LOGNAME``, which any process can set. When the environment claims
another name, that claim is kept apart as ``claimed_user`` so a reader sees both.
"""

from __future__ import annotations

import os
import pwd
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "capture_actor",
    "capture_ci",
    "claimed_user",
    "describe_user",
    "os_account",
]

_NAME_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")

_CI_SYSTEMS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "github-actions",
        "GITHUB_ACTIONS",
        (
            "GITHUB_REPOSITORY",
            "GITHUB_RUN_ID",
            "GITHUB_WORKFLOW",
            "GITHUB_ACTOR",
            "GITHUB_SHA",
        ),
    ),
    (
        "gitlab-ci",
        "GITLAB_CI",
        (
            "CI_PROJECT_PATH",
            "CI_PIPELINE_ID",
            "CI_JOB_ID",
            "GITLAB_USER_LOGIN",
            "CI_COMMIT_SHA",
        ),
    ),
    ("jenkins", "JENKINS_URL", ("JOB_NAME", "BUILD_NUMBER", "BUILD_URL")),
    (
        "buildkite",
        "BUILDKITE",
        (
            "BUILDKITE_PIPELINE_SLUG",
            "BUILDKITE_BUILD_NUMBER",
            "BUILDKITE_BUILD_CREATOR",
        ),
    ),
)


# The same facts under one name whatever the system: job, pipeline, commit,
# repository, url (of the job's page), actor.
_GITHUB_FIELDS = {
    "job": "GITHUB_JOB",
    "pipeline": "GITHUB_RUN_ID",
    "attempt": "GITHUB_RUN_ATTEMPT",
    "workflow": "GITHUB_WORKFLOW",
    "commit": "GITHUB_SHA",
    "ref": "GITHUB_REF",
    "repository": "GITHUB_REPOSITORY",
    "actor": "GITHUB_ACTOR",
}
_GITLAB_FIELDS = {
    "job": "CI_JOB_ID",
    "job_name": "CI_JOB_NAME",
    "pipeline": "CI_PIPELINE_ID",
    "commit": "CI_COMMIT_SHA",
    "ref": "CI_COMMIT_REF_NAME",
    "repository": "CI_PROJECT_PATH",
    "actor": "GITLAB_USER_LOGIN",
    "url": "CI_JOB_URL",
}


def _github_url(env: Mapping[str, str]) -> str | None:
    repo, run = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
    if not (repo and run):
        return None
    server = env.get("GITHUB_SERVER_URL") or "https://github.com"
    url = f"{server.rstrip('/')}/{repo}/actions/runs/{run}"
    attempt = env.get("GITHUB_RUN_ATTEMPT")
    return f"{url}/attempts/{attempt}" if attempt else url


def _common_fields(system: str, env: Mapping[str, str]) -> dict[str, str]:
    names = {"github-actions": _GITHUB_FIELDS, "gitlab-ci": _GITLAB_FIELDS}.get(system)
    fields = {k: env[v] for k, v in (names or {}).items() if env.get(v)}
    if system == "github-actions" and (url := _github_url(env)):
        fields["url"] = url
    return fields


def capture_ci(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The CI system running this process and its run identifiers, or None.

    Besides the system's own variables (lower-cased), GitHub Actions and GitLab CI
    give ``job``, ``pipeline``, ``commit``, ``ref``, ``repository``, ``actor`` and
    ``url`` (the job's page), so a reader need not know either system. These come
    from the environment: a claim, like ``claimed_user``, not a proof.
    """
    env = os.environ if env is None else env
    for name, marker, keys in _CI_SYSTEMS:
        if env.get(marker):
            raw = {k.lower(): env[k] for k in keys if env.get(k)}
            return {"system": name, **raw, **_common_fields(name, env)}
    if env.get("CI", "").lower() in ("true", "1", "yes"):
        return {"system": "generic"}
    return None


def os_account(uid: int | None = None) -> str:
    """The account name of ``uid`` (default: this process's real uid), from the
    passwd database; ``uid:<n>`` when it has no entry."""
    uid = os.getuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def claimed_user(env: Mapping[str, str], account: str) -> str | None:
    """The user name the environment claims, when it is not ``account``.

    The variables are read in ``getpass.getuser``'s order; the first set one is
    what tools that trust the environment would have recorded.
    """
    for name in _NAME_VARIABLES:
        value = env.get(name)
        if value:
            return None if value == account else value
    return None


def describe_user(user: str | None, claimed: str | None = None) -> str:
    """``root``, or ``root (claims alice)`` when the environment named another user."""
    shown = user or "?"
    return f"{shown} (claims {claimed})" if claimed else shown


def capture_actor(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """OS account, uid and host of this process, plus CI identity when present.

    ``user`` is the account of the real uid; ``claimed_user`` is added when
    ``$LOGNAME``/``$USER`` name someone else.
    """
    env = os.environ if env is None else env
    uid = os.getuid()
    actor: dict[str, Any] = {
        "user": os_account(uid),
        "uid": uid,
        # what socket.gethostname() returns on POSIX (the kernel's node name),
        # without importing socket on every open of a home
        "host": os.uname().nodename,
    }
    claim = claimed_user(env, actor["user"])
    if claim is not None:
        actor["claimed_user"] = claim
    ci = capture_ci(env)
    if ci is not None:
        actor["ci"] = ci
    return actor
