"""The code a run used: the git commit, branch, remotes and uncommitted changes.

``capture_code(cwd)`` returns the body of a ``run.code`` entry. It runs a handful of
read-only git commands (each with a 10 s timeout, ``LC_ALL=C`` and
``GIT_OPTIONAL_LOCKS=0``) and never writes to the repository: ``git status`` does not
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

import hashlib
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote

from mltrail.capture.run.blob import Blob

__all__ = ["capture_code", "strip_credentials", "tracked_paths"]

_TIMEOUT_S = 10
_UNTRACKED_CAP = 1000
_CHUNK = 1 << 20
_GIT_ENV = {"LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}
_GIT_OPTIONS = ("-c", "diff.autoRefreshIndex=false", "-c", "core.quotePath=false")
_DIFF_OPTIONS = ("--binary", "--no-color", "--no-ext-diff", "--no-textconv")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_SSH_SCHEMES = frozenset({"ssh", "git+ssh", "ssh+git", "sftp"})
_SECRET_PARAM = re.compile(
    r"token|secret|passw|pwd|auth|credential|signature|api[-_]?key|^key$|^sig$",
    re.IGNORECASE,
)


class _GitError(Exception):
    """A git command could not run or failed; the message says which and why."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class _GitMissingError(_GitError):
    """The git executable is not on PATH."""


def capture_code(cwd: Path, *, diff_limit: int = 50 * 2**20) -> dict[str, Any]:
    """The ``run.code`` body for the git work tree containing ``cwd``.

    Args:
        cwd: the directory the run starts in (any directory inside the work tree).
        diff_limit: the most bytes of ``git diff HEAD`` to keep in the diff blob; the
            hash and size always cover the whole diff.
    """
    if not cwd.is_dir():
        return {"vcs": None, "reason": f"directory does not exist: {cwd}"}
    try:
        top = (_git(cwd, "rev-parse", "--show-toplevel") or b"").rstrip(b"\n")
    except _GitMissingError:
        return {"vcs": None, "reason": "git is not installed"}
    except _GitError as e:
        if "not a git repository" in e.stderr:
            return {"vcs": None, "reason": "not inside a git repository"}
        return {"vcs": "git", "reason": str(e)}
    if not top:  # older git in a bare repository or inside .git
        return {"vcs": "git", "reason": "not inside a git work tree"}
    body: dict[str, Any] = {"vcs": "git", "root": _decode(top)}
    try:
        _read_repository(Path(os.fsdecode(top)), body, diff_limit)
    except _GitError as e:
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
        raw = _git(root, "ls-files", "-z", "--", *names) or b""
    except _GitError:
        return set()
    return {root / os.fsdecode(n) for n in raw.split(b"\0") if n}


def _read_repository(cwd: Path, body: dict[str, Any], diff_limit: int) -> None:
    """Fill ``body`` step by step, so a failure keeps whatever was read before it.

    ``cwd`` is the top of the work tree, so no ``diff.relative`` or similar setting
    narrows what is read to a subdirectory.
    """
    commit = _git_text(
        cwd, "rev-parse", "-q", "--verify", "HEAD^{commit}", absent_ok=True
    )
    branch = _git_text(cwd, "symbolic-ref", "-q", "--short", "HEAD", absent_ok=True)
    body.update(commit=commit, branch=branch, detached=branch is None)
    remotes = _read_remotes(cwd)
    body.update(remote=_main_remote(remotes), remotes=remotes)
    tracked_changes, untracked = _read_status(cwd)
    body["describe"] = _describe(cwd, dirty=tracked_changes) if commit else None
    body.update(
        dirty=tracked_changes or bool(untracked),
        untracked=sorted(untracked)[:_UNTRACKED_CAP],
        untracked_count=len(untracked),
    )
    base = commit or _git_text(cwd, "hash-object", "-t", "tree", "--stdin")
    body.update(_read_diff(cwd, str(base), diff_limit))


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


def _read_remotes(cwd: Path) -> dict[str, str]:
    """Remote name -> its (first) URL, credentials stripped, sorted by name."""
    raw = _git(
        cwd, "config", "-z", "--get-regexp", r"^remote\..*\.url$", absent_ok=True
    )
    remotes: dict[str, str] = {}
    for item in (raw or b"").split(b"\0"):
        key, _, url = _decode(item).partition("\n")
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


def _read_status(cwd: Path) -> tuple[bool, list[str]]:
    """Whether tracked files changed (staged or not), and the untracked paths."""
    raw = _git(cwd, "status", "--porcelain=v1", "-z", "--untracked-files=all") or b""
    return _parse_status(raw)


def _parse_status(raw: bytes) -> tuple[bool, list[str]]:
    """Parse ``git status --porcelain=v1 -z``: ``XY path\\0``, renames add ``orig\\0``."""
    fields = raw.split(b"\0")
    tracked_changes, untracked = False, []
    i = 0
    while i < len(fields):
        field = fields[i]
        i += 1
        if len(field) < 4:
            continue
        code, path = field[:2], field[3:]
        if code == b"??":
            untracked.append(_decode(path))
            continue
        tracked_changes = True
        if b"R" in code or b"C" in code:
            i += 1  # the path it was renamed or copied from
    return tracked_changes, untracked


def _describe(cwd: Path, *, dirty: bool) -> str | None:
    """``git describe --tags --always --dirty``, without taking the index lock."""
    try:
        described = _git_text(cwd, "describe", "--tags", "--always")
    except _GitError:
        return None
    return f"{described}-dirty" if described and dirty else described


def _read_diff(cwd: Path, base: str, limit: int) -> dict[str, Any]:
    """``git diff <base> --binary``: tracked changes, staged and unstaged, vs ``base``."""
    args = ("diff", base, *_DIFF_OPTIONS, "--")
    kept, digest, size = _stream_git(cwd, args, limit)
    return {
        "diff": Blob(kept, media_type="text/x-diff", text=True) if size else None,
        "diff_sha256": digest,
        "diff_size": size,
        "diff_truncated": size > limit,
    }


def _stream_git(cwd: Path, args: tuple[str, ...], limit: int) -> tuple[bytes, str, int]:
    """Stream a git command's output: its first ``limit`` bytes, full sha256 and size.

    Raises:
        _GitError: git is missing, timed out or failed.
    """
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                ["git", *_GIT_OPTIONS, *args],  # noqa: S607 - git from PATH
                cwd=cwd,
                env=_git_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        except FileNotFoundError as e:
            raise _GitMissingError("git is not installed") from e
        with proc:
            timed_out = threading.Event()
            timer = threading.Timer(_TIMEOUT_S, lambda: (timed_out.set(), proc.kill()))
            timer.start()
            try:
                kept, digest, size = _drain(proc.stdout, limit)
            finally:
                timer.cancel()
        _check_exit(args[0], proc.returncode, timed_out.is_set(), errors)
    return kept, digest, size


def _drain(stream: IO[bytes] | None, limit: int) -> tuple[bytes, str, int]:
    """Read ``stream`` to the end: its first ``limit`` bytes, sha256 hex and size."""
    digest, kept, size = hashlib.sha256(), bytearray(), 0
    while stream is not None and (chunk := stream.read(_CHUNK)):
        digest.update(chunk)
        size += len(chunk)
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return bytes(kept), digest.hexdigest(), size


def _check_exit(command: str, code: int, timed_out: bool, errors: IO[bytes]) -> None:
    """Raise ``_GitError`` when a streamed git command timed out or failed."""
    if timed_out:
        raise _GitError(f"`git {command}` timed out after {_TIMEOUT_S} s")
    if code != 0:
        errors.seek(0)
        raise _failure(command, code, errors.read())


def _git_text(cwd: Path, *args: str, absent_ok: bool = False) -> str | None:
    """A git command's output as one stripped line (None when absent, see ``_git``)."""
    raw = _git(cwd, *args, absent_ok=absent_ok)
    return None if raw is None else _decode(raw.rstrip(b"\n"))


def _git(cwd: Path, *args: str, absent_ok: bool = False) -> bytes | None:
    """Run ``git args`` in ``cwd`` and return its stdout.

    Exit status 1 means "nothing there" for the queries that pass ``absent_ok``
    (``rev-parse --verify -q``, ``symbolic-ref -q``, ``config --get-regexp``) and
    returns None.

    Raises:
        _GitMissingError: git is not installed.
        _GitError: git timed out, could not start, or failed.
    """
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", *_GIT_OPTIONS, *args],  # noqa: S607 - git from PATH
            cwd=cwd,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as e:
        raise _GitMissingError("git is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise _GitError(f"`git {args[0]}` timed out after {_TIMEOUT_S} s") from e
    except OSError as e:
        raise _GitError(f"git could not be started: {e}") from e
    if absent_ok and done.returncode == 1:
        return None
    if done.returncode != 0:
        raise _failure(args[0], done.returncode, done.stderr)
    return done.stdout


def _failure(command: str, code: int, stderr: bytes) -> _GitError:
    """The error for a git command that exited with ``code``."""
    text = _decode(stderr).strip()
    first = text.splitlines()[0] if text else "no message"
    return _GitError(f"`git {command}` failed (exit {code}): {first}", stderr=text)


def _git_env() -> dict[str, str]:
    """This process's environment, with git made predictable and lock-free."""
    return {**os.environ, **_GIT_ENV}


def _decode(raw: bytes) -> str:
    """UTF-8 text; invalid bytes become backslash escapes so the result is JSON-safe."""
    return raw.decode("utf-8", "backslashreplace")
