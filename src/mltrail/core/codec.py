"""The one parser of untrusted bytes: JSON text in, validated entries and records out.

Everything that reads a record from a store, a file, a network or a user goes
through here, and every failure becomes a :class:`~mltrail.errors.SchemaError`
chained to its cause.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from mltrail.core.canonical import (
    canonical_bytes,
    canonical_object,
    compute_record_hash,
    fast_canonical_bytes,
    json_compatible,
    plain_json,
)
from mltrail.core.entry import ENTRY_VERSION, Entry, Record, compose_record_bytes
from mltrail.core.limits import (
    MAX_DEPTH,
    MAX_ENTRY_BYTES,
    MAX_RECORD_DEPTH,
    MAX_SAFE_INT,
    canonical_size_bound,
    exceeds_text_depth,
    inexact_int_message,
    run_id_problem,
    value_problem,
)
from mltrail.core.schema import KNOWN_KINDS, kind_validator
from mltrail.errors import SchemaError
from mltrail.values import Frozen

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "BlobRef",
    "DecodedRecord",
    "check_entry_size",
    "decode_record",
    "find_blob_refs",
    "format_time",
    "is_newer_version",
    "is_plain_body",
    "parse_json",
    "parse_time",
    "validate_actor",
    "validate_body",
    "validate_entry",
]


def parse_json(
    data: bytes | str,
    *,
    what: str = "input",
    max_depth: int = MAX_RECORD_DEPTH,
    exact_ints: bool = False,
) -> Any:
    """Parse JSON text strictly: no NaN/Infinity, no duplicate object keys.

    Text nesting deeper than ``max_depth`` objects and arrays is refused before it
    is parsed. Integers beyond +-(2**53 - 1) are read as floats, as RFC 8785
    writes them (right for stored canonical bytes); with ``exact_ints`` (text a
    user typed) they are refused instead of being silently rounded.

    Raises:
        SchemaError: the text is not valid JSON, nests too deep, or (with
            ``exact_ints``) holds an integer JSON cannot carry exactly.
    """
    if exceeds_text_depth(data, max_depth):
        raise SchemaError(
            f"{what} nests deeper than {max_depth} levels of objects and arrays"
        )
    try:
        return json.loads(
            data,
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
            parse_int=_exact_int if exact_ints else _parse_int,
        )
    except _InexactIntError as e:
        raise SchemaError(f"{what}: {e}") from e
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise SchemaError(f"{what} is not valid JSON: {e}") from e


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate object key")
    return out


def _parse_int(text: str) -> int | float:
    """Integers beyond 2**53 - 1 are read as floats, as RFC 8785 (I-JSON) writes them.

    A float such as 1e16 is written canonically as ``10000000000000000``; reading it
    back as a float makes it re-canonicalise to the same bytes.
    """
    value = int(text)
    return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else float(value)


class _InexactIntError(ValueError):
    pass


def _exact_int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise _InexactIntError(inexact_int_message(value))
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z"
)


def parse_time(text: str) -> datetime:
    """Parse an entry time (RFC 3339, UTC, ``Z``) into an aware datetime.

    Fractions beyond microseconds are accepted and truncated. An append parses
    each entry's time twice (checking the entry, then dating it against the
    ledger's newest time), so recent answers are kept (datetimes are immutable).

    Raises:
        SchemaError: not an RFC 3339 UTC time.
    """
    if type(text) is str:
        return _parse_time_cached(text)
    return _parse_time(text)


def _parse_time(text: str) -> datetime:
    match = _TIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise SchemaError(
            f"time {text!r} is not RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.f]Z)"
        )
    year, month, day, hour, minute, second, frac = match.groups()
    micro = int(frac[:6].ljust(6, "0")) if frac else 0
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            micro,
            tzinfo=UTC,
        )
    except ValueError as e:
        raise SchemaError(f"time {text!r} is not a valid date and time: {e}") from e


def _check_time(text: str) -> None:
    """:func:`parse_time`'s checks, without making the datetime when the time is
    surely valid: the pattern matches, the day is a real one (each day is checked
    once) and hour, minute and second are in range. Anything else goes to
    ``parse_time``, which raises with its message (or accepts).

    Raises:
        SchemaError: not an RFC 3339 UTC time, or not a valid date and time.
    """
    if (
        type(text) is not str
        or _TIME.fullmatch(text) is None
        or text[11:13] > "23"
        or text[14:16] > "59"
        or text[17:19] > "59"
        or not _is_day(text[:10])
    ):
        parse_time(text)


@lru_cache(maxsize=4096)
def _is_day(text: str) -> bool:
    """Whether ``YYYY-MM-DD`` (digits) names a day of the Gregorian calendar."""
    try:
        date(int(text[:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return False
    return True


# a batch of appends parses up to 2 x its size before asking again; errors are
# raised, never kept
_parse_time_cached = lru_cache(maxsize=4096)(_parse_time)


def format_time(moment: datetime) -> str:
    """Format an aware datetime as an entry time: UTC, microseconds, ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("entry times must be timezone-aware")
    utc = moment.astimezone(UTC)
    if utc.year >= 1000:  # isoformat pads the year to 4 digits, strftime does not
        # the same text as the strftime below, made in C (+00:00 becomes Z)
        return utc.isoformat(timespec="microseconds")[:-6] + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validate_body(kind: str, body: Mapping[str, Any]) -> None:
    """Check a body against its kind's schema.

    Raises:
        SchemaError: unknown kind, or the body does not match the schema.
    """
    validator = kind_validator(kind)
    if validator is None:
        known = ", ".join(sorted(KNOWN_KINDS))
        raise SchemaError(f"unknown kind {kind!r}; known kinds: {known}")
    problem = validator.first_error(body)
    if problem is not None:
        raise SchemaError(f"body of {kind} does not match its schema: {problem}")


_VERSION = re.compile(r"mltrail/([1-9][0-9]{0,5})")


def is_newer_version(value: object) -> bool:
    """True for a format version of a later mltrail (``mltrail/2`` and up).

    Records in a newer format keep the invariants every version shares (RFC 8785
    bytes, the signature over the entry without ``sig``, the chain and the tree),
    so they can be verified that far; their bodies cannot be checked here.
    """
    match = _VERSION.fullmatch(value) if isinstance(value, str) else None
    return match is not None and int(match.group(1)) > 1


_KIND = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SIG_B64 = re.compile(r"[A-Za-z0-9+/]{86}==")
_SIG_KEYS = frozenset({"alg", "key", "value"})


def _envelope_problem(data: Mapping[str, Any]) -> str | None:
    """The envelope rules of ``schema/entry.json``, checked without jsonschema.

    Verification runs this on every record, where jsonschema would cost more than
    the signature check; tests prove it agrees with the published schema.
    """
    for name in ("v", "kind", "time", "actor", "body"):
        if name not in data:
            return f"'{name}' is a required property"
    if data["v"] != ENTRY_VERSION and not is_newer_version(data["v"]):
        return f"v is {data['v']!r}, expected {ENTRY_VERSION!r}"
    kind, run = data["kind"], data.get("run", "")
    if not isinstance(kind, str) or len(kind) > 64 or not _KIND.fullmatch(kind):
        return f"kind {kind!r} is not a valid kind name"
    if "run" in data and (not isinstance(run, str) or not 1 <= len(run) <= 128):
        return "run must be a string of 1 to 128 characters"
    if not isinstance(data["actor"], dict) or not isinstance(data["body"], dict):
        return "actor and body must be objects"
    return _actor_problem(data["actor"]) or _sig_problem(data.get("sig"), "sig" in data)


def _actor_problem(actor: Mapping[str, Any]) -> str | None:
    for name in ("user", "host", "claimed_user"):
        if name in actor and not isinstance(actor[name], str):
            return f"actor.{name} must be a string"
    uid = actor.get("uid", 0)
    if not isinstance(uid, int) or isinstance(uid, bool) or uid < 0:
        return "actor.uid must be a non-negative integer"
    if "ci" in actor and actor["ci"] is not None and not isinstance(actor["ci"], dict):
        return "actor.ci must be an object or null"
    return None


def _sig_problem(sig: Any, present: bool) -> str | None:
    if not present:
        return None
    if not isinstance(sig, dict) or set(sig) != _SIG_KEYS:
        return "sig must be an object with exactly alg, key and value"
    if sig["alg"] != "ed25519":
        return f"sig.alg {sig['alg']!r} is not supported (ed25519)"
    key, value = sig["key"], sig["value"]
    if not isinstance(key, str) or not _HEX64.fullmatch(key):
        return "sig.key must be 64 lowercase hex characters"
    if not isinstance(value, str) or not _SIG_B64.fullmatch(value):
        return "sig.value must be a base64 Ed25519 signature"
    return None


def validate_entry(
    data: Mapping[str, Any],
    *,
    require_known_kind: bool = True,
    check_size: bool = True,
    plain_body: bool = False,
) -> None:
    """Check a new entry (without ``sig``) before it is signed and appended.

    Every append goes through here: the limits of ``core.limits`` (nesting depth,
    exact integers, a valid run id, the canonical size) first, then the envelope
    and the kind's schema (an unknown kind passes when ``require_known_kind`` is
    false). A caller about to make the canonical bytes anyway (signing) passes
    ``check_size=False`` and checks them with :func:`check_entry_size`.
    ``plain_body`` says :func:`is_plain_body` holds for the body (checked by
    the caller): the limits have nothing against it.

    Raises:
        SchemaError: with the first problem found.
    """
    for name, value in data.items():
        if type(value) is str or (type(value) is dict and not value):
            continue  # nothing value_problem looks for: no nesting, no integer
        if plain_body and name == "body":
            continue
        problem = value_problem(value, f"entry {name}" if name != "body" else "body")
        if problem is not None:
            raise SchemaError(f"cannot append: {problem}")
    if "run" in data and (problem := run_id_problem(data["run"])) is not None:
        raise SchemaError(f"cannot append: {problem}")
    _check_envelope(data, require_known_kind=require_known_kind)
    if check_size and canonical_size_bound(data) > MAX_ENTRY_BYTES:
        check_entry_size(len(canonical_bytes(data)))


def is_plain_body(body: Any) -> bool:
    """Whether ``body`` is one the limits have nothing against and whose
    canonical bytes the C encoder writes (``core.canonical.plain_json`` to the
    entry depth limit: a body is level 1), so an append walks it once."""
    return plain_json(body, MAX_DEPTH)


def validate_actor(actor: Any) -> None:
    """The checks :func:`validate_entry` makes of an entry's ``actor``, alone: for a
    writer that puts one actor into many entries and checks it once.

    Raises:
        SchemaError: with the first problem found.
    """
    problem = value_problem(actor, "entry actor")
    if problem is not None:
        raise SchemaError(f"cannot append: {problem}")
    if not isinstance(actor, dict):
        problem = "actor and body must be objects"
    else:
        problem = _actor_problem(actor)
    if problem is not None:
        raise SchemaError(f"entry does not match the envelope schema: {problem}")


def check_entry_size(size: int) -> None:
    """Refuse an entry whose canonical bytes (without ``sig``) are ``size`` long.

    Raises:
        SchemaError: more than ``MAX_ENTRY_BYTES``.
    """
    if size > MAX_ENTRY_BYTES:
        raise SchemaError(
            f"cannot append: the entry is {size:,} bytes of canonical JSON, "
            f"more than the limit of {MAX_ENTRY_BYTES:,} ({MAX_ENTRY_BYTES >> 20} MiB)",
            hint="store large payloads as blobs (Ledger.put_blob, --attach) "
            "and reference them from the body",
        )


def _check_envelope(data: Mapping[str, Any], *, require_known_kind: bool) -> None:
    """The envelope schema, the time, and the kind's schema (what readers check)."""
    problem = _envelope_problem(data)
    if problem is not None:
        raise SchemaError(f"entry does not match the envelope schema: {problem}")
    _check_time(data["time"])
    if data["v"] != ENTRY_VERSION:
        if require_known_kind:
            raise SchemaError(
                f"entry is in format {data['v']}, written by a newer mltrail",
                hint="upgrade mltrail to write entries in this format",
            )
        return
    if require_known_kind or data["kind"] in KNOWN_KINDS:
        validate_body(data["kind"], data["body"])


class DecodedRecord(Frozen):
    """A record parsed from canonical bytes, with what verification needs."""

    __slots__ = __match_args__ = (
        "record", "record_bytes", "signing_bytes", "hash", "known_kind", "newer"
    )  # fmt: skip
    record: Record
    record_bytes: bytes
    signing_bytes: bytes
    hash: bytes
    known_kind: bool
    newer: bool
    """Written in a newer format (``mltrail/2`` and up): the body was not checked."""

    def __init__(
        self,
        record: Record,
        record_bytes: bytes,
        signing_bytes: bytes,
        hash: bytes,
        known_kind: bool,
        newer: bool = False,
    ) -> None:
        object.__setattr__(self, "record", record)
        object.__setattr__(self, "record_bytes", record_bytes)
        object.__setattr__(self, "signing_bytes", signing_bytes)
        object.__setattr__(self, "hash", hash)
        object.__setattr__(self, "known_kind", known_kind)
        object.__setattr__(self, "newer", newer)


def decode_record(data: bytes) -> DecodedRecord:
    """Parse and validate a stored record.

    The bytes must be exactly the RFC 8785 canonical form of a record whose entry
    matches the envelope schema (and its kind's schema when the kind is known).

    Most records take :func:`_decode_fast`; whatever it is not sure of (and every
    record it would refuse) goes through the full path below, so what is refused,
    and with which message, is decided there alone.

    Raises:
        SchemaError: anything malformed, non-canonical or off-schema.
    """
    fast = _decode_fast(data)
    if fast is not None:
        return fast
    return _decode_full(data)


def _decode_full(data: bytes) -> DecodedRecord:
    """:func:`decode_record` the long way: every check, and its exact message."""
    raw = parse_json(data, what="record")
    if not isinstance(raw, dict) or set(raw) != {"seq", "prev", "entry"}:
        raise SchemaError("record must be an object with exactly seq, prev and entry")
    entry_raw = raw["entry"]
    if not isinstance(entry_raw, dict):
        raise SchemaError("record entry must be an object")
    _check_envelope(entry_raw, require_known_kind=False)
    seq, prev = raw["seq"], raw["prev"]
    if type(seq) is not int or not isinstance(prev, str):
        raise SchemaError("record seq must be an integer and prev a string")
    try:
        record = Record(seq=seq, prev=prev, entry=Entry.from_dict(entry_raw))
    except ValueError as e:
        raise SchemaError(f"record is malformed: {e}") from e
    expected, signing_bytes = _canonical_record(seq, prev, entry_raw)
    if expected != data:
        raise SchemaError("record bytes are not in canonical form (RFC 8785)")
    return _decoded(record, data, signing_bytes, entry_raw)


def _decoded(
    record: Record, data: bytes, signing_bytes: bytes, entry_raw: Mapping[str, Any]
) -> DecodedRecord:
    """The answer of both decoding paths for a record they accepted."""
    return DecodedRecord(
        record=record,
        record_bytes=data,
        signing_bytes=signing_bytes,
        hash=compute_record_hash(data),
        known_kind=entry_raw["kind"] in KNOWN_KINDS,
        newer=entry_raw["v"] != ENTRY_VERSION,
    )


# Bytes that send a record the full way, even inside a string: from 0xED on,
# UTF-8 encodes code points from U+D000 (keys from U+D800 sort differently by code
# point and by UTF-16 code unit); a number of 16 digits or more (after ``:``, ``,``
# or ``[``, where canonical JSON puts numbers) may be beyond 2**53 - 1, which
# ``parse_json`` reads as a float. One C-speed ``translate`` maps the bytes to
# classes (``!`` high, ``0`` digit, ``:`` before a number, ``-``, ``x`` the rest)
# and substring searches find either.
_FAST_CLASSES = bytes(
    ord(
        "!"
        if b >= 0xED
        else "0"
        if 0x30 <= b <= 0x39
        else ":"
        if b in b":,["
        else "-"
        if b == 0x2D
        else "x"
    )
    for b in range(256)
)
_LONG_NUMBER = b":" + b"0" * 16
_LONG_NEGATIVE = b":-" + b"0" * 16


def _fast_doubt(data: bytes) -> bool:
    """Whether ``data`` holds a byte from 0xED on or a number of 16+ digits."""
    classes = data.translate(_FAST_CLASSES)
    return b"!" in classes or _LONG_NUMBER in classes or _LONG_NEGATIVE in classes


_FAST_KEYS = frozenset({"seq", "prev", "entry"})
_ENVELOPE_KEYS = frozenset({"v", "kind", "run", "time", "actor", "body", "sig"})


class _NotFastError(Exception):
    """Raised by the fast parser's hooks: a NaN/Infinity constant, or a number
    whose canonical form the C encoder does not write."""


def _not_fast(_: str) -> Any:
    raise _NotFastError


def _fast_float(text: str) -> float:
    """A number with a fraction, read as ``parse_json`` reads it; one with an
    exponent or a zero fraction is left to the full path.

    The C encoder writes a float as ``repr`` does, RFC 8785 as ECMAScript does:
    both the shortest digits that read back to the same float, positioned the
    same way unless the float is integral (``1.0`` / ``1``) or has an exponent
    (``repr`` from 1e16 and below 1e-4, ECMAScript from 1e21 and below 1e-6, and
    written differently). So when the record's bytes equal the C encoder's (the
    fast path's check), every float in it was written with neither: exactly as
    RFC 8785 writes it.
    """
    if "e" in text or "E" in text or text.endswith(".0"):
        raise _NotFastError
    return float(text)


_fast_loads = json.JSONDecoder(parse_float=_fast_float, parse_constant=_not_fast).decode
_dumps = json.JSONEncoder(  # canonical.fast_canonical_bytes' encoder
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
).encode


def _fast_value(data: bytes) -> dict[str, Any] | None:
    """The record's value, parsed without hooks, when it has the record's shape
    (``seq`` an integer, ``prev`` a string, an entry of envelope members with a
    ``sig`` object) and nothing that sends it the full way; else None."""
    if _fast_doubt(data) or exceeds_text_depth(data, MAX_RECORD_DEPTH):
        return None
    try:
        raw = _fast_loads(data.decode("utf-8"))
    except (_NotFastError, ValueError, RecursionError):
        return None
    if type(raw) is not dict or raw.keys() != _FAST_KEYS:
        return None
    entry = raw["entry"]
    if type(entry) is not dict or not entry.keys() <= _ENVELOPE_KEYS:
        return None
    if type(raw["seq"]) is not int or type(raw["prev"]) is not str:
        return None
    return raw if type(entry.get("sig")) is dict else None


def _decode_fast(data: bytes) -> DecodedRecord | None:
    """The common record, decoded with one parse and one serialisation; None for
    anything this is not sure of, or would refuse (the full path then decides).

    What it accepts, :func:`_decode_full` accepts with the same result (a
    property test checks it on records and altered records):

    - parsed without hooks on objects or integers (only on fractions and
      constants, which are rare), it holds no constant, no float with an
      exponent or a zero fraction (the hooks bail out, see ``_fast_float``), no
      integer beyond 2**53 - 1 and no key from U+D800 on (``_fast_doubt`` on the
      bytes), and it nests no deeper than the limit: so the C encoder writes its
      RFC 8785 bytes, and ``parse_json`` would read the same value;
    - those bytes equal ``data``: the record is canonical, and no object had a
      duplicate key (the bytes would then hold a member the value lacks);
    - the same envelope, schema and record checks run as on the full path;
    - the signed bytes are the entry's bytes less its ``sig`` member, which in
      an entry of envelope members only is followed by ``time`` and ``v`` alone.
    """
    raw = _fast_value(data)
    if raw is None:
        return None
    entry_raw, seq, prev = raw["entry"], raw["seq"], raw["prev"]
    sig = entry_raw["sig"]
    try:
        _check_envelope(entry_raw, require_known_kind=False)
        record = Record(seq=seq, prev=prev, entry=Entry.from_dict(entry_raw))
        whole = _dumps(raw).encode("utf-8")
    except (SchemaError, ValueError, TypeError, KeyError, RecursionError):
        return None
    if whole != data:
        return None
    # time, v and sig passed the envelope's patterns: ASCII with nothing to escape
    time_v = f',"time":"{entry_raw["time"]}","v":"{entry_raw["v"]}"}}'.encode()
    sig_member = (
        f',"sig":{{"alg":"ed25519","key":"{sig["key"]}","value":"{sig["value"]}"}}'
    ).encode() + time_v
    tail = b',"prev":"' + prev.encode("ascii") + b'","seq":' + str(seq).encode() + b"}"
    entry_bytes = data[9 : len(data) - len(tail)]  # after b'{"entry":'
    if not entry_bytes.endswith(sig_member) or not data.endswith(tail):
        return None
    signing_bytes = entry_bytes[: len(entry_bytes) - len(sig_member)] + time_v
    return _decoded(record, data, signing_bytes, entry_raw)


def _canonical_record(
    seq: int, prev: str, entry_raw: Mapping[str, Any]
) -> tuple[bytes, bytes]:
    """(canonical record bytes, canonical entry bytes without ``sig``)."""
    record = {"entry": entry_raw, "prev": prev, "seq": seq}
    if json_compatible(record):
        unsigned = {k: v for k, v in entry_raw.items() if k != "sig"}
        whole = fast_canonical_bytes(record, checked=True)
        signing = fast_canonical_bytes(unsigned, checked=True)
        if whole is not None and signing is not None:
            return whole, signing
    members = {k: canonical_bytes(v) for k, v in entry_raw.items()}
    expected = compose_record_bytes(seq, prev, canonical_object(members))
    members.pop("sig", None)
    return expected, canonical_object(members)


class BlobRef(Frozen):
    """A reference to a blob found in a body: where, which digest, what size."""

    __slots__ = __match_args__ = ("path", "digest", "size")
    path: str
    digest: str
    size: int

    def __init__(self, path: str, digest: str, size: int) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "digest", digest)
        object.__setattr__(self, "size", size)


def find_blob_refs(value: Any, path: str = "body") -> Iterator[BlobRef]:
    """Yield every ``{"blob": "sha256:<hex>", "size": n}`` object inside ``value``."""
    if isinstance(value, dict):
        digest, size = value.get("blob"), value.get("size")
        if (
            isinstance(digest, str)
            and digest.startswith("sha256:")
            and type(size) is int
        ):
            yield BlobRef(path=path, digest=digest, size=size)
        for key, item in value.items():
            if isinstance(item, dict | list):  # a leaf holds no reference
                yield from find_blob_refs(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                yield from find_blob_refs(item, f"{path}[{i}]")
