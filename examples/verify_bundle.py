"""Check an mltrail proof bundle without mltrail: the standard library and `cryptography`.

    python examples/verify_bundle.py                  # the example bundle in examples/data
    python examples/verify_bundle.py bundle.json      # any mltrail-bundle/1 file
    python examples/verify_bundle.py bundle.json --trust-checkpoint kept.cp

It checks what a bundle proves, from the specifications alone: each record's
bytes are its RFC 8785 canonical JSON (re-serialised here and compared) and
their SHA-256 chains to its neighbour's ``prev``; each entry's Ed25519 signature
over its canonical bytes without ``sig``, by a key the bundle's key.added /
key.revoked records make valid at that seq (an author key, one added with an
``identity``, must carry a valid proof and signs only entries whose
``actor.user`` is that identity, never key records, clock resets, purges or
checkpoints; key records are signed by log keys); each RFC 9162 inclusion proof to
the checkpoint; the checkpoint's C2SP signed-note signature; that every
blob a record references is listed, and every carried blob's SHA-256. It
prints a warning line (``gate-not-met``, ``gate-lowered``) for each carried
promotion that did not meet its stage's gate as the carried records before it
stand, as ``mltrail verify-bundle`` and ``mltrail model history`` judge it
(a warning: a bundle is not proven complete). It does
not check RFC 3161 tokens or witness cosignatures
(``mltrail verify-bundle`` does). With ``--trust-checkpoint FILE`` (a checkpoint
of the ledger you kept), the checkpoint must be signed by a key of the bundle
valid at its size and the bundle must carry an RFC 9162 consistency proof from
it to its checkpoint (``mltrail export --consistent-with``): a fork or rewrite
of the ledger fails. Exit 0 when intact, 1 with the reason and the
record named. The keys come from the bundle: compare the genesis key printed
with the one the ledger's owner published.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EXAMPLE = Path(__file__).parent / "data" / "bundle.json"
ZERO = "0" * 64


class BundleError(Exception):
    """The bundle is not intact."""


# -- RFC 8785 (JCS) ------------------------------------------------------------


def canonical(value: Any) -> str:
    """RFC 8785 text: keys sorted by UTF-16 code units, ES6 numbers, minimal escapes."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return es6_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return (
            "{" + ",".join(f"{canonical(k)}:{canonical(value[k])}" for k in keys) + "}"
        )
    raise BundleError(f"not JSON: {type(value).__name__}")


def es6_number(value: float) -> str:
    """ECMAScript's Number.prototype.toString for a finite double (RFC 8785 3.2.2.3)."""
    if not math.isfinite(value):
        raise BundleError("NaN and infinities are not JSON")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    every = whole + frac
    zeros = len(every) - len(every.lstrip("0"))
    digits = every.lstrip("0").rstrip("0")
    n = len(whole) + int(exp or 0) - zeros  # ES6's n: value = 0.digits * 10**n
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    tail = "." + digits[1:] if k > 1 else ""
    return f"{sign}{digits[0]}{tail}e{'+' if e > 0 else '-'}{abs(e)}"


def _int_or_float(text: str) -> int | float:
    value = int(text)
    return value if abs(value) <= 2**53 - 1 else float(value)  # as RFC 8785 reads it


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise BundleError("duplicate key in JSON")
    return dict(pairs)


def parse(text: str | bytes) -> Any:
    """Strict JSON: no duplicate keys, no NaN; big integers as RFC 8785 reads them."""
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_int=_int_or_float,
            parse_constant=lambda c: (_ for _ in ()).throw(BundleError(c)),
        )
    except (ValueError, RecursionError) as e:
        raise BundleError(f"not valid JSON: {e}") from e


# -- RFC 9162 inclusion ----------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def inclusion_root(index: int, size: int, leaf: bytes, proof: list[bytes]) -> bytes:
    """The root an RFC 9162 inclusion proof leads to (section 2.1.3.2)."""
    if not 0 <= index < size:
        raise BundleError(f"index {index} is outside a tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise BundleError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while (fn & 1) == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise BundleError("the inclusion proof is too short")
    return r


def consistent(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> bool:
    """Whether the tree (size2, root2) extends (size1, root1) (RFC 9162 2.1.4.2)."""
    if size1 == size2:
        return root1 == root2 and not proof
    if not 0 < size1 < size2:
        return False
    if size1 & (size1 - 1) == 0:
        proof = [root1, *proof]
    if not proof:
        return False
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while (fn & 1) == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == root1 and sr == root2


# -- C2SP signed note ----------------------------------------------------------------


def checkpoint_of(text: str, origin: str, keys: dict[str, Any]) -> tuple[int, bytes]:
    """(size, root) of a checkpoint of ``origin``; with ``keys`` (id -> [public
    key, added at, revoked at]) also check it is signed by a key valid at its size."""
    body, sep, sigs = text.rpartition("\n\n")
    if not sep or not sigs.endswith("\n"):
        raise BundleError("the checkpoint is not a signed note")
    body += "\n"
    lines = body[:-1].split("\n")
    if len(lines) < 3 or lines[0] != origin:
        raise BundleError(f"the checkpoint is not of the ledger {origin!r}")
    if not (lines[1].isascii() and lines[1].isdigit() and len(lines[1]) <= 20):
        raise BundleError("the checkpoint's tree size is not a number below 2**64")
    size, root = int(lines[1]), _b64(lines[2])
    keys = {  # log keys only: an author key never signs a checkpoint
        k: v[0]
        for k, v in keys.items()
        if v[1] < size and (v[2] is None or size < v[2]) and v[3] is None
    }
    if not keys:
        return size, root
    signed = False
    for line in sigs[:-1].split("\n"):
        name, _, b64 = line.removeprefix("\u2014 ").partition(" ")
        raw = _b64(b64)
        for public in keys.values():
            key_hash = hashlib.sha256(origin.encode() + b"\n\x01" + public).digest()[:4]
            if name == origin and raw[:4] == key_hash:
                _verify(public, raw[4:], body.encode(), "the checkpoint's signature")
                signed = True
    if not signed:
        raise BundleError("the checkpoint carries no signature by a key of the ledger")
    return size, root


# -- Ed25519 public keys (RFC 8032 5.1.3) ----------------------------------------------

_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_L = 2**252 + 27742317777372353535851937790883648493
_IDENTITY = (0, 1)


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Twisted Edwards addition (a = -1), complete for Ed25519 (d is no square)."""
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    x = (x1 * y2 + y1 * x2) * pow(1 + t, -1, _P) % _P
    y = (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P
    return x, y


def is_prime_order_point(data: bytes) -> bool:
    """Whether ``data`` is a canonical encoding of a point of order L, as libsodium
    wants of a key (``crypto_core_ed25519_is_valid_point``). `cryptography` does
    not check it: under a small-order key such as ``01 00 .. 00`` it accepts a
    signature anyone can make, of any message."""
    if len(data) != 32:
        return False
    y = int.from_bytes(data, "little") & ((1 << 255) - 1)
    if y >= _P:
        return False
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
        if (v * x * x - u) % _P:
            return False  # no point has this y
    if x == 0 and data[31] >> 7:
        return False  # x = 0 has no negative
    if x & 1 != data[31] >> 7:
        x = _P - x
    point, total, scalar = (x, y), _IDENTITY, _L
    while scalar:  # L * point: the identity for a point of order L (or 1)
        if scalar & 1:
            total = _add(total, point)
        point, scalar = _add(point, point), scalar >> 1
    return total == _IDENTITY and (x, y) != _IDENTITY


# -- the bundle -----------------------------------------------------------------------


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as e:
        raise BundleError(f"not base64: {e}") from e


def _verify(public: bytes, signature: bytes, message: bytes, what: str) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError) as e:
        raise BundleError(f"{what} does not verify") from e


def read_records(bundle: dict[str, Any]) -> dict[int, tuple[bytes, dict[str, Any]]]:
    """seq -> (canonical bytes, parsed record); every record's bytes re-serialised."""
    records = {}
    for item in bundle["records"]:
        seq, data = item["seq"], item["record"].encode("utf-8")
        record = parse(data)
        if canonical(record).encode("utf-8") != data:
            raise BundleError(
                f"record {seq}: its bytes are not RFC 8785 canonical JSON"
            )
        if record["seq"] != seq or seq in records:
            raise BundleError(f"record {seq}: listed under another seq, or twice")
        records[seq] = (data, record)
    listed = bundle["subject"]["seqs"]
    if sorted(records) != listed:
        missing = sorted(set(listed) ^ set(records))
        if missing:
            raise BundleError(
                f"record {missing[0]} is missing or not listed in the contents"
            )
        twice = next(b for a, b in itertools.pairwise(listed) if b <= a)
        raise BundleError(
            f"record {twice}: the contents (subject.seqs) list it twice or out of order"
        )
    return records


AUTHOR_FORBIDDEN = {"key.added", "key.revoked", "clock.reset", "blob.purged"}


def key_history(
    records: dict[int, tuple[bytes, dict[str, Any]]], origin: str
) -> dict[str, Any]:
    """key id -> [public key, added at, revoked at, identity], from the key records
    in order (identity None: a log key). Key records must be signed by a log key;
    an author key's proof must verify."""
    keys: dict[str, Any] = {}
    for seq in sorted(records):
        entry = records[seq][1]["entry"]
        if entry["kind"] not in ("key.added", "key.revoked"):
            continue
        signer = keys.get(entry["sig"]["key"])
        if seq > 0 and (
            signer is None or signer[3] is not None or not valid(signer, seq)
        ):
            raise BundleError(
                f"record {seq}: a key record not signed by a log key valid at seq {seq}"
            )
        body = entry["body"]
        if entry["kind"] == "key.revoked":  # once, of a key added before
            if keys.get(body["key"], [None, 0, 0])[2] is not None:
                raise BundleError(f"record {seq}: revokes a key not added or revoked")
            keys[body["key"]][2] = seq
            continue
        if body["key"] in keys:  # never again, so never valid again once revoked
            raise BundleError(f"record {seq}: adds a key the ledger added before")
        public = _b64(body["public_key"])
        if hashlib.sha256(public).hexdigest() != body["key"]:
            raise BundleError(f"record {seq}: the key id is not its key's hash")
        if not is_prime_order_point(public):
            raise BundleError(f"record {seq}: the key is not a valid Ed25519 key")
        identity = body.get("identity")
        if identity is not None:
            if seq == 0 or not isinstance(identity, str) or "proof" not in body:
                raise BundleError(f"record {seq}: an author key without a valid proof")
            message = "mltrail-key-register/1\n" + "\n".join(
                (origin, identity, body["key"], "")
            )
            proof = _b64(body["proof"])
            _verify(public, proof, message.encode(), f"record {seq}: the key's proof")
        keys[body["key"]] = [public, -1 if seq == 0 else seq, None, identity]
    if 0 not in records:
        raise BundleError("record 0 (the ledger's genesis key) is missing")
    return keys


def valid(key: list[Any], seq: int) -> bool:
    """Whether ``key`` ([public key, added at, revoked at, identity]) may sign at ``seq``."""
    return key[1] < seq and (key[2] is None or seq < key[2])


def check_record(
    seq: int, data: bytes, record: dict[str, Any], ctx: dict[str, Any]
) -> None:
    proof = [bytes.fromhex(h) for h in ctx["proofs"][seq]]
    if inclusion_root(seq, ctx["size"], leaf_hash(data), proof) != ctx["root"]:
        raise BundleError(
            f"record {seq}: not proven in the checkpoint (inclusion proof)"
        )
    entry = record["entry"]
    sig = entry["sig"]
    key = ctx["keys"].get(sig["key"])
    if key is None or not valid(key, seq):
        raise BundleError(f"record {seq}: signed by a key not valid at seq {seq}")
    public, _, _, identity = key
    if identity is not None and entry["kind"] in AUTHOR_FORBIDDEN:
        raise BundleError(f"record {seq}: an author key signed a {entry['kind']}")
    if identity is not None and entry.get("actor", {}).get("user") != identity:
        raise BundleError(
            f"record {seq}: author key of {identity!r} signed another user's entry"
        )
    unsigned = canonical({k: v for k, v in entry.items() if k != "sig"}).encode("utf-8")
    _verify(public, _b64(sig["value"]), unsigned, f"record {seq}: the signature")
    before = ctx["records"].get(seq - 1)
    if seq == 0 and record["prev"] != ZERO:
        raise BundleError("record 0: prev is not zeros")
    if before and hashlib.sha256(before[0]).hexdigest() != record["prev"]:
        raise BundleError(f"record {seq}: prev is not the hash of record {seq - 1}")


def check_blobs(bundle: dict[str, Any], records: dict[int, Any]) -> dict[str, bytes]:
    """Every referenced blob is listed once, and every carried blob's SHA-256;
    returns the carried blobs' bytes by digest."""
    wanted = set()
    for _, record in records.values():
        wanted |= set(blob_refs(record["entry"]["body"]))
    purged = {
        r["entry"]["body"]["digest"]
        for _, r in records.values()
        if r["entry"]["kind"] == "blob.purged"
    }
    some = any(blob["data"] is not None for blob in bundle["blobs"])
    listed = [blob["digest"] for blob in bundle["blobs"]]
    for digest in sorted(wanted - set(listed)):  # left out, not even by hash
        raise BundleError(f"blob {digest} is referenced by a record but not listed")
    if len(set(listed)) != len(listed):
        raise BundleError("a blob is listed twice")
    carried = {}
    for blob in bundle["blobs"]:
        if blob["digest"] not in wanted:
            raise BundleError(f"blob {blob['digest']} is referenced by no record")
        if blob["data"] is None and some and blob["digest"] not in purged:
            raise BundleError(f"blob {blob['digest']}: its content is missing")
        if blob["data"] is not None:
            data = _b64(blob["data"])
            if "sha256:" + hashlib.sha256(data).hexdigest() != blob["digest"]:
                raise BundleError(
                    f"blob {blob['digest']}: content does not match its hash"
                )
            carried[blob["digest"]] = data
    return carried


SUBJECT_MEMBERS = {"model": {"model"}, "data": {"dataset", "model"},
                   "file": {"sha256", "model"}}  # fmt: skip


def check_subject(node: str, records: dict[int, Any], blobs: dict[str, bytes]) -> None:
    """A signed record names the subject: its run, source, or a body member
    ``model`` / ``dataset`` / ``sha256`` (a file also: a line of a carried
    manifest, passed as ``blobs``)."""
    kind, _, ident = node.partition(":")
    entries = [record["entry"] for _, record in records.values()]
    if kind == "run":
        found = any(ident and e.get("run") == ident for e in entries)
    elif kind == "source":
        found = any(e["kind"].startswith("source.") and e["body"].get("name") == ident
                    for e in entries)  # fmt: skip
    else:
        members = SUBJECT_MEMBERS.get(kind, set())
        found = any(ident in named(e["body"], members) for e in entries)
        lines = [line for d in blobs.values() for line in d.splitlines()]
        found = found or (
            kind == "file"
            and any(ident.encode() in line and listed(line) == ident for line in lines)
        )
    if not found:
        raise BundleError(f"no record of the bundle is of its subject {node!r}")


def listed(line: bytes) -> Any:
    """The ``sha256`` a manifest line (a JSON object) gives, or None."""
    try:
        item = parse(line)
    except BundleError:
        return None
    return item.get("sha256") if isinstance(item, dict) else None


def named(value: Any, members: set[str]) -> list[str]:
    """The strings ``value`` holds under a key in ``members``, at any depth."""
    if isinstance(value, list):
        return [n for v in value for n in named(v, members)]
    if not isinstance(value, dict):
        return []
    return [
        n
        for k, v in value.items()
        for n in ([v] if k in members and isinstance(v, str) else named(v, members))
    ]


def blob_refs(value: Any) -> list[str]:
    if isinstance(value, list):
        return [d for v in value for d in blob_refs(v)]
    if not isinstance(value, dict):
        return []
    found = [d for v in value.values() for d in blob_refs(v)]
    if isinstance(value.get("blob"), str) and type(value.get("size")) is int:
        found.append(value["blob"])
    return found


def manifests(value: Any) -> list[str]:
    """The digests of the blobs ``value`` gives as a ``manifest`` (a dataset's
    file list), at any depth: only these name files, not logs or attachments."""
    if isinstance(value, list):
        return [d for v in value for d in manifests(v)]
    if not isinstance(value, dict):
        return []
    found = [d for v in value.values() for d in manifests(v)]
    ref = value.get("manifest")
    if isinstance(ref, dict) and blob_refs(ref):
        found.append(ref["blob"])
    return found


# -- gates (as ``mltrail verify-bundle``'s gate-not-met / gate-lowered) ------------

COLUMN = {"model": "model", "file": "sha256", "data": "dataset"}


def _text(value: Any) -> str | None:
    """A value as the index stores it in a text column."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _node(body: dict[str, Any]) -> str:
    return f"{body.get('model_type', 'model')}:{body.get('model')}"


def _shas(data: bytes | None) -> list[str]:
    shas = []
    for line in (data or b"").splitlines():
        try:
            sha = json.loads(line).get("sha256")
        except (ValueError, AttributeError):
            continue
        if isinstance(sha, str):
            shas.append(sha)
    return shas


def step_links(facts: dict, body: dict[str, Any], run: Any) -> Any:
    """The links of a ``run.step`` that make rows, one at a time: a DVC stage's
    with a hash; another step's unless its run has a row of it already."""
    dvc = isinstance(body.get("dvc"), dict)
    for direction, key in (("in", "inputs"), ("out", "outputs")):
        for link in body.get(key) or []:
            if not isinstance(link, dict):
                continue
            if dvc:
                if link.get("sha256") or link.get("dataset"):
                    yield direction, link
                continue
            dataset, sha = _text(link.get("dataset")), _text(link.get("sha256"))
            if not any(
                d["run"] == run and d["direction"] == direction
                and ((d["dataset"] is not None and d["dataset"] == dataset)
                     or (d["sha256"] is not None and d["sha256"] == sha))
                for d in facts["data"]
            ):  # fmt: skip
                yield direction, link


def decision_or_gate(facts: dict, seq: int, entry: dict[str, Any]) -> None:
    """A ``stage.gated`` (a gate row) or ``model.approved`` (a decision row)."""
    kind, body = entry["kind"], entry["body"]
    user = _text(entry["actor"].get("user"))
    if kind == "stage.gated":
        required = body.get("require_approval")
        if isinstance(required, int) and isinstance(body.get("stage"), str):
            facts["gates"].append((seq, body["stage"], int(required), user,
                                   _text(body.get("note"))))  # fmt: skip
    elif kind == "model.approved":
        facts["decisions"].append({
            "seq": seq, "node": _node(body), "stage": _text(body.get("stage")),
            "decision": _text(body.get("decision")), "user": user,
        })  # fmt: skip


def gate_facts(entries: list[tuple[int, Any]], blobs: dict[str, bytes]) -> dict:
    """The rows ``mltrail``'s index would hold for the carried records."""
    facts: dict[str, Any] = {"starters": {}, "data": [], "models": [], "files": {},
                             "unread": set(), "gates": [], "decisions": []}  # fmt: skip

    def data(seq: int, entry: Any, direction: str, body: Any) -> None:
        ref = body.get("manifest")
        blob = ref.get("blob") if isinstance(ref, dict) else None
        manifest = blob if isinstance(blob, str) else None
        sha = body.get("sha256")
        if sha is None and manifest and body.get("files") == 1:
            first = _shas((blobs.get(manifest) or b"").split(b"\n", 1)[0])
            sha = first[0] if first else None
        dataset = _text(body.get("dataset"))
        facts["data"].append({
            "seq": seq, "run": entry.get("run"), "direction": direction,
            "dataset": dataset, "sha256": _text(sha), "model": _text(body.get("model")),
            "user": _text(entry["actor"].get("user")),
        })  # fmt: skip
        if (
            direction == "out"
            and manifest
            and dataset
            and dataset not in facts["files"]
        ):
            if manifest not in blobs:
                facts["unread"].add(dataset)
            facts["files"][dataset] = set(_shas(blobs.get(manifest)))

    for seq, entry in entries:
        kind, body, run = entry["kind"], entry["body"], entry.get("run")
        user = _text(entry["actor"].get("user"))
        if kind == "run.started" and isinstance(run, str):
            facts["starters"].setdefault(run, user)
        elif kind == "run.data":
            data(seq, entry, "in", body)
        elif kind == "run.artifact" and body.get("exists") is not False:
            data(seq, entry, "out", body)
            if body.get("model"):
                facts["models"].append((seq, run, _text(body["model"]), "output"))
        elif kind == "run.step":
            for direction, link in step_links(facts, body, run):
                data(seq, entry, direction, link)
        elif kind == "run.finetune":
            for part, role in (("model", "output"), ("adapter", "adapter")):
                value = body.get(part)
                if isinstance(value, dict) and value.get("model"):
                    facts["models"].append((seq, run, _text(value["model"]), role))
        else:
            decision_or_gate(facts, seq, entry)
    return facts


def trainers(facts: dict, node: str, before: int) -> set[str]:
    """Who started a run that wrote ``node`` before seq ``before``, or signed
    such an output record (a weights file of a written folder: the folder's)."""
    kind, _, ident = node.partition(":")
    column = COLUMN.get(kind)
    if column is None:
        return set()
    inner = (
        {d for d, s in facts["files"].items() if ident in s}
        if kind == "file"
        else set()
    )
    outs = [d for d in facts["data"] if d["direction"] == "out" and d["seq"] < before
            and (d[column] == ident or d["dataset"] in inner)]  # fmt: skip
    runs = {d["run"] for d in outs} | {
        run for seq, run, model, role in facts["models"]
        if kind == "model" and model == ident and seq < before
    }  # fmt: skip
    users = {facts["starters"][r] for r in runs if r in facts["starters"]}
    users |= {d["user"] for d in outs}
    return {str(u) for u in users if u is not None}


def same_weights(facts: dict, node: str) -> set[str]:
    """The other ids of ``node``'s weights: folders holding a file, fingerprints."""
    kind, _, ident = node.partition(":")
    rows, files = facts["data"], facts["files"]
    if kind == "file":
        folders = {d for d, s in files.items() if ident in s}
        names = {f"data:{d}" for d in folders} | {
            f"model:{d['model']}" for d in rows
            if d["model"] is not None and d["dataset"] in folders
        }  # fmt: skip
    elif kind == "data":
        prints = {d["model"] for d in rows
                  if d["dataset"] == ident and d["model"] is not None}  # fmt: skip
        names = {f"file:{s}" for s in files.get(ident, set())}
        names |= {f"model:{m}" for m in prints} | {
            f"data:{d['dataset']}" for d in rows
            if d["dataset"] is not None and d["model"] in prints
        }  # fmt: skip
    elif kind == "model":
        folders = {d["dataset"] for d in rows
                   if d["model"] == ident and d["dataset"] is not None}  # fmt: skip
        names = {f"data:{d}" for d in folders}
        names |= {f"file:{s}" for d in folders for s in files.get(d, set())}
    else:
        return set()
    return names - {node}


def gate_at(facts: dict, node: str, stage: str, before: int) -> dict[str, Any]:
    """The gate of ``stage`` for ``node`` as the records before seq ``before`` stand."""
    made_by = trainers(facts, node, before)
    standing: dict[Any, dict[str, Any]] = {}
    others, newest = same_weights(facts, node), {}
    for d in facts["decisions"]:
        if d["stage"] != stage or d["seq"] >= before:
            continue
        if d["node"] == node:
            counts = d["decision"] == "approve" and d["user"] not in made_by
            standing[d["user"]] = d | {"counts": counts}
        elif d["node"] in others:
            newest[d["user"]] = d | {"counts": False}
    for user, d in newest.items():
        own = standing.get(user)
        if d["decision"] == "reject" and (own is None or own["seq"] < d["seq"]):
            standing[user] = d
    gates = [g for g in facts["gates"] if g[1] == stage and g[0] < before][-2:]
    required = gates[-1][2] if gates else 0
    approvers = sorted(str(u) for u, d in standing.items() if d["counts"])
    rejected = sorted(str(u) for u, d in standing.items() if d["decision"] == "reject")
    lowered = None
    if len(gates) == 2 and gates[1][2] < gates[0][2]:
        lowered = gates[1] + (gates[0][2],)
    met = not rejected and len(approvers) >= required and (required == 0 or made_by)
    return {"required": required, "approvers": approvers, "rejected_by": rejected,
            "trainers": made_by, "met": bool(met), "lowered": lowered}  # fmt: skip


def not_met(what: str, gate: dict[str, Any], unread: set[str]) -> str:
    """The warning of a promotion short of its gate (or, when only a trainer is
    missing and a folder's manifest is carried by hash only, not judged)."""
    have = f"{len(gate['approvers'])} of {gate['required']} approval(s)"
    if (
        not gate["rejected_by"]
        and len(gate["approvers"]) >= gate["required"]
        and unread
    ):
        return (
            f"gate-unjudged: {what}: its gate cannot be judged from this bundle: "
            f"no recorded trainer, and {len(unread)} folder manifest(s) carried by "
            f"hash only ({have} counted otherwise)"
        )
    why = [have + (f" ({', '.join(gate['approvers'])})" if gate["approvers"] else "")]
    if gate["rejected_by"]:
        why.append(f"rejected by {', '.join(gate['rejected_by'])}")
    if gate["required"] and not gate["trainers"]:
        why.append("no recorded trainer")
    return (
        f"gate-not-met: {what} did NOT MEET its gate as the carried records before "
        f"it stand: {'; '.join(why)} (a bundle is not proven complete: a decision "
        "it does not carry is not counted"
        + (f"; {len(unread)} folder manifest(s) carried by hash only" if unread else "")
        + ")"
    )


def gate_warnings(records: dict[int, Any], blobs: dict[str, bytes]) -> list[str]:
    """A warning for each ``enter`` promotion that did not meet its stage's gate
    as the carried records before it stand, or came under a gate just lowered.
    Judged from what the bundle carries: a bundle is not proven complete."""
    entries = [(seq, r["entry"]) for seq, (_, r) in sorted(records.items())]
    facts = gate_facts(entries, blobs)
    found = []
    for seq, entry in entries:
        body = entry["body"]
        stage = body.get("stage")
        if entry["kind"] != "model.promoted" or not isinstance(stage, str):
            continue
        if body.get("action", "enter") != "enter":
            continue
        node = _node(body)
        gate = gate_at(facts, node, stage, seq)
        what = f"record {seq}: the promotion of {node} to {stage}"
        if not gate["met"]:
            found.append(
                not_met(
                    what, gate, facts["unread"] if node.startswith("file:") else set()
                )
            )
        if gate["lowered"]:
            at, _, low, user, note, high = gate["lowered"]
            found.append(
                f"gate-lowered: {what} came under a gate lowered from {high} to {low} "
                f"at seq {at} by {user or '?'}: {note or '(no note)'}"
            )
    return found


def check_kept(bundle: dict[str, Any], text: str, keys: dict[str, Any]) -> int:
    """The size of a checkpoint the verifier kept, once the bundle's checkpoint is
    shown to extend it: signed by a key of the bundle valid at its size, and at
    the bundle's size the same root, below it a carried consistency proof (an
    evidence group of that size and root, signed) from its root to the bundle's."""
    origin = bundle["origin"]
    size, root = checkpoint_of(bundle["checkpoint"], origin, {})
    old = checkpoint_of(text, origin, {})[0]
    if old > size:
        raise BundleError(
            f"the bundle (size {size}) is older than the kept checkpoint (size {old})"
        )
    if old == 0:
        raise BundleError("the kept checkpoint is of the empty tree")
    old, old_root = checkpoint_of(text, origin, keys)
    for group in bundle["evidence"] if old < size else [{"consistency": []}]:
        if old < size and checkpoint_of(group["checkpoint"], origin, {})[0] != old:
            continue
        if (
            old < size
            and checkpoint_of(group["checkpoint"], origin, keys)[1] != old_root
        ):
            continue  # the carried copy is signed, and says the kept root
        proof = [bytes.fromhex(h) for h in group["consistency"]]
        if all(len(h) == 32 for h in proof) and consistent(
            old, size, old_root, root, proof
        ):
            return old
    if old == size:
        raise BundleError(
            f"the kept checkpoint of size {size} has another root than the bundle's: "
            "the ledger was forked or rewritten"
        )
    raise BundleError(
        f"the bundle carries no consistency proof from the kept checkpoint (size "
        f"{old}) to its own (size {size}): the ledger was forked or rewritten, or "
        "the bundle was exported without --consistent-with"
    )


def verify(path: Path, kept: tuple[str, ...] = ()) -> str:
    """Check the bundle at ``path`` (and that it extends each checkpoint text in
    ``kept``); return a one-line summary or raise BundleError."""
    raw = path.read_bytes()
    bundle = parse(raw)
    if bundle.get("format") != "mltrail-bundle/1":
        raise BundleError("not an mltrail-bundle/1 file")
    records = read_records(bundle)
    keys = key_history(records, bundle["origin"])
    node = bundle["subject"]["node"]
    origin = bundle["origin"]
    size, root = checkpoint_of(bundle["checkpoint"], origin, {})
    ctx = {
        "keys": keys,
        "records": records,
        "size": size,
        "root": root,
        "proofs": {item["seq"]: item["inclusion"] for item in bundle["records"]},
    }
    for seq, (data, record) in sorted(records.items()):
        check_record(seq, data, record, ctx)
    checkpoint_of(bundle["checkpoint"], origin, keys)
    blobs = check_blobs(bundle, records)
    lists = {d for _, r in records.values() for d in manifests(r["entry"]["body"])}
    check_subject(node, records, {d: b for d, b in blobs.items() if d in lists})
    extends = "".join(
        f"; extends the kept checkpoint of size {check_kept(bundle, text, keys)}"
        for text in kept
    )
    digest = hashlib.sha256(canonical(bundle).encode("utf-8")).hexdigest()
    genesis = records[0][1]["entry"]["body"]["key"]
    warnings = "".join(f"\nwarning: {w}" for w in gate_warnings(records, blobs))
    return (
        f"intact: {len(records)} records of {origin} ({node}) in its checkpoint of "
        f"size {size}, "
        f"{len(blobs)} blob(s) checked; genesis key {genesis} (from the bundle)"
        f"{extends}; digest sha256:{digest}{warnings}"
    )


def main(argv: list[str]) -> int:
    args, kept = list(argv[1:]), []
    while "--trust-checkpoint" in args:
        at = args.index("--trust-checkpoint")
        if at + 1 >= len(args):
            print("--trust-checkpoint needs a FILE", file=sys.stderr)
            return 2
        kept.append(Path(args.pop(at + 1)).read_text(encoding="utf-8"))
        args.pop(at)
    path = Path(args[0]) if args else EXAMPLE
    try:
        print(verify(path, tuple(kept)))
    except BundleError as e:
        print(f"NOT intact: {e}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
        print(
            f"NOT intact: the bundle is malformed ({type(e).__name__}: {e})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
