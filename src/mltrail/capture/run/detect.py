"""Credential-shaped strings in stored text, found by Yelp's ``detect-secrets``.

The mask set (``mltrail.capture.run.mask``) holds the secrets mltrail was *told* about
(by name: env, args, configs, URLs). Text that is stored (log heads and tails,
diffs, scripts, config files) may hold others: a token pasted into a script, a key
printed by a library. :func:`detected_masks` finds those with the plugins of
``detect-secrets`` (AWS, Azure storage, GitHub, GitLab, Slack, Stripe, OpenAI,
npm, PyPI, SendGrid, Twilio, Discord, Telegram, Mailchimp, IBM, Artifactory,
Cloudant, SoftLayer, Square keys and tokens; JWTs; private keys; Basic auth in
URLs; ``password = "…"`` style assignments; quoted high-entropy base64 strings),
plus mltrail's own shapes (``hf_…``, ``sk-…``, ``Bearer …``; see
:func:`mltrail.capture.run.redact.looks_like_secret`), and returns them as a mask set
named ``detected:<type>``.

False positives, by policy:

* The hex high-entropy plugin is off: hex strings in ML logs are digests (SHA-256,
  git commits, dataset ids) far more often than secrets; hex secrets are caught by
  name instead. The public-IP plugin is off: an address is not a secret.
* A base64 string that decodes to exactly 64 bytes (an Ed25519 signature, as in
  mltrail's own output), a UUID, and a sequential or templated string
  (``${TOKEN}``) are not secrets; nor are values on the allow-list
  (``mltrail.capture.run.allowlist``).
* Values shorter than ``MIN_MASK_LENGTH`` are not masked (see ``capture.mask``).

Only lines that could hold a secret are scanned (a run of 16 token characters, or
a secret-sounding word), so a plain training log costs little. ``detect-secrets``
is imported on first use (it costs ~0.1 s); :func:`prefetch` starts that import in
a background thread.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mltrail.capture.run.mask import MIN_MASK_LENGTH, MaskSet
from mltrail.capture.run.redact import credential_matches, named_values
from mltrail.errors import ConfigError

if TYPE_CHECKING:
    from mltrail.capture.run.allowlist import AllowList

__all__ = ["detected_masks", "find_credentials", "prefetch"]

_OFF = frozenset({"Public IP (ipv4)", "Hex High Entropy String"})
_KEYWORD = "Secret Keyword"
_ENTROPY = "Base64 High Entropy String"
_PRIVATE_KEY = "Private Key"
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_.\-])[A-Za-z0-9+/_.\-]{16,}={0,2}")
_HEXISH = re.compile(r"[0-9a-fA-F.:_\-]*")
_WORDS = re.compile(r"pass|pwd|secret|key|token|auth|cred|private|bearer|basic|@")
_ASSIGNS = re.compile(r"[=:>]")
_UPPER, _LOWER, _DIGIT = re.compile("[A-Z]"), re.compile("[a-z]"), re.compile("[0-9]")
_DIGIT_OR_UPPER = re.compile("[A-Z0-9]")
_TOKEN_TAIL = r"[A-Za-z0-9_\-.+/=]*"  # noqa: S105 - a pattern, not a password
_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I
)
_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(.{0,16384}?)"
    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
_PEM_LINE = re.compile(r"[A-Za-z0-9+/=]{6,}")
_MIN_GROUP = 8
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _plugins() -> tuple[Any, ...]:
    with _lock:
        try:
            from detect_secrets.core.plugins.util import (
                get_mapping_from_secret_type_to_class,
            )
        except ImportError as e:  # a broken install: it is a dependency
            raise ConfigError(
                f"the secret detector is missing: {e}",
                hint="pip install detect-secrets (a dependency of mltrail)",
            ) from e
        mapping = get_mapping_from_secret_type_to_class()
        return tuple(cls() for name, cls in sorted(mapping.items()) if name not in _OFF)


def prefetch() -> None:
    """Import the detector in a background thread, so that it is ready later."""
    if _plugins.cache_info().currsize:
        return
    threading.Thread(target=_quiet_load, name="mltrail-detector", daemon=True).start()


def _quiet_load() -> None:
    try:
        _plugins()
    except ConfigError:  # said again, as an error, when it is needed
        _plugins.cache_clear()


def _candidate_lines(text: str) -> tuple[list[str], list[str]]:
    """The lines of ``text`` that could hold a credential: those with a token that
    looks random (16+ token characters, mixed case or long, not a hex digest or a
    number), and those with a secret-sounding word next to an assignment (for the
    keyword plugin)."""
    tokens: dict[int, str] = {}
    for m in _TOKEN.finditer(text):
        if _random_token(m[0]):
            _add_line(tokens, text, m.start(), m.end())
    words: dict[int, str] = {}
    for m in _WORDS.finditer(text.lower()):
        _add_line(words, text, m.start(), m.end())
    assigned = [line for line in words.values() if _ASSIGNS.search(line)]
    return list(tokens.values()), assigned


def _random_token(token: str) -> bool:
    if _HEXISH.fullmatch(token) or not _DIGIT_OR_UPPER.search(token):
        return False
    upper = _UPPER.search(token) is not None
    lower = _LOWER.search(token) is not None
    digit = _DIGIT.search(token) is not None
    return (upper and (lower or digit)) or (len(token) >= 32 and lower and digit)


def _add_line(lines: dict[int, str], text: str, start: int, end: int) -> None:
    begin = text.rfind("\n", 0, start) + 1
    if begin not in lines:
        stop = text.find("\n", end)
        lines[begin] = text[begin : stop if stop >= 0 else len(text)]


def _keyword_rules(filename: str) -> Any:
    from detect_secrets.plugins.keyword import (
        QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
        REGEX_BY_FILETYPE,
    )
    from detect_secrets.util.filetype import determine_file_type

    kind = determine_file_type(filename)
    return REGEX_BY_FILETYPE.get(kind, QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)


def _plugin_hits(plugin: Any, lines: list[str], filename: str) -> list[str]:
    if plugin.secret_type == _KEYWORD:
        rules = _keyword_rules(filename)
        return [
            hit
            for line in lines
            for hit in plugin.analyze_string(line, denylist_regex_to_group=rules)
        ]
    text = "\n".join(lines)
    if _plain_regex(plugin):
        return [_secret_of(m) for p in plugin.denylist for m in p.finditer(text)]
    hits = list(plugin.analyze_string(text))
    if plugin.secret_type == _ENTROPY:
        limit = plugin.entropy_limit
        return [h for h in hits if plugin.calculate_shannon_entropy(h) > limit]
    return hits


def _plain_regex(plugin: Any) -> bool:
    """Whether ``plugin`` is a plain regex detector (``analyze_string`` not its own)."""
    from detect_secrets.plugins.base import RegexBasedDetector

    own = type(plugin).analyze_string
    return isinstance(plugin, RegexBasedDetector) and (
        own is RegexBasedDetector.analyze_string
    )


def _secret_of(m: re.Match[str]) -> str:
    """The secret in a match: its longest group, unless that is only a prefix
    (``ghp`` of a GitHub token), then the whole match."""
    groups = [g for g in m.groups() if g]
    longest = max(groups, key=len, default="")
    return longest if len(longest) >= _MIN_GROUP else m[0]


def _signature(value: str) -> bool:
    """Whether ``value`` is base64 of exactly 64 bytes (an Ed25519 signature)."""
    if len(value) != 88:
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == 64
    except (binascii.Error, ValueError):
        return False


def _benign(kind: str, value: str, allow: AllowList | None) -> bool:
    from detect_secrets.filters.heuristic import (
        is_sequential_string,
        is_templated_secret,
    )

    if len(value) < MIN_MASK_LENGTH or (allow is not None and allow.allows(value)):
        return True
    if _UUID.fullmatch(value) or value.startswith(("[MASKED:", "<redacted ")):
        return True
    if kind == _ENTROPY and _signature(value):
        return True
    return is_sequential_string(value) or is_templated_secret(value)


def find_credentials(
    text: str, *, filename: str = "", allow: AllowList | None = None
) -> list[tuple[str, str]]:
    """``(type, value)`` for every credential-shaped string found in ``text``.

    ``filename`` (its suffix) chooses the assignment rules of the keyword plugin
    (``.py``, ``.yaml``…). A private key's header brings every base64 line of its
    block; a token's match is extended to the end of the token (the JWT rule of
    ``detect-secrets`` stops after the second dot).

    Raises:
        ConfigError: ``detect-secrets`` cannot be imported.
    """
    found = dict.fromkeys(_pem_lines(text), _PRIVATE_KEY)
    tokens, assigned = _candidate_lines(text)
    if not tokens and not assigned:
        return [(kind, value) for value, kind in found.items()]
    for plugin in _plugins():
        lines = assigned if plugin.secret_type == _KEYWORD else tokens + assigned
        for hit in _plugin_hits(plugin, lines, filename):
            value = hit.strip()
            if plugin.secret_type != _PRIVATE_KEY and not _benign(
                plugin.secret_type, value, allow
            ):
                found.setdefault(value, plugin.secret_type)
    for value in credential_matches("\n".join(tokens + assigned)):
        if not _benign("", value, allow):
            found.setdefault(value, "Credential")
    for value in _named_values(assigned):
        if not _benign("", value, allow):
            found.setdefault(value, "Named Secret")
    return _extended(text, found)


def _named_values(lines: list[str]) -> list[str]:
    """Values assigned to a secret name in free text (``DB_PASS=…``, ``password:
    …``) and ``Authorization`` header credentials: see
    :func:`mltrail.capture.run.redact.named_values`."""
    return [value for line in lines for value in named_values(line)]


def _pem_lines(text: str) -> list[str]:
    """The base64 lines of every private key block (also inside a diff or JSON)."""
    out: list[str] = []
    for m in _PEM.finditer(text):
        body = m[1].replace("\\n", "\n")
        out += _PEM_LINE.findall(body)
    return out


def _extended(text: str, found: dict[str, str]) -> list[tuple[str, str]]:
    """Each value grown to the end of the token it starts in ``text``."""
    out: dict[str, str] = {}
    for value, kind in found.items():
        out.setdefault(value, kind)
        if kind in (_KEYWORD, _ENTROPY, _PRIVATE_KEY):
            continue
        for m in re.finditer(re.escape(value) + _TOKEN_TAIL, text):
            out.setdefault(m[0], kind)
    return [(kind, value) for value, kind in out.items()]


def detected_masks(
    data: bytes, *, filename: str = "", allow: AllowList | None = None
) -> MaskSet:
    """A mask set of the credentials found in ``data`` (read as UTF-8, with
    undecodable bytes kept), each named ``detected:<type>``."""
    text = data.decode("utf-8", "surrogateescape")
    found = find_credentials(text, filename=filename, allow=allow)
    return MaskSet.build((f"detected:{kind}", value) for kind, value in found)
