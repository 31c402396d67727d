"""Turning records into index rows, one handler per entry kind.

Handlers read the entry as the store holds it (plain JSON) and never fail on a
body they do not understand: the ledger is validated on append and by
``mltrail verify``; the index only has to be a faithful, rebuildable view.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mltrail.index.tables import DESCRIBED_FIELDS, param_value

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable, Mapping

__all__ = ["DESCRIBED_FIELDS", "ingest_entry", "param_value", "parse_time"]

_MAX_EXPLODE = 2_000_000  # files of one output manifest kept for content links


def parse_time(value: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (0.0 when unreadable)."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return 0.0


def _digest(ref: Any) -> str | None:
    if isinstance(ref, dict) and isinstance(ref.get("blob"), str):
        return str(ref["blob"])
    return None


class _Ingest:
    """The handlers, bound to one cursor and one blob reader, for one record.

    ``user`` is the record's ``actor.user`` as ``records.user`` and ``runs.user``
    hold it: the signer of each ``params`` and ``data`` row. Their ``own`` says
    whether it is the run's starter, by :mod:`mltrail.core.run_owner`'s rule
    (a user that is no string is ``""``), which ``mltrail runs`` filters require.
    """

    def __init__(
        self,
        cur: sqlite3.Cursor,
        get_blob: Callable[[str], bytes | None],
        links: bool = True,
        user: Any = None,
    ) -> None:
        self.cur = cur
        self.get_blob = get_blob
        self.links = links
        self.user = user
        self._own: int | None = None

    def own(self, run: str) -> int:
        """1 when this record's signer started ``run`` (0 before its start)."""
        if self._own is None:
            row = self.cur.execute(
                "SELECT user FROM runs WHERE id = ?", (run,)
            ).fetchone()
            self._own = int(row is not None and _who(row[0]) == _who(self.user))
        return self._own

    def run_started(self, seq: int, entry: Mapping[str, Any]) -> None:
        body, actor = entry["body"], entry.get("actor") or {}
        self.cur.execute(
            "INSERT OR IGNORE INTO runs (id, seq, name, source, status, started, "
            "started_ts, user, claimed_user, host, command, program, cwd) "
            "VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry["run"], seq, body.get("name"), _text(body.get("source")),
                entry["time"], parse_time(entry["time"]), actor.get("user"),
                _text(actor.get("claimed_user")), actor.get("host"),
                json.dumps(body.get("command") or []), body.get("program"),
                body.get("cwd"),
            ),
        )  # fmt: skip
        if self.cur.rowcount == 1:  # this run's start: its records before it
            self._own_before_start(entry["run"], seq, actor.get("user"))

    def _own_before_start(self, run: str, seq: int, owner: Any) -> None:
        """Mark the run's rows signed before its start (a copied or pushed ledger
        may hold them) whose signer is its starter."""
        if not self.cur.execute(
            "SELECT 1 FROM records WHERE run = ? AND seq < ? LIMIT 1", (run, seq)
        ).fetchone():
            return  # the usual case: nothing of the run came before its start
        for table in ("params", "data"):
            self.cur.execute(
                f"UPDATE {table} SET own = 1 WHERE run = ? AND "  # noqa: S608
                "(CASE WHEN typeof(user) = 'text' THEN user ELSE '' END) = ?",
                (run, _who(owner)),
            )

    def run_ended(self, seq: int, entry: Mapping[str, Any]) -> None:
        """The run's end: its first, except that the starter's own end replaces
        one another user signed (``ended_by`` names that user while it stands)."""
        body, own = entry["body"], self.own(entry["run"])
        self.cur.execute(
            "UPDATE runs SET status = ?, ended = ?, ended_ts = ?, duration_s = ?, "
            "exit_code = ?, ended_by = ? WHERE id = ? AND (ended IS NULL OR "
            "(ended_by IS NOT NULL AND ?))",
            (
                str(body.get("status", "ended")), entry["time"],
                parse_time(entry["time"]), body.get("duration_s"),
                body.get("exit_code"), None if own else _who(self.user), entry["run"],
                own,
            ),
        )  # fmt: skip

    def run_code(self, seq: int, entry: Mapping[str, Any]) -> None:
        body = entry["body"]
        self.cur.execute(
            "UPDATE runs SET git_commit = ?, git_branch = ?, git_dirty = ? "
            "WHERE id = ? AND git_commit IS NULL",
            (
                body.get("commit"), body.get("branch"),
                None if body.get("dirty") is None else int(bool(body["dirty"])),
                entry["run"],
            ),
        )  # fmt: skip

    def run_params(self, seq: int, entry: Mapping[str, Any]) -> None:
        body = entry["body"]
        params = body.get("params") or {}
        where = (
            body.get("file", {}).get("path")
            if isinstance(body.get("file"), dict)
            else None
        )
        source, user = where or _text(body.get("source")), self.user
        own = self.own(entry["run"]) if params else 0
        self.cur.executemany(
            "INSERT INTO params (run, seq, key, value, source, user, own) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (entry["run"], seq, str(k), param_value(v), source, user, own)
                for k, v in params.items()
            ],
        )

    def run_data(self, seq: int, entry: Mapping[str, Any]) -> None:
        body = entry["body"]
        self._data(entry["run"], seq, "in", body.get("role"), body)

    def run_artifact(self, seq: int, entry: Mapping[str, Any]) -> None:
        body = entry["body"]
        if body.get("exists") is False:
            return
        self._data(entry["run"], seq, "out", body.get("name"), body)
        if body.get("model"):
            self._model(entry["run"], seq, "output", body, body["model"])

    def run_step(self, seq: int, entry: Mapping[str, Any]) -> None:
        body, run = entry["body"], entry["run"]
        if isinstance(body.get("dvc"), dict):  # one stage of a DVC pipeline run
            self._stage_links(run, seq, body)
            return
        self.cur.execute(
            "UPDATE runs SET step = coalesce(step, ?) WHERE id = ?",
            (body.get("name"), run),
        )
        for direction, links in (
            ("in", body.get("inputs")),
            ("out", body.get("outputs")),
        ):
            for link in links or []:
                if isinstance(link, dict) and not self._has(run, direction, link):
                    self._data(run, seq, direction, f"step:{body.get('name')}", link)

    def _stage_links(self, run: str, seq: int, body: Mapping[str, Any]) -> None:
        """A DVC stage's files, under role ``stage:<name>`` so lineage can follow
        stage to stage within the one run (see ``mltrail.audit.trace``)."""
        role = f"stage:{body.get('name')}"
        for direction, links in (
            ("in", body.get("inputs")),
            ("out", body.get("outputs")),
        ):
            for link in links or []:
                if isinstance(link, dict) and (
                    link.get("sha256") or link.get("dataset")
                ):
                    self._data(run, seq, direction, role, link)

    def run_finetune(self, seq: int, entry: Mapping[str, Any]) -> None:
        body, run = entry["body"], entry["run"]
        base = body.get("base") if isinstance(body.get("base"), dict) else None
        base_id = base.get("model") if base else None
        if base and base_id:
            self._model(run, seq, "base", base, base_id)
        for role in ("model", "adapter"):
            part = body.get(role)
            if isinstance(part, dict) and part.get("model"):
                name = "output" if role == "model" else "adapter"
                self._model(run, seq, name, part, part["model"], base=base_id)

    def model_promoted(self, seq: int, entry: Mapping[str, Any]) -> None:
        body = entry["body"]
        self.cur.execute(
            "INSERT INTO promotions (seq, model, run, stage, action, time, ts, user, note) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq, _node(body), body.get("run"), body.get("stage"),
                body.get("action", "enter"), entry["time"], parse_time(entry["time"]),
                (entry.get("actor") or {}).get("user"), body.get("note"),
            ),
        )  # fmt: skip

    def ledger_pushed(self, seq: int, entry: Mapping[str, Any]) -> None:
        body = entry["body"]
        count = body.get("count")
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            self.cur.execute(
                "INSERT INTO pushed (seq, time, first, last, origin) "
                "VALUES (?, ?, ?, ?, ?)",
                (seq, entry["time"], seq + 1, seq + count, body.get("origin")),
            )

    def source_registered(self, seq: int, entry: Mapping[str, Any]) -> None:
        body = entry["body"]
        self.cur.execute(
            "INSERT OR REPLACE INTO sources (name, seq, location, kind, fingerprint, "
            "checked_seq, checked) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                body.get("name"), seq, body.get("location"), body.get("type"),
                body.get("fingerprint"), seq, entry["time"],
            ),
        )  # fmt: skip
        self._print(body)

    def source_checked(self, seq: int, entry: Mapping[str, Any]) -> None:
        body = entry["body"]
        if _failed_check(body):  # no fingerprint: the one to compare with stays
            self.cur.execute(
                "UPDATE sources SET failing_seq = COALESCE(failing_seq, ?), "
                "failing = COALESCE(failing, ?), failed_seq = ?, error = ? "
                "WHERE name = ?",
                (seq, entry["time"], seq, _failure(body), body.get("name")),
            )
            return
        self.cur.execute(
            "UPDATE sources SET fingerprint = ?, checked_seq = ?, checked = ?, "
            "failing_seq = NULL, failing = NULL, failed_seq = NULL, error = NULL "
            "WHERE name = ?",
            (body.get("fingerprint"), seq, entry["time"], body.get("name")),
        )
        self._print(body)

    def _print(self, body: Mapping[str, Any]) -> None:
        if body.get("name") and body.get("fingerprint"):
            prints = {body["fingerprint"], *self._one_file_sha(body)}
            self.cur.executemany(
                "INSERT OR IGNORE INTO source_prints (name, fingerprint) VALUES (?, ?)",
                [(body["name"], p) for p in sorted(prints)],
            )

    def _one_file_sha(self, body: Mapping[str, Any]) -> list[str]:
        """The content of a one-file source, from its manifest: a run that read
        those bytes under another name (a renamed copy) read the source."""
        ref = body.get("manifest")
        if body.get("files") != 1 or not isinstance(ref, dict):
            return []
        sha = self._single_file_sha(str(ref.get("blob")))
        return [sha] if sha else []

    def model_flagged(self, seq: int, entry: Mapping[str, Any]) -> None:
        body = entry["body"]
        if body.get("status") == "cleared":
            self.cur.execute(
                "UPDATE flags SET cleared_seq = ? WHERE model = ? AND cleared_seq IS NULL",
                (seq, _node(body)),
            )
            return
        self.cur.execute(
            "INSERT INTO flags (seq, model, run, source, reason, time, user, path) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq, _node(body), body.get("run"), body.get("source"),
                body.get("reason"), entry["time"], (entry.get("actor") or {}).get("user"),
                _text(body.get("path")),
            ),
        )  # fmt: skip

    def model_approved(self, seq: int, entry: Mapping[str, Any]) -> None:
        body, actor = entry["body"], entry.get("actor") or {}
        self.cur.execute(
            "INSERT INTO approvals (seq, model, stage, decision, note, run, time, user, "
            "claimed_user, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq, _node(body), _text(body.get("stage")), _text(body.get("decision")),
                _text(body.get("note")), _text(body.get("run")), entry["time"],
                _text(actor.get("user")), _text(actor.get("claimed_user")),
                _text((entry.get("sig") or {}).get("key")),
            ),
        )  # fmt: skip

    def model_described(self, seq: int, entry: Mapping[str, Any]) -> None:
        body, actor = entry["body"], entry.get("actor") or {}
        self.cur.executemany(
            "INSERT OR IGNORE INTO descriptions (seq, model, field, value, time, user) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (seq, _node(body), field, _text(body[field]), entry["time"],
                 _text(actor.get("user")))
                for field in DESCRIBED_FIELDS if body.get(field) is not None
            ],
        )  # fmt: skip

    def stage_gated(self, seq: int, entry: Mapping[str, Any]) -> None:
        body, actor = entry["body"], entry.get("actor") or {}
        required = body.get("require_approval")
        if not isinstance(required, int) or not isinstance(body.get("stage"), str):
            return
        self.cur.execute(
            "INSERT INTO gates (seq, stage, required, note, time, user) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (seq, body["stage"], required, _text(body.get("note")), entry["time"],
             _text(actor.get("user"))),
        )  # fmt: skip

    # -- helpers ------------------------------------------------------------

    def _data(
        self, run: str, seq: int, direction: str, role: Any, body: Mapping[str, Any]
    ) -> None:
        manifest = _digest(body.get("manifest"))
        sha = body.get("sha256")
        files = body.get("files")
        if sha is None and manifest and files == 1:
            sha = self._single_file_sha(manifest)
        self.cur.execute(
            "INSERT INTO data (run, seq, direction, role, path, dataset, sha256, files, "
            "bytes, manifest, model, user, own) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run, seq, direction, _text(role), body.get("path") or body.get("url"),
                body.get("dataset"), sha, files if files is not None else (1 if sha else None),
                body.get("bytes", body.get("size")), manifest, body.get("model"), self.user,
                self.own(run),
            ),
        )  # fmt: skip
        if direction == "out" and manifest and body.get("dataset") and self.links:
            self._explode(body["dataset"], manifest)

    def _has(self, run: str, direction: str, link: Mapping[str, Any]) -> bool:
        row = self.cur.execute(
            "SELECT 1 FROM data WHERE run = ? AND direction = ? AND "
            "(dataset = ? OR sha256 = ?)",
            (run, direction, link.get("dataset"), link.get("sha256")),
        ).fetchone()
        return row is not None

    def _model(
        self,
        run: str,
        seq: int,
        role: str,
        part: Mapping[str, Any],
        model: str,
        *,
        base: str | None = None,
    ) -> None:
        self.cur.execute(
            "INSERT INTO models (model, run, seq, role, path, format, name, base) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                model, run, seq, role, part.get("path"),
                part.get("format") or part.get("model_format"), part.get("name"), base,
            ),
        )  # fmt: skip

    def _blob(self, digest: str) -> bytes | None:
        """A blob's bytes if they hash to ``digest``: bytes swapped in the store
        (verify names them) are no source of answers."""
        from mltrail.core.canonical import compute_blob_digest

        data = self.get_blob(digest)
        if data is None or compute_blob_digest(data) != digest:
            return None
        return data

    def _single_file_sha(self, digest: str) -> str | None:
        from mltrail.core.manifest import first_file_sha256

        return first_file_sha256(self._blob(digest))

    def _explode(self, dataset: str, digest: str) -> None:
        """Index a written dataset's files by content (once per dataset)."""
        cur = self.cur
        if cur.execute(
            "SELECT 1 FROM exploded WHERE dataset = ?", (dataset,)
        ).fetchone():
            return
        cur.execute("INSERT INTO exploded (dataset) VALUES (?)", (dataset,))
        data = self._blob(digest)
        if not data:
            return
        from mltrail.core.manifest import listed_sha256s

        shas = listed_sha256s(data, _MAX_EXPLODE)
        cur.executemany(
            "INSERT OR IGNORE INTO output_files (dataset, sha256) VALUES (?, ?)",
            [(dataset, s) for s in shas],
        )


def _node(body: Mapping[str, Any]) -> str:
    """The lineage node id of the model a promotion or flag names."""
    return f"{body.get('model_type', 'model')}:{body.get('model')}"


def _who(user: Any) -> str:
    """A user as :func:`mltrail.core.run_owner.run_owner` compares them."""
    return user if isinstance(user, str) else ""


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


_HANDLERS = {
    "run.started": "run_started",
    "run.ended": "run_ended",
    "run.code": "run_code",
    "run.params": "run_params",
    "run.data": "run_data",
    "run.artifact": "run_artifact",
    "run.step": "run_step",
    "run.finetune": "run_finetune",
    "model.promoted": "model_promoted",
    "ledger.pushed": "ledger_pushed",
    "source.registered": "source_registered",
    "source.checked": "source_checked",
    "model.flagged": "model_flagged",
    "model.approved": "model_approved",
    "model.described": "model_described",
    "stage.gated": "stage_gated",
}


def ingest_entry(
    cur: sqlite3.Cursor,
    get_blob: Callable[[str], bytes | None],
    seq: int,
    entry: Mapping[str, Any],
    *,
    links: bool = True,
) -> None:
    """Add one record's rows to the index (inside the caller's transaction).

    ``links=False`` leaves out the files of written datasets (``output_files``,
    read from their manifests): the answer-time checks of ``mltrail.index.check``
    derive one run's rows, not the content links between runs.
    """
    actor = entry.get("actor") or {}
    cur.execute(
        "INSERT INTO records (seq, run, kind, time, ts, user) VALUES (?, ?, ?, ?, ?, ?)",
        (
            seq, entry.get("run"), entry["kind"], entry["time"],
            parse_time(entry["time"]), actor.get("user"),
        ),
    )  # fmt: skip
    name = _HANDLERS.get(entry["kind"])
    if name is None:
        return
    if entry["kind"].startswith("run.") and not entry.get("run"):
        return
    getattr(_Ingest(cur, get_blob, links, actor.get("user")), name)(seq, entry)


def _failed_check(body: Mapping[str, Any]) -> bool:
    """Whether a ``source.checked`` body is a check that could not read its
    source: one with an ``error``, or (whoever wrote it) no fingerprint. The
    shape is the same since the first version: ``{"name", "fingerprint": null,
    "previous", "changed": false, "error"}``."""
    fingerprint = body.get("fingerprint")
    return (
        bool(body.get("error")) or not isinstance(fingerprint, str) or not fingerprint
    )


def _failure(body: Mapping[str, Any]) -> str:
    error = body.get("error")
    return error if isinstance(error, str) and error else "no fingerprint recorded"
