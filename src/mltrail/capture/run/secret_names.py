"""Which names hold secrets: environment variables, options, config keys, URL params.

A name is split into lowercase words on non-alphanumerics and camelCase boundaries
(``HF_TOKEN`` -> hf token, ``apiKey`` -> api key, ``--db-password`` -> db password);
digit-only words are dropped (``api_key_2`` -> api key). The name is secret when:

1. any word is in ``_SECRET_WORDS`` (wherever it sits: ``password_file`` is
   redacted too; safe beats readable), or
2. any word *contains* one of ``_SECRET_STEMS`` (``PGPASSWORD``, ``DBPASSWORD``,
   ``adminpassword``, ``clientsecret``), or ``cred`` not followed by ``it``
   (``AZURE_CREDS``, ``MYCRED``; not ``credit_score``), or
3. two adjacent words form one of ``_SECRET_PAIRS`` (``private_key_path``,
   ``access_token_url``, ``session_id``, ``connection_string``, ``api_tokens``), or
4. the last word is in ``_SECRET_LAST_WORDS`` (``key``, ``token``, ``signature``,
   ``pass``, ``pw``: ``DB_PASS``, ``--db-pass``, ``--pw``; not ``pw_conv``),
   unless the word before it says the name is ML vocabulary: a tokenizer setting
   before ``token`` (``bos_token``), a data-field word before ``key``
   (``label_key``, ``rng_key``) or a counting word before ``pass``
   (``forward_pass``, ``num_pass``).

``token`` counts only as the last word, so ``token_type_ids``, ``bos_token_id``,
``token_count``, ``max_tokens`` and ``tokenizer`` stay readable; ``auth`` anywhere
still catches ``use_auth_token``. ``session`` alone is not secret (the env var
``DBUS_SESSION_BUS_ADDRESS``), only with ``id``/``key``/``token``. ``signature`` is
secret only as the last word (``X-Amz-Signature``, not ``signature_version``).
The exact names ``PWD`` and ``OLDPWD`` are the shell's working directories.
"""

from __future__ import annotations

import re
from itertools import pairwise

__all__ = ["SECRET_QUERY_NAMES", "is_secret_name"]

_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "passphrase", "secret", "secrets",
        "credential", "credentials", "creds", "auth", "authorization", "bearer",
        "cookie", "cookies", "dsn", "apikey", "apikeys", "apitoken", "accesskey",
        "accesstoken", "authtoken", "privatekey", "secretkey", "sessionid",
        "sessiontoken",
    }
)  # fmt: skip
_SECRET_STEMS = (
    "password", "passwd", "passphrase", "secret", "credential", "apikey",
    "apitoken", "accesskey", "privatekey", "secretkey", "authtoken", "accesstoken",
)  # fmt: skip
_CRED = re.compile(r"cred(?!it)")
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"), ("api", "keys"), ("api", "token"), ("private", "key"),
        ("access", "key"), ("access", "token"), ("session", "id"),
        ("session", "key"), ("session", "token"), ("connection", "string"),
        ("connection", "str"), ("conn", "str"), ("conn", "string"),
        ("api", "tokens"), ("access", "keys"), ("access", "tokens"),
        ("private", "keys"), ("session", "tokens"), ("session", "keys"),
    }
)  # fmt: skip
_SECRET_LAST_WORDS = frozenset({"key", "token", "signature", "pass", "pw"})
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
_COUNTED_PASS_WORDS = frozenset(
    {
        "forward", "backward", "multi", "single", "two", "first", "second",
        "num", "n", "max", "min", "each", "per", "by", "one", "final", "last",
    }
)  # fmt: skip
SECRET_QUERY_NAMES = frozenset({"sig", "hmac", "jsessionid", "phpsessid", "passkey"})
"""Query parameters that carry a credential without a secret-looking name: a URL's
own signature or MAC, a session id put in the URL by Java and PHP servers, a
tracker's per-user key."""
_NOT_SECRET_NAMES = frozenset({"PWD", "OLDPWD"})
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name) if not w.isdigit()]


def is_secret_name(name: str) -> bool:
    """Whether a key, option or variable called ``name`` holds a secret.

    The rules are data: see this module's docstring.
    """
    if name in _NOT_SECRET_NAMES:
        return False
    words = _words(name)
    if not words:
        return False
    if any(w in _SECRET_WORDS or _has_stem(w) for w in words):
        return True
    if any(pair in _SECRET_PAIRS for pair in pairwise(words)):
        return True
    return words[-1] in _SECRET_LAST_WORDS and not _ml_vocabulary(words)


def _has_stem(word: str) -> bool:
    return any(stem in word for stem in _SECRET_STEMS) or bool(_CRED.search(word))


def _ml_vocabulary(words: list[str]) -> bool:
    if len(words) < 2:
        return False
    before, last = words[-2], words[-1]
    return (
        (last == "token" and before in _TOKENIZER_WORDS)
        or (last == "key" and before in _DATA_KEY_WORDS)
        or (last == "pass" and before in _COUNTED_PASS_WORDS)
    )
