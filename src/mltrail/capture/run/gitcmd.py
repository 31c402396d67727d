"""Running git: the one place every git command mltrail runs goes through.

mltrail reads repositories it did not prepare: an auditor runs ``mltrail
reproduce --check`` in a clone or a work tree someone else set up, and a run reads
whatever ``.git/config`` its project has. Git runs programs named by that config
on the way to an answer, and some of its settings change the answer itself. So
every command runs with:

* ``core.fsmonitor=false``: a ``core.fsmonitor`` hook runs on every ``status``
  and ``diff`` and may also lie about what changed;
* ``core.hooksPath`` set to the null device and ``protocol.allow=never``: no hook
  and no transport (``ext::`` runs a command) can start;
* every ``filter.<driver>`` of the configuration neutralised (its ``clean``,
  ``smudge`` and ``process`` set empty, ``required`` false), except git-lfs's own
  standard commands: a clean filter runs a program for every file git re-reads and
  can make an edited file look unchanged; the work tree is compared byte for byte;
* ``core.trustctime=true``, ``core.checkStat=default``: with ctime not trusted
  (or only size and mtime checked), an edit of the same size whose mtime is put
  back (``touch -d``) matches the index's stat data, and git never reads the file;
  a ctime cannot be put back without root. ``core.untrackedCache=false``: an
  index prepared elsewhere cannot carry a cache that hides untracked files;
* ``GIT_NO_REPLACE_OBJECTS``: ``git replace`` would make a commit id stand for
  another commit's tree, which a clone of the repository does not get;
* no ``GIT_*`` variable of the environment but those that choose the user's own
  config files and repository discovery (``GIT_DIR``, ``GIT_WORK_TREE`` or
  ``GIT_INDEX_FILE`` would make git describe another repository than the one
  the command runs in);
* ``LC_ALL=C``, ``GIT_OPTIONAL_LOCKS=0`` (read-only: the index is never
  refreshed on disk), ``GIT_TERMINAL_PROMPT=0``, a timeout, no stdin.

Diff drivers are left to ``--no-ext-diff --no-textconv`` on every ``diff``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["TIMEOUT_S", "Git", "GitError", "GitMissingError", "decode"]

TIMEOUT_S = 10
_CHUNK = 1 << 20
_SAFE_ENV = {
    "LC_ALL": "C",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_NO_REPLACE_OBJECTS": "1",
}
_KEPT_GIT_VARIABLES = frozenset(
    {
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_CEILING_DIRECTORIES",
        "GIT_DISCOVERY_ACROSS_FILESYSTEM",
        "GIT_EXEC_PATH",
    }
)
_OPTIONS = (
    "-c", "core.fsmonitor=false",
    "-c", f"core.hooksPath={os.devnull}",
    "-c", "protocol.allow=never",
    "-c", "core.trustctime=true",
    "-c", "core.checkStat=default",
    "-c", "core.untrackedCache=false",
    "-c", "diff.autoRefreshIndex=false",
    "-c", "core.quotePath=false",
)  # fmt: skip
_READ_NO_FILES = frozenset(
    {"rev-parse", "symbolic-ref", "config", "describe", "ls-files", "hash-object"}
)
"""Commands that read no file of the work tree as git content (``hash-object``
only from stdin), so need no filter neutralised: no config read first."""
_LFS = {
    "clean": "git-lfs clean -- %f",
    "smudge": "git-lfs smudge -- %f",
    "process": "git-lfs filter-process",
    "required": "true",
}
"""What ``git lfs install`` writes: the one filter driver left to run (it runs the
git-lfs found on PATH, not a program the repository names)."""


class GitError(Exception):
    """A git command could not run or failed; the message says which and why."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class GitMissingError(GitError):
    """The git executable is not on PATH."""


class Git:
    """git commands in one directory, with the safe settings of the module.

    The configuration's filter drivers are read once, by the first command.
    """

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self._env: dict[str, str] | None = None

    def at(self, cwd: Path) -> Git:
        """The same settings (filters already read) in another directory."""
        moved = Git(cwd)
        moved._env = self._env
        return moved

    def run(self, *args: str, absent_ok: bool = False) -> bytes | None:
        """Run ``git args`` and return its stdout.

        Exit status 1 means "nothing there" for the queries that pass ``absent_ok``
        (``rev-parse --verify -q``, ``symbolic-ref -q``, ``config --get-regexp``) and
        returns None.

        Raises:
            GitMissingError: git is not installed.
            GitError: git timed out, could not start, or failed.
        """
        reads_files = args[0] not in _READ_NO_FILES or "--path" in args
        env = self.env() if reads_files else (self._env or _base_env())
        return self._run(env, args, absent_ok=absent_ok)

    def hash_files(self, names: list[str]) -> bytes:
        """``git hash-object -- names``: the blob id git would store for each
        file (relative to ``cwd``), one a line, its conversions applied and
        every filter neutralised but git-lfs's.

        Raises:
            GitMissingError: git is not installed.
            GitError: git timed out, could not start, or failed.
        """
        return (
            self._run(self.env(), ("hash-object", "--", *names), absent_ok=False) or b""
        )

    def read_config(self, pattern: str) -> bytes | None:
        """``git config -z --get-regexp pattern``, None when nothing matches; the
        filter drivers are read by the same command (one start of git less)."""
        base = _base_env()
        raw = self._run(
            base,
            ("config", "-z", "--get-regexp", f"{pattern}|^filter\\."),
            absent_ok=True,
        )
        drivers, kept = _parse_filters(raw or b"")
        self._env = base | _neutralised_filters(drivers)
        return b"\0".join(kept) if kept else None

    def stream(self, args: tuple[str, ...], limit: int) -> tuple[bytes, str, int]:
        """Stream a git command's output: its first ``limit`` bytes, sha256 and size.

        Raises:
            GitMissingError: git is not installed.
            GitError: git timed out, could not start, or failed.
        """
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                    ["git", *_OPTIONS, *args],  # noqa: S607 - git from PATH
                    cwd=self.cwd,
                    env=self.env(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                )
            except FileNotFoundError as e:
                raise GitMissingError("git is not installed") from e
            except OSError as e:
                raise GitError(f"git could not be started: {e}") from e
            with proc:
                timed_out = threading.Event()
                timer = threading.Timer(
                    TIMEOUT_S, lambda: (timed_out.set(), proc.kill())
                )
                timer.start()
                try:
                    kept, digest, size = _drain(proc.stdout, limit)
                finally:
                    timer.cancel()
            _check_exit(args[0], proc.returncode, timed_out.is_set(), errors)
        return kept, digest, size

    def env(self) -> dict[str, str]:
        """The environment of every command: see the module docstring."""
        if self._env is None:
            base = _base_env()
            self._env = base | _neutralised_filters(self._filters(base))
        return self._env

    def _filters(self, base: dict[str, str]) -> dict[str, dict[str, str]]:
        """Filter driver name -> its settings, from every config file git reads."""
        try:
            raw = self._run(
                base, ("config", "-z", "--get-regexp", r"^filter\."), absent_ok=True
            )
        except GitError:
            return {}  # outside a repository, or git missing: the command says so
        return _parse_filters(raw or b"")[0]

    def _run(
        self, env: dict[str, str], args: tuple[str, ...], *, absent_ok: bool
    ) -> bytes | None:
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                ["git", *_OPTIONS, *args],  # noqa: S607 - git from PATH
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError as e:
            raise GitMissingError("git is not installed") from e
        except subprocess.TimeoutExpired as e:
            raise GitError(f"`git {args[0]}` timed out after {TIMEOUT_S} s") from e
        except OSError as e:
            raise GitError(f"git could not be started: {e}") from e
        if absent_ok and done.returncode == 1:
            return None
        if done.returncode != 0:
            raise _failure(args[0], done.returncode, done.stderr)
        return done.stdout


def _parse_filters(raw: bytes) -> tuple[dict[str, dict[str, str]], list[bytes]]:
    """``config -z --get-regexp`` output split into filter driver name -> its
    settings, and the other items as they came."""
    drivers: dict[str, dict[str, str]] = {}
    others = []
    for item in raw.split(b"\0"):
        key, _, value = decode(item).partition("\n")
        name, dot, setting = key.removeprefix("filter.").rpartition(".")
        if key.startswith("filter.") and dot:
            drivers.setdefault(name, {})[setting.lower()] = value
        elif item:
            others.append(item)
    return drivers, others


def _base_env() -> dict[str, str]:
    """This process's environment without the ``GIT_*`` variables that change
    which repository, objects or config git reads, plus ``_SAFE_ENV``."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("GIT_") or name in _KEPT_GIT_VARIABLES
    }
    return kept | _SAFE_ENV


def _neutralised_filters(drivers: dict[str, dict[str, str]]) -> dict[str, str]:
    """``GIT_CONFIG_COUNT`` settings (any driver name, even one with ``=`` or
    spaces) that turn off every filter driver but the standard git-lfs one."""
    settings = [
        (f"filter.{name}.{setting}", "false" if setting == "required" else "")
        for name, found in sorted(drivers.items())
        if not (name == "lfs" and all(_LFS.get(k) == v for k, v in found.items()))
        for setting in ("clean", "smudge", "process", "required")
    ]
    env = {"GIT_CONFIG_COUNT": str(len(settings))} if settings else {}
    for i, (key, value) in enumerate(settings):
        env |= {f"GIT_CONFIG_KEY_{i}": key, f"GIT_CONFIG_VALUE_{i}": value}
    return env


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
    """Raise ``GitError`` when a streamed git command timed out or failed."""
    if timed_out:
        raise GitError(f"`git {command}` timed out after {TIMEOUT_S} s")
    if code != 0:
        errors.seek(0)
        raise _failure(command, code, errors.read())


def _failure(command: str, code: int, stderr: bytes) -> GitError:
    """The error for a git command that exited with ``code``."""
    text = decode(stderr).strip()
    first = text.splitlines()[0] if text else "no message"
    return GitError(f"`git {command}` failed (exit {code}): {first}", stderr=text)


def decode(raw: bytes) -> str:
    """UTF-8 text; invalid bytes become backslash escapes so the result is JSON-safe."""
    return raw.decode("utf-8", "backslashreplace")
