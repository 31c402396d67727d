"""Who or what is writing: OS user, host, and CI identity when present."""

from __future__ import annotations

import getpass
import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["capture_actor", "capture_ci"]

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


def capture_actor(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """OS user, uid and host of this process, plus CI identity when present."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid:{os.getuid()}"
    actor: dict[str, Any] = {
        "user": user,
        "uid": os.getuid(),
        "host": socket.gethostname(),
    }
    ci = capture_ci(env)
    if ci is not None:
        actor["ci"] = ci
    return actor
