"""The code a run used: the git commit, branch, remotes and uncommitted changes.

``capture_code(cwd)`` returns the body of a ``run.code`` entry. It runs a handful of
read-only git commands, all through ``gitcmd.Git`` (a timeout, no repository
program run, no replace objects, no ``GIT_DIR`` of the environment: see there), and
adds what git's own answers leave out (``git_hidden``: edits hidden by
assume-unchanged or skip-worktree, ignored source files). It never writes to the
repository: ``git status`` does not
refresh the index on disk, ``git diff`` runs with ``diff.autoRefreshIndex=false``, and
``describe`` gets its ``-dirty`` suffix from ``git status`` instead of ``--dirty``
(which would take the index lock).

Nothing raises out of ``capture_code``: when git is missing, the directory is not in a
repository, or a git command fails, the body says so in ``reason``.

Paths from git are bytes. They are decoded as UTF-8, and bytes that are not valid UTF-8
become backslash escapes (``b"caf\\xe9"`` -> ``"caf\\\\xe9"``), so every name is a
JSON string that shows the raw byte; a name that really contains a backslash followed
by ``x`` and two hex digits reads the same, which we accept.

Remote URLs lose their credentials (``strip_credentials``); everything else is left
for the central redaction pass.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from mltrail.capture.run import git_hidden
from mltrail.capture.run.blob import Blob
from mltrail.capture.run.gitcmd import Git, GitError, GitMissingError, decode

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ["capture_code", "strip_credentials", "tracked_paths"]

_UNTRACKED_CAP = 1000
_DIFF_OPTIONS = (
    "--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--ignore-submodules=none",
    "--src-prefix=a/", "--dst-prefix=b/",  # diff.noprefix would break `git apply -p1`
)  # fmt: skip
_STATUS = (
    "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching",
    "--ignore-submodules=none",
)  # fmt: skip
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git", "sftp"})
_SECRET_PARAM = re.compile(
    r"token|secret|passw|pwd|auth|credential|signature|api[-_]?key|^key$|^sig$",
    re.IGNORECASE,
)


def capture_code(
    cwd: Path, *, diff_limit: int = 50 * 2**20, watch: Collection[Path] = ()
) -> dict[str, Any]:
    """The ``run.code`` body for the git work tree containing ``cwd``.

    Args:
        cwd: the directory the run starts in (any directory inside the work tree).
        diff_limit: the most bytes of ``git diff HEAD`` to keep in the diff blob; the
            hash and size always cover the whole diff.
        watch: files the command runs (absolute, resolved), compared with the index
            by content, not only by git's stat data (``git_hidden``).
    """
    if not cwd.is_dir():
        return {"vcs": None, "reason": f"directory does not exist: {cwd}"}
    try:
        git = Git(cwd)
        top = (git.run("rev-parse", "--show-toplevel") or b"").rstrip(b"\n")
    except GitMissingError:
        return {"vcs": None, "reason": "git is not installed"}
    except GitError as e:
        if "not a git repository" in e.stderr:
            return {"vcs": None, "reason": "not inside a git repository"}
        return {"vcs": "git", "reason": str(e)}
    if not top:  # older git in a bare repository or inside .git
        return {"vcs": "git", "reason": "not inside a git work tree"}
    body: dict[str, Any] = {"vcs": "git", "root": decode(top)}
    try:
        _read_repository(git.at(Path(os.fsdecode(top))), body, diff_limit, watch)
    except GitError as e:
        body["reason"] = str(e)
    return body


def tracked_paths(root: Path, paths: list[Path]) -> set[Path]:
    """Those of ``paths`` (absolute, resolved) that git tracks in the work tree
    at ``root``; none when git cannot say."""
    inside = [p for p in paths if p.is_relative_to(root)]
    if not inside:
        return set()
    names = [os.fsencode(p.relative_to(root)).decode("utf-8", "surrogateescape")
             for p in inside]  # fmt: skip
    try:
        raw = Git(root).run("ls-files", "-z", "--", *names) or b""
    except GitError:
        return set()
    return {root / os.fsdecode(n) for n in raw.split(b"\0") if n}


def _read_repository(
    git: Git, body: dict[str, Any], diff_limit: int, watch: Collection[Path]
) -> None:
    """Fill ``body`` step by step, so a failure keeps whatever was read before it.

    ``git`` runs at the top of the work tree, so no ``diff.relative`` or similar
    setting narrows what is read to a subdirectory.
    """
    commit = _git_text(
        git, "rev-parse", "-q", "--verify", "HEAD^{commit}", absent_ok=True
    )
    branch = _git_text(git, "symbolic-ref", "-q", "--short", "HEAD", absent_ok=True)
    body.update(commit=commit, branch=branch, detached=branch is None)
    remotes = _read_remotes(git)
    body.update(remote=_main_remote(remotes), remotes=remotes)
    changed, untracked, ignored = _read_status(git)
    watched = _relative(git.cwd, watch)
    hidden = git_hidden.hidden_changes(git, git.cwd, watched - changed)
    tracked_changes = bool(changed or hidden)
    body["describe"] = _describe(git, dirty=tracked_changes) if commit else None
    body.update(
        dirty=tracked_changes or bool(untracked),
        untracked=sorted(untracked)[:_UNTRACKED_CAP],
        untracked_count=len(untracked),
    )
    # the files the command runs are recorded in full in run.code files
    sources = git_hidden.source_files(git.cwd, [n for n in ignored if n not in watched])
    if loose := git_hidden.source_files(
        git.cwd, [n for n in untracked if n not in watched]
    ):
        body["untracked_sources"] = loose
    body.update({"hidden": hidden} if hidden else {})
    body.update({"ignored_sources": sources} if sources else {})
    if said := git_hidden.warning(hidden, sources):
        body["warning"] = said
    base = commit or _git_text(git, "hash-object", "-t", "tree", "--stdin")
    body.update(_read_diff(git, str(base), diff_limit))


def strip_credentials(url: str) -> str:
    """``url`` without the credentials a remote URL may carry.

    ``https://user:token@host/x`` and ``https://token@host/x`` become
    ``https://host/x``; ssh-like schemes keep the user but not the password
    (``ssh://git:pw@host/x`` -> ``ssh://git@host/x``); query parameters that look like
    credentials (``token``, ``private_token``, ``access_token``, ``password``...) are
    removed. scp-like remotes (``git@host:org/repo.git``) and local paths are returned
    unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return url
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    userinfo, at, host = rest[:end].rpartition("@")
    authority = host
    user = userinfo.partition(":")[0]
    if at and user and scheme.lower() in _SSH_SCHEMES:
        authority = f"{user}@{host}"
    return f"{scheme}://{authority}{_strip_query(rest[end:])}"


def _strip_query(tail: str) -> str:
    """``tail`` (path, query, fragment) without credential-like query parameters."""
    before_fragment, hash_sign, fragment = tail.partition("#")
    path, question, query = before_fragment.partition("?")
    if not question:
        return tail
    kept = [
        p
        for p in query.split("&")
        if not _SECRET_PARAM.search(unquote(p.split("=")[0]))
    ]
    query_part = f"?{'&'.join(kept)}" if kept else ""
    return f"{path}{query_part}{hash_sign}{fragment}"


def _read_remotes(git: Git) -> dict[str, str]:
    """Remote name -> its (first) URL, credentials stripped, sorted by name."""
    raw = git.read_config(r"^remote\..*\.url$")
    remotes: dict[str, str] = {}
    for item in (raw or b"").split(b"\0"):
        key, _, url = decode(item).partition("\n")
        if key.startswith("remote.") and key.endswith(".url"):
            remotes.setdefault(
                key[len("remote.") : -len(".url")], strip_credentials(url)
            )
    return dict(sorted(remotes.items()))


def _main_remote(remotes: dict[str, str]) -> str | None:
    """The URL of ``origin``, else of the first remote by name, else None."""
    if "origin" in remotes:
        return remotes["origin"]
    return next(iter(remotes.values()), None)


def _relative(root: Path, paths: Collection[Path]) -> set[str]:
    """``paths`` under ``root`` as git names them (``/``-separated, relative)."""
    top = root.resolve()
    return {p.relative_to(top).as_posix() for p in paths if p.is_relative_to(top)}


def _read_status(git: Git) -> tuple[set[str], list[str], list[str]]:
    """The tracked paths that changed (staged or not, submodules too), the untracked
    paths and the ignored ones (a wholly ignored folder as ``folder/``)."""
    raw = git.run(*_STATUS) or b""
    return _parse_status(raw)


def _parse_status(raw: bytes) -> tuple[set[str], list[str], list[str]]:
    """Parse ``git status --porcelain=v1 -z``: ``XY path\\0``, renames add ``orig\\0``."""
    fields = raw.split(b"\0")
    changed: set[str] = set()
    untracked: list[str] = []
    ignored: list[str] = []
    i = 0
    while i < len(fields):
        field = fields[i]
        i += 1
        if len(field) < 4:
            continue
        code, path = field[:2], field[3:]
        if code == b"??":
            untracked.append(decode(path))
            continue
        if code == b"!!":
            ignored.append(decode(path))
            continue
        changed.add(decode(path))
        if (b"R" in code or b"C" in code) and i < len(fields):
            changed.add(decode(fields[i]))  # the path it was renamed or copied from
            i += 1
    return changed, untracked, ignored


def _describe(git: Git, *, dirty: bool) -> str | None:
    """``git describe --tags --always --dirty``, without taking the index lock."""
    try:
        described = _git_text(git, "describe", "--tags", "--always")
    except GitError:
        return None
    return f"{described}-dirty" if described and dirty else described


def _read_diff(git: Git, base: str, limit: int) -> dict[str, Any]:
    """``git diff <base> --binary``: tracked changes, staged and unstaged, vs ``base``."""
    args = ("diff", base, *_DIFF_OPTIONS, "--")
    kept, digest, size = git.stream(args, limit)
    return {
        "diff": Blob(kept, media_type="text/x-diff", text=True) if size else None,
        "diff_sha256": digest,
        "diff_size": size,
        "diff_truncated": size > limit,
    }


def _git_text(git: Git, *args: str, absent_ok: bool = False) -> str | None:
    """A git command's output as one stripped line (None when absent, see ``Git.run``)."""
    raw = git.run(*args, absent_ok=absent_ok)
    return None if raw is None else decode(raw.rstrip(b"\n"))
