"""Secrets on a command line: options, env assignments, shell strings and ``-p``.

:func:`redact_argv` returns the command with every secret argument replaced by a
commitment marker (``mltrail.capture.run.redact``), the clear secrets found (to mask
them out of logs), and the options whose values it committed::

    >>> r = redact_argv(["sh", "-c", "PGPASSWORD=hunter22 psql -h db", "--lr", "0.1"])
    >>> r.value[2].startswith("PGPASSWORD=<redacted hmac-sha256:"), r.secrets
    (True, ('hunter22',))

Single-letter options are ambiguous: ``-p`` is a password for ``mysql`` and
``sshpass``, a port for ``psql`` and ``ssh``, "parents" for ``mkdir``. Decided:

* the value of ``-p VALUE`` is committed unless the program is one whose ``-p``
  is known not to be a secret (``_P_NOT_SECRET``: mkdir, ssh, psql, docker run…);
  for a script of unknown meaning (``python train.py -p 8080``) it is committed:
  a commitment loses only the readability of a port number;
* ``-pVALUE`` (attached) is committed for the MySQL family, whose password takes
  that form;
* after a secret-named setting of a tool that sets NAME VALUE (``aws configure
  set``, ``dvc remote modify``, ``git config``, ``npm config set``…), the value
  is committed;
* other letters are committed only for the programs known to take a password
  with them (``redis-cli -a``, ``curl -u USER:PASSWORD``), and so are a few long
  options whose names do not say so (``curl --user``).

A string holding a shell command (``sh -c '…'``, or any argument with spaces) is
split like a shell would and its words redacted the same way, so
``bash -c "mysql -psecret"`` and ``ssh host 'PGPASSWORD=x psql'`` are caught.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePath
from typing import TYPE_CHECKING

from mltrail.capture.run.commitment import MARKER_PATTERN
from mltrail.capture.run.params import split_command
from mltrail.capture.run.redact import (
    Redacted,
    _clean_string,
    _is_marker,
    committing_with,
    is_secret_name,
    redaction_marker,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mltrail.capture.run.commitment import Committer

__all__ = ["redact_argv"]

_ASSIGNMENT = re.compile(
    r"(?P<prefix>--|-|\+\+|\+|~)?(?P<name>[A-Za-z_][A-Za-z0-9_.\-/@]*)=(?P<value>.*)",
    re.DOTALL,
)
_OPTION = re.compile(r"(?:--|-(?=[A-Za-z][A-Za-z0-9]))(?P<name>[A-Za-z][\w.\-]*)")
_SHORT = re.compile(r"-(?P<letter>[A-Za-z])(?P<attached>.*)", re.DOTALL)
_MYSQL = frozenset(
    {
        "mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlshow", "mysqlcheck",
        "mysqlpump", "mysqlsh", "mariadb", "mariadb-dump", "mariadb-admin",
        "mariadb-import", "mariadb-check",
    }
)  # fmt: skip
_MONGO = frozenset(
    {"mongo", "mongosh", "mongodump", "mongorestore", "mongoexport", "mongoimport"}
)
_SECRET_LETTERS: dict[str, frozenset[str]] = {
    **dict.fromkeys(_MYSQL | _MONGO | {"sshpass"}, frozenset("p")),
    "redis-cli": frozenset("a"),
    # HTTP clients: -u/-U USER:PASSWORD, the server's and the proxy's login
    "curl": frozenset("uU"),
}
# Long options whose value carries a password for one program, though their names
# do not say so (``curl --user admin:pw``).
_SECRET_OPTIONS: dict[str, frozenset[str]] = {
    "curl": frozenset({"user", "proxy-user"}),
    "wget": frozenset({"user", "http-user", "ftp-user", "proxy-user"}),
}
# Tools that set a named setting from two plain arguments, NAME VALUE, in the
# subcommands named (``aws configure set aws_secret_access_key V``, ``dvc remote
# modify --local store password V``, ``git config http.proxyPassword V``): the
# value after a secret name is committed.
_SETTING_TOOLS: dict[str, frozenset[str]] = {
    "aws": frozenset({"configure"}),
    "dvc": frozenset({"remote", "config"}),
    "git": frozenset({"config"}),
    "rclone": frozenset({"config"}),
    **dict.fromkeys(
        ("npm", "yarn", "pnpm", "pip", "pip3", "conda", "mamba", "gcloud", "poetry"),
        frozenset({"config"}),
    ),
}
_SETTING_NAME = re.compile(r"[\w.:/@-]+")
_LOGIN_TOOLS = frozenset({"docker", "podman", "nerdctl", "helm", "buildah", "skopeo"})
_P_NOT_SECRET = frozenset(
    {
        "mkdir", "cp", "mv", "install", "ln", "rsync", "ssh", "scp", "sftp",
        "psql", "pg_dump", "pg_dumpall", "pg_restore", "pg_isready", "createdb",
        "dropdb", "ls", "ps", "grep", "egrep", "fgrep", "sed", "sort", "patch",
        "git", "tar", "unzip", "zip", "pip", "pip3", "uv", "nc", "netcat", "ncat",
        "kubectl", "du", "df", "cat", "head", "tail", "diff", "xargs", "nproc",
        "perf", "strace", "lsof", "top", "htop", "pgrep", "pkill", "taskset",
        "gunzip", "gzip", "nvidia-smi",
    }
)  # fmt: skip
_PREFIXES = frozenset({"env", "sudo", "time", "nohup", "exec", "nice", "command"})
_OPERATORS = frozenset({";", "&&", "||", "|", "&", "|&", "(", ")", ";;"})
_MARKERS = re.compile(MARKER_PATTERN)
_MAX_DEPTH = 3
_COMMITTED = "MLTRAIL_COMMITTED_VALUE"  # a marker's stand-in while a string is split
_MIN_INLINE = 4  # a shorter secret is not replaced inside a shell string: all of it is


def _program(argv: Sequence[str]) -> tuple[str, frozenset[str]]:
    """The name of the program whose options ``argv`` holds, and its words.

    Prefixes (``env A=1``, ``sudo``, ``time``) are skipped; for Python and launchers
    the program is the script or module (``python train.py`` -> ``train.py``).
    """
    i = 0
    while i < len(argv) and (
        PurePath(argv[i]).name in _PREFIXES
        or _ASSIGNMENT.fullmatch(argv[i])
        or (i and argv[i].startswith("-"))
    ):
        i += 1
    rest = list(argv[i:])
    if not rest:
        return "", frozenset()
    program, _ = split_command(rest)
    return PurePath(program[-1]).name, frozenset(rest)


def _letter_is_secret(program: str, words: frozenset[str], letter: str) -> bool:
    """Whether ``-<letter> VALUE`` carries a secret for ``program`` (module doc)."""
    if letter in _SECRET_LETTERS.get(program, frozenset()):
        return True
    if letter != "p":
        return False
    if program in _LOGIN_TOOLS:
        return "login" in words
    return program not in _P_NOT_SECRET


def _attached_is_secret(program: str, letter: str) -> bool:
    return letter in _SECRET_LETTERS.get(program, frozenset()) and (
        program in _MYSQL or letter != "p"
    )


class _Reader:
    """State of one pass over a command: secrets found, options committed."""

    def __init__(self, depth: int) -> None:
        self.found: list[str] = []
        self.options: list[str] = []
        self.depth = depth

    def commit(self, value: str, option: str | None) -> str:
        if _is_marker(value):
            return value
        self.found.append(value)
        if option:
            self.options.append(option)
        return redaction_marker(value)

    def element(self, arg: str, program: str) -> str:
        if self.depth < _MAX_DEPTH and any(c.isspace() for c in arg):
            shell = self._shell_string(arg)
            if shell is not None:
                return shell
        m = _ASSIGNMENT.fullmatch(arg)
        if m is None:
            return self._free(arg, program)
        keep, value = arg[: m.start("value")], m["value"]
        if not value or _is_marker(value):
            return arg
        single = m["prefix"] == "-" and len(m["name"]) == 1
        own = m["prefix"] == "--" and m["name"] in _SECRET_OPTIONS.get(
            program, frozenset()
        )
        if not single and (is_secret_name(m["name"]) or own):
            return keep + self.commit(value, m["name"])
        return keep + self._free(value, program)

    def _free(self, text: str, program: str) -> str:
        cleaned = _clean_string(text, self.found)
        if cleaned is None:
            return redaction_marker(text)
        short = _SHORT.fullmatch(cleaned)
        if (
            short
            and short["attached"]
            and _attached_is_secret(program, short["letter"])
        ):
            letter = short["letter"]
            return f"-{letter}" + self.commit(short["attached"], letter)
        return cleaned

    def _shell_string(self, text: str) -> str | None:
        """``text`` with the secrets of the shell command it holds as markers, or
        None when it holds no secret that way."""
        # a marker already there is one word (``-u <redacted …>`` stays as it is)
        words = _shell_words(_MARKERS.sub(_COMMITTED, text))
        if len(words) < 2:
            return None
        inner = _Reader(self.depth + 1)
        redacted = [inner.command(part) for part in _commands(words)]
        inner.found = [s for s in inner.found if _COMMITTED not in s]
        if not inner.found:
            return None
        self.found += inner.found
        self.options += inner.options
        if any(len(s) < _MIN_INLINE for s in inner.found):
            self.found.append(text)  # too short to replace inside: commit it all
            return redaction_marker(text)
        ordered = sorted(set(inner.found), key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(s) for s in ordered))
        out = pattern.sub(lambda m: redaction_marker(m[0]), text)
        if pattern.search(_MARKERS.sub("", out)):  # quoted differently in the string
            return shlex.join(w for part in redacted for w in part)
        return out

    def command(self, argv: Sequence[str]) -> list[str]:
        program, words = _program(argv)
        settings = bool(_SETTING_TOOLS.get(program, frozenset()) & words)
        out: list[str] = []
        value_of: str | None = None
        for arg in argv:
            if value_of is not None and not arg.startswith("--"):
                out.append(self.commit(arg, value_of))
                value_of = None
                continue
            value_of = _secret_option(arg, program, words)
            if value_of is None and settings and _secret_setting(arg):
                value_of = arg
            out.append(self.element(arg, program))
        return out


def _secret_option(arg: str, program: str, words: frozenset[str]) -> str | None:
    """The option name, when ``arg`` is an option whose next argument is a secret."""
    m = _OPTION.fullmatch(arg)
    if m is not None and (
        is_secret_name(m["name"])
        or m["name"] in _SECRET_OPTIONS.get(program, frozenset())
    ):
        return m["name"]
    short = _SHORT.fullmatch(arg)
    if short and not short["attached"] and _letter_is_secret(program, words, arg[1]):
        return arg[1]
    return None


def _secret_setting(arg: str) -> bool:
    """Whether ``arg`` is the secret-named setting of a setting tool's NAME VALUE
    (``aws_secret_access_key``, ``http.proxyPassword``, ``//host/:_authToken``)."""
    return (
        not arg.startswith("-")
        and _SETTING_NAME.fullmatch(arg) is not None
        and is_secret_name(arg)
    )


def _shell_words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: not a shell command after all
        return text.split()


def _commands(words: list[str]) -> list[list[str]]:
    """Shell words split into simple commands at ``;``, ``&&``, ``|``…"""
    commands: list[list[str]] = [[]]
    for word in words:
        if word in _OPERATORS:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


def redact_argv(argv: Sequence[str], *, committer: Committer | None = None) -> Redacted:
    """A command line (value: ``list[str]``) with secret arguments as markers.

    Handled: ``--api-key=X`` and ``-api-key=X``; ``--api-key X`` (the next element,
    unless it starts with ``--``); ``NAME=X`` env-assignment prefixes and Hydra
    overrides (``password=X``, ``+db.password=X``, ``++a.token=X``); ``-p X`` and
    other single letters as the module docstring decides; shell command strings;
    any element or option value that is a URL with credentials, a connection
    string or looks like a secret. Option names are kept:
    ``--api-key=<redacted hmac-sha256:… salt:… key:…>``.
    """
    reader = _Reader(0)
    with committing_with(committer):
        out = reader.command(list(argv))
    found = tuple(dict.fromkeys(s for s in reader.found if s))
    return Redacted(out, found, tuple(dict.fromkeys(reader.options)))
