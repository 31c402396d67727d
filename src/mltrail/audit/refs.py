"""What the user typed, as a lineage node: a path, an id or prefix, a name.

>>> resolve_node(index, "model.safetensors")     # doctest: +SKIP
'model:9f3c...'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from mltrail.audit.query import resolve_run
from mltrail.audit.trace import DATA_COLUMNS, data_node_id
from mltrail.errors import InputError

if TYPE_CHECKING:
    from mltrail.capture.data.hashcache import HashCache
    from mltrail.index import Index

__all__ = ["node_for_path", "resolve_node"]

_HEX = re.compile(r"[0-9a-f]{4,64}")
_TYPED = re.compile(r"(source|data|file|run|model):(.+)")


def resolve_node(
    index: Index, ref: str, *, cwd: Path | None = None, trust_cache: bool = True
) -> str:
    """The lineage node a reference names.

    A typed id (``run:...``, ``model:...``, ``data:...``, ``file:...``,
    ``source:...``), an existing file or folder (matched by content), a hex id
    or prefix of 4+ digits (model, dataset, file or run), a registered source's
    name, an output's name or file name (its latest), or a run name.

    The runs that wrote the node found (whose rows gave it) are checked against
    their records; on a difference the index is rebuilt and ``ref`` resolved
    again (see ``mltrail.index.check``).

    ``trust_cache=False`` reads the weights behind a path's links (or a shard
    index) again rather than take their model id from the home's hash cache:
    for a decision that is signed (an approval, a promotion, a gate's
    judgment), which someone able to write the cache must not steer.

    Raises:
        InputError: nothing matches, or a prefix matches several things.
    """
    from mltrail.index.check import repaired, runs_differ

    found = _resolve(index, ref, cwd, trust_cache)
    if repaired(index, runs_differ(index, _writer_runs(index, found))):
        found = _resolve(index, ref, cwd, trust_cache)
    return found


def _writer_runs(index: Index, node: str) -> set[str]:
    """The runs whose rows say they wrote ``node``."""
    kind, _, ident = node.partition(":")
    sql = {
        "model": "SELECT run FROM models WHERE model = ? UNION "
        "SELECT run FROM data WHERE model = ?",
        "file": "SELECT run FROM data WHERE sha256 = ? AND direction = 'out' UNION "
        "SELECT run FROM data WHERE sha256 = ? AND model IS NOT NULL",
        "data": "SELECT run FROM data WHERE dataset = ? AND direction = 'out' UNION "
        "SELECT run FROM data WHERE dataset = ? AND model IS NOT NULL",
    }.get(kind)
    if sql is None:
        return set()
    return {r for (r,) in index.query(sql, (ident, ident))}


def _resolve(index: Index, ref: str, cwd: Path | None, trust_cache: bool) -> str:
    if m := _TYPED.fullmatch(ref):
        return _typed(index, m[1], m[2])
    path = Path(ref) if cwd is None else cwd / ref
    if path.exists():
        return node_for_path(index, path, trust_cache=trust_cache)
    if _HEX.fullmatch(ref):
        return _by_hex(index, ref)
    for finder in (_by_source, _by_output_name, _by_run):
        found = finder(index, ref)
        if found:
            return found
    raise InputError(
        f"nothing in the ledger is named {ref!r}",
        hint="give a file or folder, a model/dataset/run id (or 4+ hex digits of "
        "one), an output or run name; see `mltrail runs` and `mltrail show RUN`",
    )


def _typed(index: Index, kind: str, ident: str) -> str:
    if kind == "source":
        return f"source:{ident}"
    if kind == "run":
        return f"run:{resolve_run(index, f'run:{ident}')}"
    return _by_hex(index, ident, only=kind)


def _by_hex(index: Index, prefix: str, only: str | None = None) -> str:
    low, high = prefix, prefix + "g"
    candidates: set[str] = set()
    queries = {
        "model": "SELECT 'model:' || model FROM models WHERE model >= ? AND model < ? "
        "UNION SELECT 'model:' || model FROM data WHERE model >= ? AND model < ?",
        "data": "SELECT coalesce(CASE WHEN files = 1 THEN 'file:' || sha256 END, "
        "'data:' || dataset) FROM data WHERE dataset >= ? AND dataset < ? "
        "UNION SELECT 'data:' || dataset FROM output_files "
        "WHERE dataset >= ? AND dataset < ?",
        "file": "SELECT 'file:' || sha256 FROM data WHERE sha256 >= ? AND sha256 < ? "
        "UNION SELECT 'file:' || sha256 FROM output_files "
        "WHERE sha256 >= ? AND sha256 < ?",
    }
    for kind, sql in queries.items():
        if only in (None, kind):
            candidates.update(v for (v,) in index.query(sql, (low, high) * 2) if v)
    if only is None:
        candidates.update(
            f"run:{v}"
            for (v,) in index.query(
                "SELECT id FROM runs WHERE id >= ? AND id < ?", (low, high)
            )
        )
    return _one(candidates, prefix)


def _one(candidates: set[str], ref: str) -> str:
    if len(candidates) == 1:
        return candidates.pop()
    if not candidates:
        raise InputError(f"no model, dataset, file or run id starts with {ref!r}")
    shown = ", ".join(sorted(candidates)[:5])
    raise InputError(
        f"{ref!r} matches several things: {shown}", hint="give more digits"
    )


def _by_source(index: Index, ref: str) -> str | None:
    rows = index.query("SELECT name FROM sources WHERE name = ?", (ref,))
    return f"source:{ref}" if rows else None


def _by_output_name(index: Index, ref: str) -> str | None:
    """The latest output named ``ref`` (its role, path or file name), refused when
    runs of another starter wrote other content under that name: "latest" goes by
    the order records were appended, and any writer can append an output of any
    name, so another user's later output answered for the team's model."""
    match = "(d.role = ? OR d.path = ? OR d.path LIKE ? ESCAPE '\\')"
    args = (ref, ref, "%/" + _like(ref))
    columns = ", ".join(f"d.{c.strip()}" for c in DATA_COLUMNS.split(","))
    rows = index.query(
        f"SELECT {columns}, r.user FROM data d LEFT JOIN runs r ON r.id = d.run "  # noqa: S608
        f"WHERE d.direction = 'out' AND {match} ORDER BY d.seq DESC LIMIT 1",
        args,
    )
    if rows:
        node, user = data_node_id(rows[0]), rows[0][-1]
        others = index.query(
            f"SELECT {columns}, r.user FROM data d LEFT JOIN runs r ON r.id = d.run "  # noqa: S608
            f"WHERE d.direction = 'out' AND {match} AND r.user IS NOT ? "
            "ORDER BY d.seq DESC",
            (*args, user),
        )
        for other in others:
            if (other[7] or other[4] or other[3]) and data_node_id(other) != node:
                _refuse_shared_output(ref, node, user, data_node_id(other), other[-1])
        return node
    rows = index.query(
        "SELECT m.model, r.user FROM models m LEFT JOIN runs r ON r.id = m.run "
        "WHERE m.name = ? ORDER BY m.seq DESC LIMIT 1",
        (ref,),
    )
    if not rows:
        return None
    model, user = rows[0]
    other = index.query(
        "SELECT m.model, r.user FROM models m LEFT JOIN runs r ON r.id = m.run "
        "WHERE m.name = ? AND r.user IS NOT ? AND m.model != ? LIMIT 1",
        (ref, user, model),
    )
    if other:
        _refuse_shared_output(
            ref, f"model:{model}", user, f"model:{other[0][0]}", other[0][1]
        )
    return f"model:{model}"


def _refuse_shared_output(
    ref: str, node: str, user: str | None, other: str, other_user: str | None
) -> None:
    raise InputError(
        f"{ref!r} names outputs of runs started by several users: {node} "
        f"({user or '(no user)'}'s latest) and {other} ({other_user or '(no user)'}'s)",
        hint="give the file itself, its id (or 4+ hex digits of it), or "
        "`mltrail runs --json` to find the run that wrote the one you mean",
    )


def _like(text: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", text)


def _by_run(index: Index, ref: str) -> str | None:
    try:
        return f"run:{resolve_run(index, ref)}"
    except InputError:
        return None


def _purges(index: Index) -> bool:
    """Whether blobs were purged: a file listed only in a purged manifest is unknown."""
    return bool(index.ledger.store.purges())


def node_for_path(index: Index, path: Path, *, trust_cache: bool = True) -> str:
    """The node of a file or folder on disk, found by its content (``trust_cache``:
    see :func:`resolve_node`).

    Raises:
        InputError: the ledger has never seen this content.
    """
    from mltrail.capture.data.files import capture_file_entries, hash_file
    from mltrail.core.manifest import compute_manifest

    if path.is_file():
        _, sha = hash_file(path)
        if index.query("SELECT 1 FROM data WHERE sha256 = ? LIMIT 1", (sha,)):
            models = [
                m
                for (m,) in index.query(
                    "SELECT model FROM data WHERE sha256 = ? AND model IS NOT NULL "
                    "GROUP BY model ORDER BY min(seq)",
                    (sha,),
                )
            ]
            if models and _an_index(index, path, sha):
                held = _check_weights(
                    index, path, models, "names shards that hold", trust_cache
                )
                return f"model:{held}"
            return f"model:{models[0]}" if models else f"file:{sha}"
        if index.query("SELECT 1 FROM output_files WHERE sha256 = ? LIMIT 1", (sha,)):
            return f"file:{sha}"
        purged = " or was the manifest listing it purged?" if _purges(index) else ""
        raise InputError(
            f"the ledger has no record of {path} (sha256 {sha[:16]}...)",
            hint=f"was it changed since it was recorded{purged}? "
            "`mltrail data hash` shows its hash",
        )
    entries = capture_file_entries(path)
    manifest = compute_manifest(entries)
    rows = index.query(
        "SELECT model FROM data WHERE dataset = ? ORDER BY model IS NULL LIMIT 1",
        (manifest.dataset_id,),
    )
    if not rows:
        raise InputError(
            f"the ledger has no record of {path} (dataset {manifest.dataset_id[:16]}...)",
            hint="was it changed since it was recorded? `mltrail data hash` shows its id",
        )
    if rows[0][0] and any(e.link is not None for e in entries):
        models = [
            m
            for (m,) in index.query(
                "SELECT model FROM data WHERE dataset = ? AND model IS NOT NULL "
                "GROUP BY model ORDER BY min(seq)",
                (manifest.dataset_id,),
            )
        ]
        held = _check_weights(index, path, models, "holds links to", trust_cache)
        return f"model:{held}"
    return f"model:{rows[0][0]}" if rows[0][0] else f"data:{manifest.dataset_id}"


def _an_index(index: Index, path: Path, sha: str) -> bool:
    """Whether the file ``path`` (of SHA-256 ``sha``) is a shard index: by its
    name, or by the name the ledger recorded its bytes under (a link or a copy
    of another name names the same shards)."""
    if path.name.endswith(".index.json"):
        return True
    return bool(
        index.query(
            "SELECT 1 FROM data WHERE sha256 = ? AND model IS NOT NULL "
            "AND path LIKE '%.index.json' LIMIT 1",
            (sha,),
        )
    )


def _check_weights(
    index: Index, path: Path, models: list[str], holding: str, trust_cache: bool
) -> str:
    """The model of those recorded with ``path``'s bytes (``models``, oldest
    first) that its weights are now; refused when they are none of them: a
    folder's manifest holds its links, not what they point to (a Hugging Face
    cache snapshot is all links), and a shard index's sha256 not its shards, so
    the weights could change and the path still name a recorded model. Several
    runs may record the same bytes with other weights behind them (two
    fine-tunes of one architecture write the same index; a link to a file each
    run overwrites): the weights read now pick the one. Their model id is
    kept in the home's hash cache by the weight files' stat keys
    (:mod:`mltrail.capture.model.idcache`): unchanged weights are not read again.

    Raises:
        InputError: the weights read through ``path`` are none of ``models`` (or
            cannot be read).
    """
    import os

    from mltrail.capture.model.idcache import model_fields

    if path.is_file() and not path.name.endswith(".index.json"):
        # a link of another name to an index: its shards lie beside the index
        path = type(path)(os.path.realpath(path))
    cache = _model_cache(index) if trust_cache else None
    try:
        now = model_fields(path, cache)
    finally:
        if cache is not None:
            cache.close()
    if now.get("model") not in models:
        found = now.get("model") or now.get("model_error", "no model")
        raise InputError(
            f"{path} {holding} weights that are not the model recorded with it "
            f"({models[-1][:16]}...) any more: {found}",
            hint="the weights changed since it was recorded; "
            "`mltrail model fingerprint` shows its model id now",
        )
    return str(now["model"])


def _model_cache(index: Index) -> HashCache | None:
    """The hash cache of the home whose index ``index`` is, if it may be written:
    an index kept in memory is a read-only home's, where nothing is written
    (ADR 0012)."""
    from mltrail.capture.data.hashcache import HashCache, default_cache_path
    from mltrail.capture.model.idcache import RACY_WINDOW_S
    from mltrail.storage.readonly import can_write

    if index.path is None:
        return None
    path = default_cache_path(index.path.parent)
    if getattr(index.ledger.store, "read_only", False) or not can_write(path):
        return None
    try:
        return HashCache(path, racy_window_s=RACY_WINDOW_S)
    except OSError:
        return None
