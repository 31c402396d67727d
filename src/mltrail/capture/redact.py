"""Secrets never reach the ledger in clear: find them and replace them by commitments.

What the ledger holds is permanent, so a leaked secret could never be removed. Every
collector passes what it captured through this module first. A secret is found by
its *name* (:func:`is_secret_name`: ``HF_TOKEN``, ``--db-password``, ``apiKey``) or
by its *shape* (:func:`looks_like_secret`: ``ghp_…``, ``AKIA…``, JWTs, PEM private
keys, ``scheme://user:pass@host``). It is replaced by a salted SHA-256 commitment
that can be checked later against a candidate value without revealing it::

    >>> c = commit_secret("hunter22")
    >>> check_commitment("hunter22", c), check_commitment("hunter23", c)
    (True, False)
    >>> r = redact_tree({"lr": 0.1, "wandb_api_key": "0123456789abcdef"})
    >>> r.value["lr"], sorted(r.value["wandb_api_key"]), r.secrets
    (0.1, ['redacted', 'salt'], ('0123456789abcdef',))

Where a value must stay a string (argv elements, URLs, text) the commitment is
written as a marker ``<redacted sha256:<hex> salt:<hex>>``. The clear secrets found
are returned in :attr:`Redacted.secrets` so that the caller can :func:`scrub_text`
the same strings out of files it stores; they must never be stored themselves.

When in doubt this module redacts: a readable hyperparameter lost to over-redaction
is a nuisance, a credential written to the ledger is permanent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, unquote_plus

from mltrail.capture.blob import Blob

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "Redacted",
    "check_commitment",
    "check_marker",
    "commit_secret",
    "is_secret_name",
    "looks_like_secret",
    "redact_argv",
    "redact_env",
    "redact_tree",
    "redact_url",
    "redaction_marker",
    "scrub_text",
]

# --- names ------------------------------------------------------------------------
#
# A name is split into lowercase words on non-alphanumerics and camelCase boundaries
# (``HF_TOKEN`` -> hf token, ``apiKey`` -> api key, ``--db-password`` -> db password);
# digit-only words are dropped (``api_key_2`` -> api key). The name is secret when:
#
# 1. any word is in _SECRET_WORDS (wherever it sits: ``password_file`` is redacted
#    too; safe beats readable), or
# 2. two adjacent words form one of _SECRET_PAIRS (``private_key_path``,
#    ``access_token_url``, ``session_id``), or
# 3. the last word is in _SECRET_LAST_WORDS, unless the word before it says the
#    name is ML vocabulary: a tokenizer setting before ``token`` (``bos_token``,
#    ``pad_token``) or a data-field word before ``key`` (``label_key``, ``rng_key``).
#
# ``token`` counts only as the last word, so ``token_type_ids``, ``bos_token_id``,
# ``token_count``, ``max_tokens`` and ``tokenizer`` stay readable; ``auth`` anywhere
# still catches ``use_auth_token``. ``session`` alone is not secret (the env var
# ``DBUS_SESSION_BUS_ADDRESS``), only with ``id``/``key``/``token``. ``signature`` is
# secret only as the last word (``X-Amz-Signature``, not ``signature_version``).
# The exact name ``PWD`` is the shell's working directory, not a password.

_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "passphrase", "secret", "secrets",
        "credential", "credentials", "creds", "auth", "authorization", "bearer",
        "cookie", "cookies", "dsn", "apikey", "apikeys", "apitoken", "accesskey",
        "accesstoken", "authtoken", "privatekey", "secretkey", "sessionid",
        "sessiontoken",
    }
)  # fmt: skip
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"), ("api", "keys"), ("api", "token"), ("private", "key"),
        ("access", "key"), ("access", "token"), ("session", "id"),
        ("session", "key"), ("session", "token"),
    }
)  # fmt: skip
_SECRET_LAST_WORDS = frozenset({"key", "token", "signature"})
_TOKENIZER_WORDS = frozenset(
    {
        "bos", "eos", "pad", "unk", "sep", "cls", "mask", "sos", "eot", "eod",
        "start", "end", "stop", "special", "image", "audio", "video", "default",
    }
)  # fmt: skip
_DATA_KEY_WORDS = frozenset(
    {
        # dataset columns and lookup keys
        "label", "text", "image", "input", "target", "sort", "group", "join",
        "primary", "partition", "dict", "cache",
        # more columns and metric names seen in ML configs
        "audio", "video", "column", "feature", "output", "prompt", "metric",
        "monitor", "index", "foreign", "hash", "lookup",
        # JAX / numpy random keys are seeds, not credentials
        "rng", "prng", "random", "seed",
    }
)  # fmt: skip
# Query parameters that carry a credential without a secret-looking name.
_SECRET_QUERY_NAMES = frozenset({"sig"})
_NOT_SECRET_NAMES = frozenset({"PWD"})
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name) if not w.isdigit()]


def is_secret_name(name: str) -> bool:
    """Whether a key, option or variable called ``name`` holds a secret.

    The rules are data: see the comment above ``_SECRET_WORDS`` in this module.
    """
    if name in _NOT_SECRET_NAMES:
        return False
    words = _words(name)
    if not words:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    if any(pair in _SECRET_PAIRS for pair in pairwise(words)):
        return True
    return words[-1] in _SECRET_LAST_WORDS and not _ml_vocabulary(words)


def _ml_vocabulary(words: list[str]) -> bool:
    if len(words) < 2:
        return False
    before, last = words[-2], words[-1]
    return (last == "token" and before in _TOKENIZER_WORDS) or (
        last == "key" and before in _DATA_KEY_WORDS
    )


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


def _credential_matches(value: str) -> list[str]:
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
    return found


def _bearer_token(token: str) -> bool:
    return any(c.isdigit() for c in token) or _mixed_case(token)


def looks_like_secret(value: str) -> bool:
    """Whether ``value`` holds a known credential shape anywhere in it.

    Known shapes: AWS access key ids, GitHub/GitLab/Slack/OpenAI/Hugging Face/Google/
    Stripe tokens, JWTs, PEM private keys, ``Bearer``/``Basic`` authorization values and
    URLs with a password. Only shapes with a recognisable prefix are flagged, so hex
    digests, git commits, UUIDs, paths and numbers are not.
    """
    return bool(_credential_matches(value))


# --- commitments ------------------------------------------------------------------

_SALT_BYTES = 16
_MARKER = re.compile(r"<redacted sha256:([0-9a-f]{64}) salt:([0-9a-f]*)>")


def commit_secret(value: str, *, salt: bytes | None = None) -> dict[str, str]:
    """A salted SHA-256 commitment to ``value``: ``{"redacted", "salt"}``.

    ``redacted`` is ``sha256:<hex of sha256(salt || utf-8 value)>``; the salt is 16
    random bytes unless given (tests pass one to get fixed output). Undecodable argv
    bytes (lone surrogates from ``surrogateescape``) are hashed as the original bytes.
    """
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    digest = hashlib.sha256(salt + _utf8(value)).hexdigest()
    return {"redacted": "sha256:" + digest, "salt": salt.hex()}


def _utf8(text: str) -> bytes:
    """UTF-8 bytes of ``text``; lone surrogates as the bytes they escape, if any."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that escapes no byte
        return text.encode("utf-8", "surrogatepass")


def check_commitment(value: str, commitment: Mapping[str, str]) -> bool:
    """Whether ``value`` is the secret behind ``commitment`` (constant-time compare).

    A malformed commitment is simply not matched.
    """
    try:
        salt = bytes.fromhex(commitment["salt"])
        expected = commitment["redacted"]
    except (KeyError, TypeError, ValueError):
        return False
    if not isinstance(expected, str):
        return False
    actual = commit_secret(value, salt=salt)["redacted"]
    return hmac.compare_digest(actual.encode(), expected.encode("utf-8", "replace"))


def redaction_marker(value: str, *, salt: bytes | None = None) -> str:
    """A commitment to ``value`` as one string: ``<redacted sha256:<hex> salt:<hex>>``."""
    c = commit_secret(value, salt=salt)
    return f"<redacted {c['redacted']} salt:{c['salt']}>"


def check_marker(value: str, marker: str) -> bool:
    """Whether ``value`` is the secret behind a :func:`redaction_marker` string."""
    m = _MARKER.fullmatch(marker)
    if m is None:
        return False
    return check_commitment(value, {"redacted": "sha256:" + m[1], "salt": m[2]})


def _is_marker(text: str) -> bool:
    return _MARKER.fullmatch(text) is not None


def _is_marker_part(text: str) -> bool:
    return text.startswith("<redacted sha256:")


def _is_commitment(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and set(obj) == {"redacted", "salt"}
        and all(isinstance(v, str) for v in obj.values())
    )


# --- URLs -------------------------------------------------------------------------

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
_URL_USERINFO = re.compile(r"([^:/?#@\s]*):(\S+)@(?=[^@]*$)")


def redact_url(url: str) -> str:
    """``url`` with its password and secret-named query/fragment values as markers.

    ``https://u:p@host/x?token=t&page=2`` keeps ``u``, the host, the path and
    ``page=2``. A password holding an unencoded ``@``, ``/`` or ``#`` is still caught
    whole (everything up to the last ``@``). Anything not a URL is returned as is.
    """
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
    else:  # a password with unencoded / ? #: up to the last @
        m = _URL_USERINFO.match(rest)
        if m is None or _PORT_THEN_PATH.match(m[2]):
            return rest
        user, password, tail = m[1], m[2], rest[m.end() - 1 :]
    if not password or _is_marker_part(password):
        return rest
    found += [password, unquote(password)]  # userinfo: "+" is a plain "+"
    return f"{user}:{redaction_marker(unquote(password))}{tail}"


def _redact_params(params: str, found: list[str]) -> str:
    return "&".join(_redact_param(part, found) for part in params.split("&"))


def _redact_param(part: str, found: list[str]) -> str:
    name, eq, value = part.partition("=")
    plain = unquote_plus(name)
    secret = is_secret_name(plain) or plain.lower() in _SECRET_QUERY_NAMES
    if not (eq and value and secret) or _is_marker(value):
        return part
    found += [value, unquote_plus(value)]
    return f"{name}={redaction_marker(unquote_plus(value))}"


# --- trees, argv, env -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Redacted:
    """A redacted copy of some input and the clear secrets that were taken out.

    ``secrets`` exists so callers can :func:`scrub_text` the same strings out of
    files; never store it (it is left out of ``repr``).
    """

    value: Any
    secrets: tuple[str, ...] = field(default=(), repr=False)


def _clean_string(value: str, found: list[str]) -> str | None:
    """``value`` with URL credentials redacted, or None when it must be committed."""
    if _is_marker(value):
        return value
    text = _redact_url(value, found) if _URL.fullmatch(value) else value
    matches = _credential_matches(text)
    if matches:
        found += [value, *matches]
        return None
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


def redact_tree(obj: Any) -> Redacted:
    """A copy of ``obj`` (dicts, lists, scalars) with every secret committed.

    A value under a secret-named key (and every scalar nested under one) becomes
    :func:`commit_secret` of ``str(value)``; bools, None and empty strings stay. Any
    other string is checked: URLs lose their password and secret query values
    (:func:`redact_url`), credential-shaped strings are committed whole; a dict key
    with a credential shape becomes a marker. ``Blob`` objects and existing
    commitments are left alone, so redacting twice changes nothing. Tuples stay
    tuples; sets become lists. The input is never mutated.
    """
    found: list[str] = []
    value = _walk(obj, False, found)
    return Redacted(value, _unique(found))


_ASSIGNMENT = re.compile(
    r"(?P<prefix>--|-|\+\+|\+|~)?(?P<name>[A-Za-z_][A-Za-z0-9_.\-/@]*)=(?P<value>.*)",
    re.DOTALL,
)
_OPTION = re.compile(r"(?:--|-(?=[A-Za-z][A-Za-z0-9]))(?P<name>[A-Za-z][\w.\-]*)")


def _named_by_secret(prefix: str | None, name: str) -> bool:
    """Single-letter options (``-p``) are ambiguous (port? patience?): never by name."""
    single_letter = prefix == "-" and len(name) == 1
    return not single_letter and is_secret_name(name)


def _redact_element(arg: str, found: list[str]) -> str:
    m = _ASSIGNMENT.fullmatch(arg)
    if m is None:
        cleaned = _clean_string(arg, found)
        return redaction_marker(arg) if cleaned is None else cleaned
    keep, value = arg[: m.start("value")], m["value"]
    if not value or _is_marker(value):
        return arg
    if _named_by_secret(m["prefix"], m["name"]):
        found.append(value)
        return keep + redaction_marker(value)
    cleaned = _clean_string(value, found)
    return keep + (redaction_marker(value) if cleaned is None else cleaned)


def _commit_arg(arg: str, found: list[str]) -> str:
    if _is_marker(arg):
        return arg
    found.append(arg)
    return redaction_marker(arg)


def redact_argv(argv: Sequence[str]) -> Redacted:
    """A command line (value: ``list[str]``) with secret arguments as markers.

    Handled: ``--api-key=X`` and ``-api-key=X``; ``--api-key X`` (the next element,
    unless it starts with ``--``); ``NAME=X`` env-assignment prefixes and Hydra
    overrides (``password=X``, ``+db.password=X``, ``++a.token=X``); any element or
    option value that is a URL with credentials or looks like a secret. Option names
    are kept: ``--api-key=<redacted sha256:… salt:…>``. Single-letter options
    (``-p X``) are not redacted by name: the letter could mean anything.
    """
    found: list[str] = []
    out: list[str] = []
    value_next = False
    for arg in argv:
        if value_next and not arg.startswith("--"):
            value_next = False
            out.append(_commit_arg(arg, found))
            continue
        m = _OPTION.fullmatch(arg)
        value_next = m is not None and is_secret_name(m["name"])
        out.append(_redact_element(arg, found))
    return Redacted(out, _unique(found))


def redact_env(env: Mapping[str, str]) -> Redacted:
    """Environment variables (value: ``dict``) with secrets replaced by commitments.

    Secret-named variables and credential-shaped values are committed; URLs with a
    password keep everything but the password (like :func:`redact_tree`).
    """
    return redact_tree(dict(env))


_MIN_SCRUB = 4
_SCRUBBED = b"<redacted>"


def scrub_text(data: bytes, secrets: Iterable[str]) -> bytes:
    """``data`` with every occurrence of each secret replaced by ``<redacted>``.

    Each secret is matched UTF-8 encoded and, when different, percent-encoded (a
    password inside a URL); longest first, in one pass, so replacements are never
    re-scanned. Secrets shorter than 4 characters are skipped: they would match
    everywhere.
    """
    variants = {
        form
        for s in secrets
        if len(s) >= _MIN_SCRUB
        for form in (_utf8(s), quote(_utf8(s), safe="").encode("ascii"))
    }
    if not variants:
        return data
    ordered = sorted(variants, key=lambda b: (-len(b), b))
    pattern = re.compile(b"|".join(re.escape(v) for v in ordered))
    return pattern.sub(_SCRUBBED, data)
