"""Getting RFC 3161 timestamps for checkpoints from a TSA, and keeping them.

``mltrail checkpoint --tsa URL`` stamps the newest checkpoint; with a TSA set
(``MLTRAIL_TSA_URL``, else ``tsa_url`` in ledger.json) every run's end
checkpoint is stamped too. A TSA that cannot be reached never costs a run its
outcome: the run is already recorded, a marker says its checkpoint waits for a
stamp, and ``mltrail timestamp --pending`` stamps it later (a later stamp
proves less: only that the checkpoint existed before *that* time).

The request is an RFC 3161 ``TimeStampReq`` (SHA-256 of the checkpoint's signed
note text, a random nonce, the TSA's certificate requested) POSTed as
``application/timestamp-query``; the reply must be granted, carry the nonce and
stamp that hash before it is stored, and verify against the TSA CA when one
is set (``MLTRAIL_TSA_CA``, else ``tsa_ca``): a row once stored stays, so a
reply that fails is not kept. Its signature is checked again by ``verify``
against the CA the verifier trusts.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mltrail.core.checkpoint import parse_signed_checkpoint
from mltrail.core.evidence import RFC3161
from mltrail.core.timestamp import (
    MAX_TOKEN_SIZE,
    TimestampInfo,
    check_imprint,
    load_rfc3161_client,
    load_tsa_roots,
    timestamp_message,
    verify_timestamp,
)
from mltrail.errors import ConfigError, MltrailError, SchemaError, StoreError
from mltrail.evidence.policy import PENDING, evidence_for, pending_checkpoints

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cryptography.x509 import Certificate

    from mltrail.ledger.home import Home
    from mltrail.ledger.ledger import Ledger

__all__ = [
    "DEFAULT_TSA_TIMEOUT_S",
    "Stamp",
    "configured_tsa",
    "configured_tsa_roots",
    "request_timestamp",
    "stamp_checkpoint",
    "stamp_newest",
    "stamp_pending",
    "stamp_run_end",
]

DEFAULT_TSA_TIMEOUT_S = 10.0
_log = logging.getLogger("mltrail")


@dataclass(frozen=True)
class Stamp:
    """A checkpoint's timestamp: which checkpoint, what the TSA said, new or kept."""

    size: int
    checkpoint: str
    info: TimestampInfo
    new: bool


def configured_tsa(home: Home, env: Mapping[str, str] | None = None) -> str | None:
    """The TSA every run's end checkpoint is stamped by, if any.

    ``MLTRAIL_TSA_URL`` (empty: none), else ``tsa_url`` in ledger.json.
    """
    env = os.environ if env is None else env
    if "MLTRAIL_TSA_URL" in env:
        return env["MLTRAIL_TSA_URL"].strip() or None
    return home.settings.tsa_url or None


def configured_tsa_roots(
    home: Home, env: Mapping[str, str] | None = None
) -> list[Certificate]:
    """The TSA CA a new token must verify against before it is kept, if any.

    ``MLTRAIL_TSA_CA`` (empty: none), else ``tsa_ca`` in ledger.json (relative
    to the home): the CA ``verify`` checks tokens against by default. Without
    one a token is kept on its imprint and nonce alone.

    Raises:
        ConfigError: the file cannot be read or holds no certificate.
    """
    from pathlib import Path

    from mltrail.capture.run.userfiles import read_user_file

    env = os.environ if env is None else env
    if "MLTRAIL_TSA_CA" in env:
        name = env["MLTRAIL_TSA_CA"].strip()
        path = Path(name) if name else None
    else:
        tsa_ca = home.settings.tsa_ca
        path = home.settings.path(home.path, tsa_ca) if tsa_ca else None
    if path is None:
        return []
    try:
        return load_tsa_roots(read_user_file(path, what="TSA CA file", limit=1 << 20))
    except (MltrailError, OSError) as e:
        raise ConfigError(f"the TSA CA file {path} cannot be used: {e}") from e


def request_timestamp(
    url: str, message: bytes, *, timeout: float = DEFAULT_TSA_TIMEOUT_S
) -> bytes:
    """Ask the TSA at ``url`` to stamp SHA-256(``message``); return its DER reply.

    The reply is checked (granted, this hash, this nonce) before it is returned.

    Raises:
        ConfigError: the URL is not http(s), or rfc3161-client is missing.
        StoreError: the TSA could not be reached, or refused or garbled the
            request (nothing was stored).
    """
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"TSA URL {url!r} is not an http:// or https:// URL",
            hint="e.g. --tsa https://freetsa.org/tsr",
        )
    rfc3161 = load_rfc3161_client()
    request = (
        rfc3161.TimestampRequestBuilder()
        .data(message)
        .hash_algorithm(rfc3161.HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    reply = _post(url, request.as_bytes(), timeout)
    try:
        parsed = rfc3161.decode_timestamp_response(reply)
        nonce = parsed.tst_info.nonce
    except (ValueError, TypeError) as e:
        raise StoreError(f"the TSA at {url} sent no valid RFC 3161 reply: {e}") from e
    if nonce != request.nonce:
        raise StoreError(f"the TSA at {url} answered with another request's nonce")
    return reply


def _post(url: str, body: bytes, timeout: float) -> bytes:
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=body,
        headers={"Content-Type": "application/timestamp-query"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            reply = response.read(MAX_TOKEN_SIZE + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise StoreError(
            f"the TSA at {url} could not be reached: {reason}",
            hint="check the URL and the network; `mltrail timestamp --pending` "
            "stamps the checkpoint later",
        ) from e
    if len(reply) > MAX_TOKEN_SIZE:
        raise StoreError(f"the TSA at {url} sent more than {MAX_TOKEN_SIZE} bytes")
    return reply


def stamp_checkpoint(
    ledger: Ledger,
    url: str,
    checkpoint_text: str,
    *,
    timeout: float = DEFAULT_TSA_TIMEOUT_S,
    roots: Sequence[Certificate] = (),
) -> Stamp:
    """Stamp one of the ledger's checkpoints by the TSA at ``url`` and keep the token.

    A checkpoint that already has a token keeps it (nothing is requested). With
    ``roots`` (the TSA CA, :func:`configured_tsa_roots`) a token is kept only
    when it verifies against them, and a held one that does not is no stamp:
    an evidence row can never be removed, and one that fails fails every
    ``verify`` after (a reply forged on the way, or the wrong TSA).

    Raises:
        ConfigError: bad URL or rfc3161-client missing.
        StoreError: the TSA failed, its token does not verify against
            ``roots``, or the token could not be stored.
    """
    size = parse_signed_checkpoint(checkpoint_text).checkpoint.size
    for held in evidence_for(ledger.store, checkpoint_text):
        if held.kind == RFC3161:
            try:
                info = _checked(held.data, checkpoint_text, roots)
            except MltrailError:
                continue  # not a stamp this TSA CA vouches for: get one
            return Stamp(size, checkpoint_text, info, False)
    reply = request_timestamp(url, timestamp_message(checkpoint_text), timeout=timeout)
    try:
        info = _checked(reply, checkpoint_text, roots)
    except (SchemaError, MltrailError) as e:
        raise StoreError(
            f"the TSA at {url} sent an unusable token (not kept): {e}",
            hint="check the TSA URL and the TSA CA (MLTRAIL_TSA_CA, tsa_ca)",
        ) from e
    ledger.store.add_evidence(RFC3161, size, checkpoint_text, reply, _now(ledger))
    return Stamp(size, checkpoint_text, info, True)


def _checked(
    data: bytes, checkpoint_text: str, roots: Sequence[Certificate]
) -> TimestampInfo:
    if roots:
        return verify_timestamp(data, checkpoint_text, roots)
    return check_imprint(data, checkpoint_text)


def stamp_newest(
    home: Home, url: str, *, timeout: float = DEFAULT_TSA_TIMEOUT_S
) -> Stamp:
    """Stamp the newest checkpoint (checked first, as ``mltrail checkpoint`` does)."""
    roots = configured_tsa_roots(home)
    signed = home.checkpoint()
    return stamp_checkpoint(
        home.ledger, url, signed.to_text(), timeout=timeout, roots=roots
    )


def stamp_pending(
    home: Home, url: str, *, timeout: float = DEFAULT_TSA_TIMEOUT_S
) -> list[Stamp]:
    """Stamp every checkpoint a run left waiting for its timestamp, oldest first.

    Raises:
        StoreError: the TSA failed (the checkpoints stamped before it are kept).
    """
    roots = configured_tsa_roots(home)
    return [
        stamp_checkpoint(home.ledger, url, text, timeout=timeout, roots=roots)
        for _, text in pending_checkpoints(home.ledger.store)
    ]


def stamp_run_end(
    home: Home, size: int | None, env: Mapping[str, str] | None = None
) -> str | None:
    """Stamp a run's end checkpoint if a TSA is configured; never raises.

    Returns a warning when it could not be stamped (a marker is stored so that
    ``mltrail timestamp --pending`` stamps it later), else None.
    """
    try:
        url = configured_tsa(home, env)
        if url is None or size is None:
            return None
        latest = home.ledger.store.latest_checkpoint()
        if latest is None:
            return None
        text = latest.text
        try:
            roots = configured_tsa_roots(home, env)
            stamp_checkpoint(home.ledger, url, text, roots=roots)
        except (StoreError, ConfigError) as e:
            home.ledger.store.add_evidence(
                PENDING, latest.size, text, f"{url}: {e}".encode(), _now(home.ledger)
            )
            return (
                f"the run's checkpoint (size {latest.size}) was not timestamped: {e}; "
                "`mltrail timestamp --pending` stamps it later"
            )
    except MltrailError as e:
        _log.warning("mltrail: the run's checkpoint was not timestamped: %s", e)
        return f"the run's checkpoint was not timestamped: {e}"
    return None


def _now(ledger: Ledger) -> str:
    return ledger.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
