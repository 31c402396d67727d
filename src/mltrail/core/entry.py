"""Entries (what an author asserts) and records (an entry's place in the ledger).

``Entry.to_dict()`` / ``Entry.from_dict()`` convert to and from plain JSON values;
the canonical bytes that get signed and hashed come only from
:mod:`mltrail.core.canonical`. Unknown top-level fields are kept in ``extra`` and
written back unchanged, so a record written by a newer mltrail re-hashes byte for
byte in an older one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mltrail.core.canonical import (
    ZERO_HASH,
    canonical_bytes,
    canonical_object,
    compute_record_hash,
    fast_canonical_bytes,
)
from mltrail.core.signing import ALG_ED25519, Signer, encode_b64
from mltrail.values import Frozen

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ENTRY_VERSION",
    "SIG_MEMBER_BYTES",
    "Entry",
    "Record",
    "Signature",
    "TemplateSigner",
    "compute_entry_bytes",
    "compute_signing_bytes",
    "sign_entry",
]

ENTRY_VERSION = "mltrail/1"
_ENVELOPE = ("v", "kind", "run", "time", "actor", "body", "sig")
_set = object.__setattr__  # how a frozen value sets its fields in __init__


class Signature(Frozen):
    """An Ed25519 signature over an entry's canonical bytes without ``sig``."""

    __slots__ = __match_args__ = ("key", "value", "alg")
    key: str
    value: str
    alg: str

    def __init__(self, key: str, value: str, alg: str = ALG_ED25519) -> None:
        _set(self, "key", key)
        _set(self, "value", value)
        _set(self, "alg", alg)

    def to_dict(self) -> dict[str, str]:
        """Return the JSON form ``{"alg", "key", "value"}``."""
        return {"alg": self.alg, "key": self.key, "value": self.value}


class Entry(Frozen):
    """What an author asserts: a kind, a time, who, and a body.

    Args:
        kind: the entry kind, e.g. ``run.params``; each kind has a JSON Schema.
        time: RFC 3339 UTC time, e.g. ``2026-11-24T17:56:18.123456Z``.
        actor: who or what wrote it (``user``, ``host``, ``ci``...).
        body: the kind-specific payload.
        run: the run this entry belongs to, if any.
        sig: the signature, once signed.
        v: the format version.
        extra: unknown top-level fields, kept and signed as they came.
        signed_bytes: cache of the canonical bytes of the signed entry, filled by
            ``sign_entry`` so appends canonicalise each entry once; never compared.
    """

    __slots__ = __match_args__ = (
        "kind", "time", "actor", "body", "run", "sig", "v", "extra", "signed_bytes"
    )  # fmt: skip
    _compared = _shown = __match_args__[:8]  # not signed_bytes
    kind: str
    time: str
    actor: Mapping[str, Any]
    body: Mapping[str, Any]
    run: str | None
    sig: Signature | None
    v: str
    extra: Mapping[str, Any]
    signed_bytes: bytes | None

    def __init__(
        self,
        kind: str,
        time: str,
        actor: Mapping[str, Any],
        body: Mapping[str, Any],
        run: str | None = None,
        sig: Signature | None = None,
        v: str = ENTRY_VERSION,
        extra: Mapping[str, Any] | None = None,
        signed_bytes: bytes | None = None,
    ) -> None:
        _set(self, "kind", kind)
        _set(self, "time", time)
        _set(self, "actor", actor)
        _set(self, "body", body)
        _set(self, "run", run)
        _set(self, "sig", sig)
        _set(self, "v", v)
        _set(self, "extra", {} if extra is None else extra)  # a new dict each time
        _set(self, "signed_bytes", signed_bytes)

    def to_dict(self, *, with_sig: bool = True) -> dict[str, Any]:
        """Return the entry as plain JSON values (``run`` and ``sig`` omitted when absent)."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            v=self.v, kind=self.kind, time=self.time, actor=self.actor, body=self.body
        )
        if self.run is not None:
            out["run"] = self.run
        if with_sig and self.sig is not None:
            out["sig"] = self.sig.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        """Build an entry from its JSON form; shape checks are the codec's job."""
        sig = data.get("sig")
        return cls(
            kind=data["kind"],
            time=data["time"],
            actor=data["actor"],
            body=data["body"],
            run=data.get("run"),
            sig=Signature(key=sig["key"], value=sig["value"], alg=sig["alg"])
            if sig is not None
            else None,
            v=data["v"],
            extra={k: v for k, v in data.items() if k not in _ENVELOPE},
        )


def compute_signing_bytes(entry: Entry) -> bytes:
    """The bytes an entry signature covers: canonical entry without ``sig``."""
    return canonical_bytes(entry.to_dict(with_sig=False))


def compute_entry_bytes(entry: Entry) -> bytes:
    """Canonical bytes of the whole (signed) entry."""
    if entry.signed_bytes is not None:
        return entry.signed_bytes
    return canonical_bytes(entry.to_dict())


SIG_MEMBER_BYTES = len(
    b',"sig":'
    + canonical_bytes({"alg": ALG_ED25519, "key": "0" * 64, "value": "A" * 86 + "=="})
)
"""How much ``sig`` adds to an entry's canonical bytes: always the same."""


def sign_entry(entry: Entry, signer: Signer) -> Entry:
    """Return a copy of ``entry`` signed by ``signer``."""
    members = {k: canonical_bytes(v) for k, v in entry.to_dict(with_sig=False).items()}
    value = encode_b64(signer.sign(canonical_object(members)))
    sig = Signature(key=signer.key_id, value=value)
    members["sig"] = canonical_bytes(sig.to_dict())
    return Entry(
        kind=entry.kind,
        time=entry.time,
        actor=entry.actor,
        body=entry.body,
        run=entry.run,
        sig=sig,
        v=entry.v,
        extra=entry.extra,
        signed_bytes=canonical_object(members),
    )


class TemplateSigner:
    """Signs entries of one actor with one key, the constant parts made once.

    :func:`sign_entry` canonicalises every member of every entry; an append of
    many entries by one writer repeats the same actor, version and key each
    time. This keeps their canonical bytes and joins each entry's from them and
    the canonical bytes of its kind, time, body and run, in RFC 8785 key order
    (``actor``, ``body``, ``kind``, ``run``, ``sig``, ``time``, ``v``: all ASCII,
    so code point order is UTF-16 order). The bytes are exactly those of
    :func:`sign_entry` (tests prove it); entries with ``extra`` members are not
    made here. Checking the entry is the caller's work, as for ``sign_entry``.
    """

    __slots__ = ("_actor", "_kinds", "_sig_start", "_tail", "actor", "signer")

    def __init__(self, signer: Signer, actor: Mapping[str, Any]) -> None:
        self.signer = signer
        self.actor = actor
        self._actor = b'{"actor":' + canonical_bytes(actor) + b',"body":'
        self._tail = b',"v":' + canonical_bytes(ENTRY_VERSION) + b"}"
        empty = canonical_bytes(Signature(key=signer.key_id, value="").to_dict())
        self._sig_start = b',"sig":' + empty[:-2]  # up to the value's opening quote
        self._kinds: dict[str, bytes] = {}

    def sign(
        self, kind: str, time: str, body: Mapping[str, Any], run: str | None = None
    ) -> Entry:
        """The signed entry (``actor`` the one given), its bytes cached."""
        head, tail = self.message(kind, time, body, run)
        return self.finish(
            kind, time, body, run, (head, tail), self.signer.sign(head + tail)
        )

    def message(
        self,
        kind: str,
        time: str,
        body: Mapping[str, Any],
        run: str | None = None,
        *,
        plain: bool = False,
    ) -> tuple[bytes, bytes]:
        """The entry's canonical bytes without ``sig``, cut where ``sig`` goes:
        ``head + tail`` is what its signature covers (:meth:`finish` joins the
        rest), ``len(head + tail)`` the size ``check_entry_size`` checks.
        ``plain`` says ``plain_json`` holds for ``body`` (not walked again)."""
        body_bytes = fast_canonical_bytes(body, checked=True) if plain else None
        if body_bytes is None:
            body_bytes = canonical_bytes(body)
        kinds = self._kinds
        kind_bytes = kinds.get(kind)
        if kind_bytes is None:
            kind_bytes = b',"kind":' + _string_bytes(kind)
            if len(kinds) < 64:
                kinds[kind] = kind_bytes
        head = self._actor + body_bytes + kind_bytes
        if run is not None:
            head += b',"run":' + _string_bytes(run)
        return head, b',"time":' + _string_bytes(time) + self._tail

    def finish(
        self,
        kind: str,
        time: str,
        body: Mapping[str, Any],
        run: str | None,
        message: tuple[bytes, bytes],
        signature: bytes,
    ) -> Entry:
        """The entry :meth:`message` cut into ``message``, with ``signature``
        (this signer's, over ``head + tail``) and its signed bytes."""
        head, tail = message
        value = encode_b64(signature)
        return Entry(
            kind=kind,
            time=time,
            actor=self.actor,
            body=body,
            run=run,
            sig=Signature(key=self.signer.key_id, value=value),
            signed_bytes=head + self._sig_start + value.encode("ascii") + b'"}' + tail,
        )


def _string_bytes(text: Any) -> bytes:
    """``canonical_bytes(text)``, made directly for a printable ASCII string with
    no quote or backslash (entry kinds, times, run ids): RFC 8785 writes such a
    string between quotes as it is. Anything else goes through ``canonical_bytes``."""
    if (
        type(text) is str
        and text.isascii()
        and text.isprintable()
        and '"' not in text
        and "\\" not in text
    ):
        return b'"' + text.encode("ascii") + b'"'
    return canonical_bytes(text)


class Record(Frozen):
    """An entry at its place in the ledger: ``seq`` and the hash of the record before."""

    __slots__ = __match_args__ = ("seq", "prev", "entry")
    seq: int
    prev: str
    entry: Entry

    def __init__(self, seq: int, prev: str, entry: Entry) -> None:
        _set(self, "seq", seq)
        _set(self, "prev", prev)
        _set(self, "entry", entry)
        if seq < 0:
            raise ValueError(f"seq must be >= 0, got {seq}")
        if len(prev) != 64 or prev.strip("0123456789abcdef"):
            raise ValueError("prev must be 64 lowercase hex characters")
        if seq == 0 and prev != ZERO_HASH:
            raise ValueError("the first record's prev must be 64 zeros")

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"seq", "prev", "entry"}`` as plain JSON values."""
        return {"seq": self.seq, "prev": self.prev, "entry": self.entry.to_dict()}

    def to_bytes(self) -> bytes:
        """Canonical bytes of the record (what is stored, hashed and proven)."""
        return compose_record_bytes(
            self.seq, self.prev, canonical_bytes(self.entry.to_dict())
        )

    def compute_hash(self) -> bytes:
        """SHA-256 of the canonical record bytes."""
        return compute_record_hash(self.to_bytes())


def compose_record_bytes(seq: int, prev: str, entry_bytes: bytes) -> bytes:
    """Canonical record bytes from the canonical bytes of its entry.

    The members in RFC 8785 order (``entry``, ``prev``, ``seq``), joined
    directly: what ``canonical_object`` makes of them (a test checks it).
    """
    return (
        b'{"entry":'
        + entry_bytes
        + b',"prev":'
        + _string_bytes(prev)
        + b',"seq":'
        + str(seq).encode()
        + b"}"
    )
