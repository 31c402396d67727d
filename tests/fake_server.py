"""An in-memory twin of the mltrail server's API v1, for client tests.

``FakeServer(ledger, tokens)`` answers ``httpx2`` requests (through
``httpx2.MockTransport(server.handle)``) over a real ``Ledger``: the same
routes, shapes, roles and idempotency rule as docs/server.md, no process.
The real server is tested against the client in tests/integration; this twin
lets unit tests make the server lie (fork, shrink, fail) on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx2

from mltrail.core.entry import Entry
from mltrail.core.signing import decode_b64
from mltrail.errors import MltrailError
from mltrail.ledger.ledger import Ledger

WRITE_ROLES = {"writer", "approver", "admin"}


@dataclass
class FakeServer:
    """One ledger served at ``/api/v1/ledgers/<name>``."""

    ledger: Ledger
    name: str
    tokens: dict[str, tuple[str, str]]
    """token -> (identity, role)."""
    requests: list[httpx2.Request] = field(default_factory=list)
    fail_next: int = 0
    """Answer this many next requests with 503 (after doing the work for POSTs:
    the answer was lost, as when a connection drops)."""
    idempotency: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    appends: int = 0

    def url(self) -> str:
        return f"http://fake.test/ledgers/{self.name}"

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        auth = request.headers.get("authorization", "")
        who = self.tokens.get(auth.removeprefix("Bearer "))
        if who is None:
            return _error(401, "unknown token")
        prefix = f"/api/v1/ledgers/{self.name}"
        if not request.url.path.startswith(prefix):
            return _error(403, "the token belongs to another ledger")
        path = request.url.path[len(prefix) :]
        try:
            response = self._route(request, path, who)
        except MltrailError as e:
            return _error(422, str(e))
        if self.fail_next:
            self.fail_next -= 1
            return _error(503, "try again")
        return response

    def _route(
        self, request: httpx2.Request, path: str, who: tuple[str, str]
    ) -> httpx2.Response:
        store, q = self.ledger.store, request.url.params
        method = request.method
        if method == "GET" and path == "":
            info = {
                "name": self.name,
                "origin": self.ledger.origin,
                "size": store.head().size,
                "genesis_key": self.ledger.trusted_key,
                "log_keys": [self.ledger.signer.key_id],
                "identity": who[0],
                "role": who[1],
            }
            return _ok(info)
        if method == "GET" and path == "/head":
            head = store.head()
            latest = store.latest_checkpoint()
            return _ok(
                {
                    "size": head.size,
                    "last_hash": head.last_hash.hex(),
                    "last_time": head.last_time,
                    "key_epoch": head.key_epoch,
                    "floor_time": None,
                    "frontier": [h.hex() for h in head.frontier],
                    "checkpoint": latest.text if latest else None,
                }
            )
        if method == "GET" and path == "/records":
            return self._records(q)
        if method == "GET" and (m := re.fullmatch(r"/nodes/(\d+)/(\d+)", path)):
            found = store._node(int(m[1]), int(m[2]))
            return (
                _error(404, "no node") if found is None else _ok({"hash": found.hex()})
            )
        if method == "GET" and path == "/nodes":
            nodes = store.node_range(int(q["level"]), int(q["start"]), int(q["stop"]))
            return _ok({"nodes": {str(i): h.hex() for i, h in nodes.items()}})
        if method == "GET" and path == "/checkpoints":
            cps = [{"size": c.size, "text": c.text} for c in store.checkpoints()]
            return _ok({"checkpoints": cps})
        if method == "GET" and path == "/checkpoints/latest":
            c = store.latest_checkpoint()
            return (
                _error(404, "none")
                if c is None
                else _ok({"size": c.size, "text": c.text})
            )
        if method == "GET" and path == "/time-floor":
            floor = store.time_floor()
            return _ok(
                {"time": None} if floor is None else {"time": floor[0], "seq": floor[1]}
            )
        if method == "GET" and path == "/meta":
            return _ok(store.meta())
        if method == "GET" and path == "/evidence":
            return _ok([])
        if method == "GET" and path == "/purges":
            return _ok([])
        if path.startswith("/blobs/"):
            return self._blob(request, path.removeprefix("/blobs/"), who)
        if method == "GET" and path == "/proofs/inclusion":
            p = self.ledger.prove_inclusion(int(q["seq"]), int(q["size"]))
            return _ok(
                {
                    "index": p.index,
                    "size": p.size,
                    "hashes": [h.hex() for h in p.hashes],
                }
            )
        if method == "GET" and path == "/proofs/consistency":
            p = self.ledger.prove_consistency(int(q["old"]), int(q["new"]))
            return _ok(
                {
                    "size1": p.size1,
                    "size2": p.size2,
                    "hashes": [h.hex() for h in p.hashes],
                }
            )
        if method == "GET" and path == "/keys":
            ring = self.ledger.keys()
            keys = [
                {"key": k, "public_key": base64.b64encode(s.public_key).decode(),
                 "identity": s.identity, "added_seq": s.added_seq,
                 "revoked_seq": s.revoked_seq}
                for k, s in ring.keys.items()
            ]  # fmt: skip
            return _ok({"keys": keys})
        if method == "POST" and path == "/keys":
            if who[1] not in WRITE_ROLES:
                return _error(403, "role may not register keys")
            body = json.loads(request.content)
            record = self.ledger.register_key(
                decode_b64(body["public_key"]),
                body["identity"],
                decode_b64(body["proof"]),
            )
            return _ok({"seq": record.seq, "key": record.entry.body["key"]}, 201)
        if method == "POST" and path == "/entries":
            return self._entries(request, who)
        return _error(404, f"no route {method} {path}")

    def _records(self, q: Any) -> httpx2.Response:
        start, limit = int(q.get("start", 0)), int(q.get("limit", 1000))
        if q.get("kinds"):
            rows = [
                r
                for r in self.ledger.store.rows_of_kinds(q["kinds"].split(","))
                if r.seq >= start
            ]
        else:
            stop = int(q["stop"]) if q.get("stop") else None
            rows = list(self.ledger.store.rows(start, stop))
        page, more = rows[:limit], rows[limit:]
        records = [
            {
                "seq": r.seq,
                "hash": r.hash.hex(),
                "data": base64.b64encode(r.data).decode(),
            }
            for r in page
        ]
        return _ok({"records": records, "next": more[0].seq if more else None})

    def _blob(
        self, request: httpx2.Request, digest: str, who: tuple[str, str]
    ) -> httpx2.Response:
        store = self.ledger.store
        if request.method == "PUT":
            if who[1] not in WRITE_ROLES:
                return _error(403, "role may not upload")
            if "sha256:" + hashlib.sha256(request.content).hexdigest() != digest:
                return _error(400, "digest differs")
            return _ok({"stored": store.put_blob(digest, request.content)}, 201)
        data = store.get_blob(digest)
        if data is None:
            return _error(404, "no blob")
        return httpx2.Response(200, content=data)

    def _entries(
        self, request: httpx2.Request, who: tuple[str, str]
    ) -> httpx2.Response:
        if who[1] not in WRITE_ROLES:
            return _error(403, f"a {who[1]} token may not append")
        key = request.headers.get("idempotency-key")
        digest = hashlib.sha256(request.content).hexdigest()
        if key and key in self.idempotency:
            seen, answer = self.idempotency[key]
            return _ok(answer, 201) if seen == digest else _error(409, "key reused")
        entries = [Entry.from_dict(e) for e in json.loads(request.content)["entries"]]
        if any(e.actor.get("user") != who[0] for e in entries):
            return _error(403, "actor.user must be the token's name")
        records = self.ledger.append_entries(entries)
        self.appends += 1
        answer = {
            "records": [
                {"seq": r.seq, "prev": r.prev, "hash": r.compute_hash().hex()}
                for r in records
            ],
            "size": self.ledger.head().size,
            "checkpoint": self.ledger.store.latest_checkpoint().text,
        }
        if key:
            self.idempotency[key] = (digest, answer)
        return _ok(answer, 201)


def _ok(value: Any, status: int = 200) -> httpx2.Response:
    return httpx2.Response(status, json=value)


def _error(status: int, message: str) -> httpx2.Response:
    return httpx2.Response(
        status, json={"error": {"code": str(status), "message": message}}
    )
