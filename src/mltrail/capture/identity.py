"""Who or what is writing: OS account, host, and CI identity when present.

The account comes from the process's real uid (the passwd database), never from
``$USER`` or ``$LOGNAME``, which any process can set. When the environment claims
another name, that claim is kept apart as ``claimed_user`` so a reader sees both.
"""

from __future__ import annotations

import os
import pwd
import socket
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


def capture_ci(env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The CI system running this process and its run identifiers, or None."""
    env = os.environ if env is None else env
    for name, marker, keys in _CI_SYSTEMS:
        if env.get(marker):
            return {"system": name, **{k.lower(): env[k] for k in keys if env.get(k)}}
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
        "host": socket.gethostname(),
    }
    claim = claimed_user(env, actor["user"])
    if claim is not None:
        actor["claimed_user"] = claim
    ci = capture_ci(env)
    if ci is not None:
        actor["ci"] = ci
    return actor
