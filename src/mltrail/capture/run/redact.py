"""Secrets never reach the ledger in clear: find them and replace them by commitments.

What the ledger holds is permanent, so a leaked secret could never be removed. Every
collector passes what it captured through this module first. A secret is found by
its *name* (:func:`is_secret_name`: ``HF_TOKEN``, ``--db-password``, ``apiKey``,
``PGPASSWORD``) or by its *shape* (:func:`looks_like_secret`: ``ghp_…``, ``AKIA…``,
JWTs, PEM private keys, ``scheme://user:pass@host``, ``AccountKey=…`` in a
connection string). It is replaced by a keyed commitment
(:mod:`mltrail.capture.run.commitment`) that the holder of the commitment key can check
later against a candidate value, and nobody else can::

    >>> from mltrail.capture.run.commitment import CommitmentKey, Committer
    >>> key = CommitmentKey(bytes(32))
    >>> with committing_with(Committer(key)):
    ...     r = redact_tree({"lr": 0.1, "wandb_api_key": "0123456789abcdef"})
    >>> r.value["lr"], sorted(r.value["wandb_api_key"]), r.secrets
    (0.1, ['key', 'redacted', 'salt'], ('0123456789abcdef',))
    >>> check_commitment("0123456789abcdef", r.value["wandb_api_key"], key)
    True

Where a value must stay a string (argv elements, URLs, text) the commitment is
written as a marker ``<redacted hmac-sha256:<hex> salt:<hex> key:<id>>``. The clear
secrets found are returned in :attr:`Redacted.secrets` so that the caller can mask
the same strings out of text it stores (``mltrail.capture.run.mask``); they must never
be stored themselves. Command lines are in :mod:`mltrail.capture.run.argv_secrets`.

When in doubt this module redacts: a readable hyperparameter lost to over-redaction
is a nuisance, a credential written to the ledger is permanent.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_plus

from mltrail.capture.run.blob import Blob
from mltrail.capture.run.commitment import (
    MARKER_PATTERN,
    Committer,
    check_commitment,
    check_marker,
    ephemeral_committer,
    is_commitment,
)
from mltrail.capture.run.secret_names import SECRET_QUERY_NAMES, is_secret_name

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "Redacted",
    "check_commitment",
    "check_marker",
    "commit_secret",
    "committing_with",
    "connection_string_secrets",
    "credential_matches",
    "is_secret_name",
    "looks_like_secret",
    "named_values",
    "redact_env",
    "redact_tree",
    "redact_url",
    "redaction_marker",
]

# --- values -----------------------------------------------------------------------

_B = r"(?<![A-Za-z0-9_-])"  # start boundary: not inside a longer identifier
_E = r"(?![A-Za-z0-9_-])"  # end boundary
_CREDENTIAL_SHAPES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        _B + r"(?:AKIA|ASIA)[A-Z0-9]{16}" + _E,  # AWS access key id
        _B + r"gh[pousr]_[A-Za-z0-9]{30,}" + _E,  # GitHub tokens
        _B + r"github_pat_[A-Za-z0-9_]{22,}" + _E,  # GitHub fine-grained PAT
        _B + r"glpat-[A-Za-z0-9_-]{20,}" + _E,  # GitLab PAT
        _B + r"xox[abprs]-[A-Za-z0-9-]{10,}" + _E,  # Slack
        _B + r"AIza[A-Za-z0-9_-]{35}" + _E,  # Google API key
        _B + r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}" + _E,  # Stripe
        _B + r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}" + _E,  # JWT
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",  # PEM / PGP
        # URLs whose path is the credential: webhooks, bot tokens
        r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,}",
        r"https?://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/"
        r"[A-Za-z0-9_-]{20,}",
        r"https?://[A-Za-z0-9-]+\.webhook\.office\.com/webhookb2/[^\s\"'<>]{20,}",
        r"(?:(?<=/bot)|(?<![A-Za-z0-9_-]))\d{8,10}:[A-Za-z0-9_-]{35}" + _E,  # Telegram
    )
)
# Shapes that need a second look to keep false positives down.
_OPENAI = re.compile(_B + r"sk-([A-Za-z0-9_-]{20,})" + _E)  # incl. sk-proj-
_HUGGINGFACE = re.compile(_B + r"hf_([A-Za-z0-9]{30,})" + _E)
_BEARER = re.compile(r"(?i)(?<![A-Za-z])bearer\s+([A-Za-z0-9._~+/-]{16,}=*)")
_BASIC = re.compile(r"(?i)(?<![A-Za-z])basic\s+([A-Za-z0-9+/]{4,}={0,2})(?![\w+/=])")
# The lookbehind and the length bound keep a long run of words or URLs from being
# rescanned from every position (quadratic time); longer passwords in a whole-string
# URL are still caught by redact_url.
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^:/?#@\s]{0,256}:([^@\s]{1,256})@"
)
_PORT_THEN_PATH = re.compile(r"\d{1,5}/")
# ``https://<token>@github.com/o/r.git``: a token as the user name (see _token_user)
_URL_TOKEN_USER = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://([A-Za-z0-9_-]{20,256})@"
)
# ``Authorization: token X``, ``Proxy-Authorization: Basic X``: any scheme word.
_AUTH_HEADER = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
    r"(?:[A-Za-z][A-Za-z0-9_-]{0,15}\s+)?([^\s\"',;]{8,256})"
)
# A value assigned to a secret name in free text: ``DB_PASS=…``, ``X-Api-Key: …``,
# also by index in code (``os.environ["HF_TOKEN"] = …``).
_NAMED = re.compile(
    r"(?<![A-Za-z0-9_.-])([A-Za-z_][A-Za-z0-9_.-]{0,63})[\"']?\]?\s*(?:=|:|:=|=>)\s*"
    r"[\"']?([^\s\"',;]{8,256})"
)
# A whole quoted value under a secret name as a ``repr`` or code writes it: a
# keyword argument or an assignment (``password='…'``, ``password = "…"``) or a
# dict's item (``'password': '…'``), spaces and commas inside the quotes kept.
_QUOTED = re.compile(
    r"(?<![A-Za-z0-9_.-])(['\"])?([A-Za-z_][A-Za-z0-9_.-]{0,63})(?(1)\1\s*:|\s*=)\s*"
    r"(['\"])((?:(?!\3)[^\\\n]|\\.){8,256})\3"
)
# ``key:<id>``, the end of a commitment marker split into words (``sh -c`` strings)
_MARKER_TAIL = re.compile(r"[0-9a-f]{16}>?")
# Two or more brackets, or one leading the value: a call or an index, not a password.
_CODE = re.compile(r"^[()\[\]{}]|[()\[\]{}].*[()\[\]{}]")


def _mixed_case(text: str) -> bool:
    return any(c.isupper() for c in text) and any(c.islower() for c in text)


def _random_looking(text: str) -> bool:
    return _mixed_case(text) and any(c.isdigit() for c in text)


def _basic_credentials(b64: str) -> bool:
    if len(b64) % 4:
        return False
    try:
        return b":" in base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return False


def credential_matches(value: str) -> list[str]:
    """Every substring of ``value`` that has the shape of a known credential."""
    found = [m.group(0) for p in _CREDENTIAL_SHAPES for m in p.finditer(value)]
    found += [m.group(0) for m in _OPENAI.finditer(value) if _random_looking(m[1])]
    found += [m.group(0) for m in _HUGGINGFACE.finditer(value) if _mixed_case(m[1])]
    found += [m[1] for m in _BEARER.finditer(value) if _bearer_token(m[1])]
    found += [m[1] for m in _BASIC.finditer(value) if _basic_credentials(m[1])]
    found += [
        m[1]
        for m in _URL_PASSWORD.finditer(value)
        if not _PORT_THEN_PATH.match(m[1]) and not _is_marker_part(m[1])
    ]
    found += [m[1] for m in _URL_TOKEN_USER.finditer(value) if _token_user(m[1])]
    return found


def _mixed(value: str) -> bool:
    kinds = (str.islower, str.isupper, str.isdigit)
    return sum(any(test(c) for c in value) for test in kinds) >= 2 and any(
        c.isdigit() for c in value
    )


def named_values(text: str) -> list[str]:
    """Values assigned to a secret name in free text (``DB_PASS=…``, ``password:
    …``, ``X-Api-Key: …``), quoted or not, when they look like a credential:
    letters and digits mixed (so ``key: train_loss`` is left alone) or a whole
    quoted value as a ``repr`` or code writes it (``password='…'``, ``password =
    '…'``, ``'password': '…'``; not under a bare ``key``, and not one or two
    characters repeated), and not a fragment of code (``password:
    ")[1].strip()``); and the credential of an
    ``Authorization`` header, whatever its scheme (``Authorization: token …``).
    Commitment markers already in ``text`` are skipped."""
    text = _MARKER.sub(" ", text) if "<redacted " in text else text
    found = [
        m[2]
        for m in _NAMED.finditer(text)
        if is_secret_name(m[1])
        and _mixed(m[2])
        and not _CODE.search(m[2])
        and not m[2].startswith("[MASKED:")
        and not (m[1] == "key" and _MARKER_TAIL.fullmatch(m[2]))
    ]
    found += [
        m[4]
        for m in _QUOTED.finditer(text)
        if is_secret_name(m[2])
        and m[2] != "key"  # MLflow's Param(key='lr'), a sort key: names, mostly
        and len(set(m[4])) > 2  # not '********'
        and not _CODE.search(m[4])
        and not m[4].startswith("[MASKED:")
    ]
    found += [
        m[1]
        for m in _AUTH_HEADER.finditer(text)
        if _bearer_token(m[1]) and not m[1].startswith("[MASKED:")
    ]
    return found


def _bearer_token(token: str) -> bool:
    return any(c.isdigit() for c in token) or _mixed_case(token)


def looks_like_secret(value: str) -> bool:
    """Whether ``value`` holds a known credential shape anywhere in it.

    Known shapes: AWS access key ids, GitHub/GitLab/Slack/OpenAI/Hugging Face/Google/
    Stripe tokens, JWTs, PEM private keys, ``Bearer``/``Basic`` authorization values and
    URLs with a password or a token as user name. Only shapes with a recognisable
    prefix are flagged, so hex digests, git commits, UUIDs, paths and numbers are not.
    """
    return bool(credential_matches(value))


# --- commitments ------------------------------------------------------------------

_CURRENT: ContextVar[Committer | None] = ContextVar("mltrail_committer", default=None)
_MARKER = re.compile(MARKER_PATTERN)


def _committer() -> Committer:
    return _CURRENT.get() or ephemeral_committer()


@contextmanager
def committing_with(committer: Committer | None) -> Iterator[None]:
    """Make the commitments of this block (in this thread) under ``committer``'s key.

    Without one, commitments use :func:`~mltrail.capture.run.commitment.ephemeral_committer`:
    nobody can ever check them, and nobody can guess them either.
    """
    if committer is None:
        yield
        return
    token = _CURRENT.set(committer)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def commit_secret(value: str, *, salt: bytes | None = None) -> dict[str, str]:
    """A keyed commitment to ``value``: ``{"redacted", "salt", "key"}``.

    ``redacted`` is ``hmac-sha256:<hex>`` under the commitment key in force (see
    :func:`committing_with`); the salt is 16 random bytes unless given. Undecodable
    argv bytes (lone surrogates from ``surrogateescape``) are committed as the
    original bytes.
    """
    return _committer().commit(value, salt=salt)


def redaction_marker(value: str, *, salt: bytes | None = None) -> str:
    """A commitment to ``value`` as one string: ``<redacted hmac-sha256:… salt:… key:…>``."""
    return _committer().marker(value, salt=salt)


def _is_marker(text: str) -> bool:
    return _MARKER.fullmatch(text) is not None


def _is_marker_part(text: str) -> bool:
    return text.startswith("<redacted ")


def _is_commitment(obj: object) -> bool:
    return is_commitment(obj)


# --- URLs -------------------------------------------------------------------------

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://\S+")
_TOKEN_USER = re.compile(r"[A-Za-z0-9_-]{20,}")
_URL_USERINFO = re.compile(r"([^:/?#@\s]*):(\S+)@(?=[^@]*$)")


def redact_url(url: str, *, committer: Committer | None = None) -> str:
    """``url`` with its password and secret-named query/fragment values as markers.

    ``https://u:p@host/x?token=t&page=2`` keeps ``u``, the host, the path and
    ``page=2``. A password holding an unencoded ``@``, ``/`` or ``#`` is still caught
    whole (everything up to the last ``@``). Anything not a URL is returned as is.
    """
    with committing_with(committer):
        return _redact_url(url, [])


def _redact_url(url: str, found: list[str]) -> str:
    head = re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url)
    if head is None:
        return url
    rest = _redact_userinfo(url[head.end() :], found)
    path, hash_, fragment = rest.partition("#")
    path, qmark, query = path.partition("?")
    query = _redact_params(query, found) if qmark else ""
    fragment = _redact_params(fragment, found) if hash_ else ""
    return url[: head.end()] + path + qmark + query + hash_ + fragment


def _redact_userinfo(rest: str, found: list[str]) -> str:
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    user_info, at, _ = authority.rpartition("@")
    if at and ":" in user_info:  # the RFC 3986 reading
        user, _, password = user_info.partition(":")
        tail = rest[len(user_info) :]
    elif at and _token_user(user_info):  # https://<token>@github.com/o/r.git
        found.append(user_info)
        return redaction_marker(user_info) + rest[len(user_info) :]
    else:  # a password with unencoded / ? #: up to the last @
        m = _URL_USERINFO.match(rest)
        if m is None or _PORT_THEN_PATH.match(m[2]):
            return rest
        user, password, tail = m[1], m[2], rest[m.end() - 1 :]
    if not password or _is_marker_part(password):
        return rest
    found += [password, unquote(password)]  # userinfo: "+" is a plain "+"
    found.append(_basic_auth(unquote(user), unquote(password)))
    return f"{user}:{redaction_marker(unquote(password))}{tail}"


def _token_user(user: str) -> bool:
    """Whether a URL's user name, given without a password, is a token: 20 or more
    token characters with letters and digits (``https://<token>@host``, as GitHub
    and others accept); a plain name (``git``, ``alice``) is not."""
    return (
        _TOKEN_USER.fullmatch(user) is not None
        and any(c.isdigit() for c in user)
        and any(c.isalpha() for c in user)
        and not _is_marker_part(user)
    )


def _redact_params(params: str, found: list[str]) -> str:
    return "&".join(_redact_param(part, found) for part in params.split("&"))


def _redact_param(part: str, found: list[str]) -> str:
    name, eq, value = part.partition("=")
    plain = unquote_plus(name)
    secret = is_secret_name(plain) or plain.lower() in SECRET_QUERY_NAMES
    if not (eq and value and secret) or _is_marker(value):
        return part
    found += [value, unquote_plus(value)]
    return f"{name}={redaction_marker(unquote_plus(value))}"


def _basic_auth(user: str, password: str) -> str:
    """``user:password`` as an HTTP Basic ``Authorization`` value carries it."""
    raw = f"{user}:{password}".encode("utf-8", "surrogateescape")
    return base64.b64encode(raw).decode("ascii")


# --- connection strings -----------------------------------------------------------

# ``AccountName=a;AccountKey=k;EndpointSuffix=…`` (Azure), ``Server=s;Password=p;``
# (ADO.NET, ODBC): ``;``-separated ``name=value`` pairs, a secret-named value inside.
_PAIR = re.compile(r"(?:(?<=;)|^)\s*([A-Za-z][A-Za-z0-9 _.-]{0,63}?)\s*=([^;]*)")
_CONNECTION_SECRET_NAMES = frozenset(
    {"pwd", "password", "accountkey", "sharedaccesskey", "sharedaccesssignature"}
)


def _secret_pair(name: str) -> bool:
    plain = name.replace(" ", "").lower()
    return plain in _CONNECTION_SECRET_NAMES or is_secret_name(name)


def connection_string_secrets(text: str) -> list[str]:
    """The secret values in a ``name=value;name=value`` connection string."""
    if ";" not in text or "=" not in text:
        return []
    return [m[2] for m in _PAIR.finditer(text) if m[2].strip() and _secret_pair(m[1])]


def _redact_connection_string(text: str, found: list[str]) -> str:
    secrets = [s for s in connection_string_secrets(text) if not _is_marker(s)]
    if not secrets:
        return text
    found += secrets
    return _PAIR.sub(_commit_pair, text)


def _commit_pair(m: re.Match[str]) -> str:
    value = m[2]
    if not value.strip() or not _secret_pair(m[1]) or _is_marker(value):
        return m[0]
    return m[0][: m.start(2) - m.start(0)] + redaction_marker(value)


# --- trees and env -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redacted:
    """A redacted copy of some input and the clear secrets that were taken out.

    ``secrets`` exists so callers can mask the same strings out of text
    (``mltrail.capture.run.mask``); never store it (it is left out of ``repr``).
    """

    value: Any
    secrets: tuple[str, ...] = field(default=(), repr=False)
    options: tuple[str, ...] = ()
    """Command lines only: the options whose values were committed, as
    ``parse_argv`` names them (``api-key``, ``p``)."""


def _clean_string(value: str, found: list[str]) -> str | None:
    """``value`` with its secrets redacted, or None when it must be committed whole.

    A JSON object or array in a string is redacted as a tree and written back; the
    credentials of every URL in it (not only of a string that is one URL), the
    secret parts of a connection string and the values assigned to secret names
    in free text (``DB_PASS=…``, ``Authorization: token …``) become markers in
    place; any other credential shape commits the whole string.
    """
    if _is_marker(value):
        return value
    tree = _redact_json(value, found)
    if tree is not None:  # every string inside was cleaned by the tree walk
        return tree
    text = _urls_in_text(value, found) if "://" in value else value
    text = _redact_connection_string(text, found)
    text = _redact_named(text, found)
    matches = credential_matches(text)
    if matches:
        found += [value, *matches]
        return None
    return text


def _redact_json(value: str, found: list[str]) -> str | None:
    """``value`` cleaned as the JSON object or array it holds
    (``--deepspeed '{"hub_token": …}'``): rewritten with its secrets committed,
    or as it was when it holds none; None when it is not JSON."""
    if not value.lstrip().startswith(("{", "[")):
        return None
    try:
        tree = json.loads(value)
    except ValueError:
        return None
    if not isinstance(tree, dict | list):
        return None
    inner: list[str] = []
    redacted = _walk(tree, False, inner)
    if not inner:
        return value
    found += inner
    return json.dumps(redacted, ensure_ascii=False)


def _urls_in_text(text: str, found: list[str]) -> str:
    """``text`` with the credentials of every URL in it as markers; markers
    already there are kept as they are (a URL is not read across one)."""
    parts = _MARKER.split(text) if "<redacted " in text else [text]
    markers = _MARKER.findall(text) if len(parts) > 1 else []
    out = [_URL_IN_TEXT.sub(lambda m: _redact_url(m[0], found), p) for p in parts]
    return "".join(p + m for p, m in zip(out, [*markers, ""], strict=True))


def _redact_named(text: str, found: list[str]) -> str:
    values = [v for v in named_values(text) if not _is_marker_part(v)]
    for value in sorted(set(values), key=len, reverse=True):
        found.append(value)
        text = text.replace(value, redaction_marker(value))
    return text


def _commit_leaf(value: object, found: list[str]) -> object:
    """A scalar under a secret name: committed unless bool, None, empty or a marker."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and (not value or _is_marker(value)):
        return value
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "backslashreplace")
    else:
        text = str(value)
    found.append(text)
    return commit_secret(text)


def _walk(obj: Any, secret: bool, found: list[str]) -> Any:
    if isinstance(obj, Blob) or _is_commitment(obj):
        return obj
    if isinstance(obj, Mapping | list | tuple | set | frozenset):
        return _walk_container(obj, secret, found)
    if secret:
        return _commit_leaf(obj, found)
    if isinstance(obj, str):
        cleaned = _clean_string(obj, found)
        return commit_secret(obj) if cleaned is None else cleaned
    return obj


def _walk_container(obj: Any, secret: bool, found: list[str]) -> Any:
    if isinstance(obj, Mapping):
        return {
            _walk_key(k, found): _walk(v, secret or _secret_key(k), found)
            for k, v in obj.items()
        }
    # sets become lists too: the commitments put in them are unhashable
    items = [_walk(v, secret, found) for v in obj]
    return tuple(items) if isinstance(obj, tuple) else items


def _secret_key(key: object) -> bool:
    return isinstance(key, str | int) and is_secret_name(str(key))


def _walk_key(key: Any, found: list[str]) -> Any:
    if not isinstance(key, str):
        return key
    cleaned = _clean_string(key, found)
    return redaction_marker(key) if cleaned is None else cleaned


def _unique(found: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s for s in found if s))


def redact_tree(obj: Any, *, committer: Committer | None = None) -> Redacted:
    """A copy of ``obj`` (dicts, lists, scalars) with every secret committed.

    A value under a secret-named key (and every scalar nested under one) becomes
    :func:`commit_secret` of ``str(value)``; bools, None and empty strings stay. Any
    other string is checked: URLs lose their password and secret query values
    (:func:`redact_url`), credential-shaped strings are committed whole; a dict key
    with a credential shape becomes a marker. ``Blob`` objects and existing
    commitments are left alone, so redacting twice changes nothing. Tuples stay
    tuples; sets become lists. The input is never mutated. Commitments are made
    under ``committer`` (default: the one in force, see :func:`committing_with`).
    """
    found: list[str] = []
    with committing_with(committer):
        value = _walk(obj, False, found)
    return Redacted(value, _unique(found))


def redact_env(
    env: Mapping[str, str], *, committer: Committer | None = None
) -> Redacted:
    """Environment variables (value: ``dict``) with secrets replaced by commitments.

    Secret-named variables and credential-shaped values are committed; URLs with a
    password keep everything but the password (like :func:`redact_tree`).
    """
    return redact_tree(dict(env), committer=committer)
