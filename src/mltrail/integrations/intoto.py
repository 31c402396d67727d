"""A run as an in-toto Statement v1 with a SLSA provenance v1 predicate, in DSSE.

    >>> envelope = export_intoto(home, index, "baseline")        # doctest: +SKIP

The statement's subjects are the files the run wrote (each output's files with
their SHA-256, read from its manifest); the predicate says how they were made:

* ``buildDefinition.externalParameters``: the command line, the run's name and
  its hyperparameters (every ``run.params`` key, later entries winning);
* ``buildDefinition.resolvedDependencies``: the data it read (per file when the
  dataset is one file, else the dataset id), the base model of a fine-tune,
  the code (git commit, or the program's and untracked files' SHA-256), the
  container image and the package list;
* ``runDetails``: the builder (``mltrail run`` on the ledger's origin), the run
  id as invocation id, start and end times, and the ledger records it came from
  (with ``addedByOthers``: the records of the run another user than its starter
  signed, whose values the statement carries too, or null).

Digests use the in-toto names (``sha256``, ``gitCommit``); mltrail's own ids
(dataset and model Merkle roots) go under ``mltrailDataset`` / ``mltrailModel``.
The envelope is signed with the ledger's Ed25519 key, key id = the mltrail key
id, so ``mltrail keys export`` gives what a verifier pins. Nothing optional is
needed to write it.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from mltrail.audit.query import load_run, resolve_run
from mltrail.core.manifest import parse_manifest
from mltrail.errors import ConfigError, InputError, IntegrityError
from mltrail.integrations.dsse import INTOTO_PAYLOAD_TYPE, sign_envelope
from mltrail.ledger.ledger import TRUST_KEY_HINT
from mltrail.shown import terminal_text

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from mltrail.audit.query import RunView
    from mltrail.core.report import VerificationReport
    from mltrail.core.signing import Signer
    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = [
    "BUILD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "compute_statement",
    "export_intoto",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://mltrail.dev/slsa/run/v1"
BUILDER_ID = "https://mltrail.dev/builder/mltrail-run"


def export_intoto(
    home: Home,
    index: Index,
    ref: str,
    *,
    version: str = "unknown",
    trust_keys: Collection[str] = (),
    progress: Callable[[int, int], None] | None = None,
    verification: VerificationReport | None = None,
) -> dict[str, Any]:
    """The DSSE envelope of run ``ref``'s provenance, signed with the ledger key
    (``version``: mltrail's, named as the builder's version).

    The ledger is verified first (``trust_keys`` as ``mltrail verify
    --trust-key``): the key signs only what intact, signed records say, never
    an altered record, a blob that does not hash to its address, or a ledger
    whose checkpoints disagree with its records (ADR 0024 amendment). A
    caller that verified it already passes its ``verification``.

    Raises:
        InputError: no such run, or it has no outputs with a digest to attest.
        ConfigError: the ledger's signing key cannot be loaded.
        IntegrityError: the ledger fails verification, or the key file is not
            a current log key of the ledger it verified.
    """
    if verification is None:
        verification = home.verify(trust_keys=trust_keys, progress=progress)
    verification.raise_for_failure(refusing="sign provenance")
    view = load_run(home, index, resolve_run(index, ref))
    _refuse_imported(view)
    statement = compute_statement(home, view, version=version)
    if not statement["subject"]:
        raise InputError(
            f"run {view.id} recorded no output with a SHA-256 to attest",
            hint="declare what it writes: mltrail run --output PATH -- ...",
        )
    if home.ledger.signer is None:
        home.reload_signer()
    signer = home.ledger.signer
    if signer is None:  # reload_signer loads it or raises
        raise ConfigError("the ledger's signing key is not loaded")
    # A key file that the verified ledger does not name as a current log key
    # (a whole ledger swapped in beside the real key) signs nothing.
    problem = home.ledger.keys().signer_problem(signer.key_id, verification.size)
    if problem:
        raise IntegrityError(
            f"refusing to sign provenance: the signing key {signer.key_id[:16]}... "
            f"is {problem.removeprefix('signed by ')} of this ledger",
            hint=f"the ledger in this home is not the one this key signs; {TRUST_KEY_HINT}",
        )
    _require_own_checkpoint(home, signer, verification)
    payload = json.dumps(statement, sort_keys=True, ensure_ascii=False).encode()
    return sign_envelope(payload, INTOTO_PAYLOAD_TYPE, signer)


def _refuse_imported(view: RunView) -> None:
    """Raise for a run imported from another tracker (``imported`` in its
    ``run.started``): its commit is a tag anyone could set, its files were hashed
    at the import, its times are the import's. The ledger key vouches for what
    mltrail watched; a statement built by ``mltrail run`` would pass that run
    off as one (ADR 0024 amendment of 2026-12-08).

    Raises:
        InputError: the run was imported.
    """
    imported = (view.body("run.started") or {}).get("imported")
    if not isinstance(imported, dict):
        return
    tracker = {"mlflow": "MLflow"}.get(str(imported.get("from")), "another tracker")
    raise InputError(
        f"refusing to sign provenance: run {view.id} was imported from {tracker} "
        f"(its run {terminal_text(str(imported.get('run_id')), names=True)}); "
        "mltrail did not watch it run",
        hint="its commit, times and files are what the tracker's store said; "
        "`mltrail show RUN` shows them, `mltrail export bundle RUN` hands its "
        "signed records on as they are",
    )


def _require_own_checkpoint(
    home: Home, signer: Signer, verification: VerificationReport
) -> None:
    """Refuse unless ``signer`` signed the ledger's newest checkpoint, and that
    checkpoint covers every record verified (its size and root are the ones
    verification found). When another process appended since the verification,
    the checkpoint of the size verified stands in for the newest.

    Being a current log key of the verified ledger is not enough: a log key's
    ``key.added`` carries no proof of possession, so a forger's own ledger can
    add the real public key and be "signed" by it without holding it. Its
    checkpoints, though, the forger cannot sign with that key (ADR 0024
    amendment). Every append of a home writes a checkpoint signed by the
    home's key, a rotation one signed by the new key.

    Raises:
        IntegrityError: no such checkpoint.
    """
    latest = home.ledger.latest_checkpoint()
    if latest is not None and latest[0] > verification.size:
        # appended to since it was verified: the checkpoint of the records verified
        latest = next(
            (
                (row.size, row.text)
                for row in reversed(home.ledger.store.checkpoints())
                if row.size == verification.size
            ),
            latest,
        )
    why = "the ledger holds no checkpoint"
    checkpoint = None if latest is None else home.ledger.signed_by(latest[1], signer)
    if checkpoint is not None:
        if (checkpoint.size, checkpoint.root) == (verification.size, verification.root):
            return
        why = (
            f"its newest checkpoint covers {checkpoint.size} of the "
            f"{verification.size} records verified"
        )
    elif latest is not None:
        why = f"its newest checkpoint (of {latest[0]} records) is signed by another key"
    raise IntegrityError(
        f"refusing to sign provenance: the signing key {signer.key_id[:16]}... "
        f"signed no checkpoint that covers this ledger ({why})",
        hint=f"the ledger in this home is not the one this key signs; {TRUST_KEY_HINT} "
        "(records written after the newest checkpoint: `mltrail checkpoint --adopt`)",
    )


def compute_statement(
    home: Home, view: RunView, *, version: str = "unknown"
) -> dict[str, Any]:
    """The in-toto Statement (SLSA provenance v1) of one run."""
    started = view.body("run.started") or {}
    cwd = str(started.get("cwd") or "")
    return {
        "_type": STATEMENT_TYPE,
        "subject": _subjects(home, view, cwd),
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": _external(view, started),
                "internalParameters": {"cwd": cwd, "source": started.get("source")},
                "resolvedDependencies": _dependencies(home, view, cwd),
            },
            "runDetails": _run_details(home, view, version),
        },
    }


def _external(view: RunView, started: dict[str, Any]) -> dict[str, Any]:
    return {
        "command": list(started.get("command") or []),
        "name": view.summary.name,
        "hyperparameters": {k: v for k, (v, _) in sorted(view.params().items())},
    }


def _run_details(home: Home, view: RunView, version: str) -> dict[str, Any]:
    summary = view.summary
    metadata = {"invocationId": view.id, "startedOn": summary.started}
    if summary.ended:
        metadata["finishedOn"] = summary.ended
    first = view.records[0] if view.records else None
    return {
        "builder": {
            "id": BUILDER_ID,
            "version": {"mltrail": version},
            "builderDependencies": [
                {"name": "ledger", "uri": f"mltrail://{home.ledger.origin}"}
            ],
        },
        "metadata": metadata,
        "byproducts": [
            {
                "name": "ledger-records",
                "uri": f"mltrail://{home.ledger.origin}/runs/{view.id}",
                "annotations": {
                    "seqs": [r.seq for r in view.records],
                    "status": summary.status,
                    "exit_code": summary.exit_code,
                    "user": summary.user,
                    "host": summary.host,
                    "signer": first.entry.sig.key
                    if first and first.entry.sig
                    else None,
                    # records of the run another user than its starter signed:
                    # their values are in this statement, not the starter's
                    "addedByOthers": view.added_by_others(),
                },
            }
        ],
    }


# --- subjects ---------------------------------------------------------------------------


def _subjects(home: Home, view: RunView, cwd: str) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for body in view.bodies("run.artifact"):
        if body.get("exists") is False or "path" not in body:
            continue
        name = _relative(str(body["path"]), cwd)
        for sub in _files_of(home, body, name):
            found[sub["name"]] = sub
    return [found[k] for k in sorted(found)]


def _files_of(home: Home, body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """One subject per file of an output (a single file: its own digest); the
    output's dataset id, and what erased its manifest, when a verified purge
    record did."""
    if body.get("type") != "directory" and body.get("sha256"):
        return [{"name": name, "digest": {"sha256": body["sha256"]}}]
    entries = _manifest(home, body)
    if not isinstance(entries, list):
        if body.get("dataset"):
            subject = {"name": name, "digest": {"mltrailDataset": body["dataset"]}}
            if entries is not None:
                subject["annotations"] = {"manifestPurged": entries}
            return [subject]
        return []
    if body.get("type") != "directory" and len(entries) == 1:
        return [{"name": name, "digest": {"sha256": entries[0][1]}}]
    return [
        {"name": str(PurePosixPath(name) / path), "digest": {"sha256": sha}}
        for path, sha in entries
    ]


def _manifest(
    home: Home, body: dict[str, Any]
) -> list[tuple[str, str]] | dict[str, Any] | None:
    """(path, sha256) of each file in a body's manifest; None when it names no
    manifest; what its purge record says (blob, seq, reason, policy, by, time)
    when a purge record among the records verified erased it.

    Read after the verification, whose records the ledger is pinned to: a
    manifest that no longer hashes to its address, or is gone with no purge
    record, was changed since; the key signs no statement without its files
    (ADR 0024, amendment of 2026-12-08).

    Raises:
        IntegrityError: the blob does not hash to its address, or is gone
            though no purge record names it.
        PurgedSinceVerifiedError: a purge record beyond the records verified
            erased it: run the command again.
        SchemaError: the blob is no manifest.
    """
    from mltrail.ledger.purged import PurgedBlob, read_verified_blob

    ref = body.get("manifest")
    if not isinstance(ref, dict) or "blob" not in ref:
        return None
    data = read_verified_blob(home.ledger, str(ref["blob"]), refusing="sign provenance")
    if isinstance(data, PurgedBlob):
        return data.to_dict()
    manifest = parse_manifest(data)
    return [(e.path, e.sha256) for e in manifest.entries if e.sha256 is not None]


def _relative(path: str, cwd: str) -> str:
    """``path`` relative to the run's folder when inside it, else as recorded."""
    if cwd and path.startswith(cwd.rstrip("/") + "/"):
        return path[len(cwd.rstrip("/")) + 1 :]
    return path


# --- resolved dependencies -------------------------------------------------------------


def _dependencies(home: Home, view: RunView, cwd: str) -> list[dict[str, Any]]:
    deps = [_data_dep(home, b, cwd) for b in view.bodies("run.data")]
    deps += [
        _model_dep(b["base"], cwd) for b in view.bodies("run.finetune") if b.get("base")
    ]
    deps += _code_deps(view.body("run.code") or {}, cwd)
    deps += _environment_deps(view.body("run.environment") or {})
    return deps


def _data_dep(home: Home, body: dict[str, Any], cwd: str) -> dict[str, Any]:
    location = str(body.get("url") or body.get("path") or "")
    digest: dict[str, str] = {"mltrailDataset": str(body["dataset"])}
    entries = _manifest(home, body) if body.get("files") == 1 else None
    if isinstance(entries, list) and len(entries) == 1:
        digest["sha256"] = entries[0][1]
    dep: dict[str, Any] = {
        "name": _relative(location, cwd),
        "uri": _uri(location),
        "digest": digest,
        "annotations": {
            "role": body.get("role"),
            "files": body.get("files"),
            "bytes": body.get("bytes"),
        },
    }
    if isinstance(entries, dict):
        dep["annotations"]["manifestPurged"] = entries
    if isinstance(body.get("dvc"), dict) and body["dvc"].get("md5"):
        dep["annotations"]["dvc"] = _dvc_claim(body["dvc"])
    return dep


def _dvc_claim(dvc: dict[str, Any]) -> dict[str, Any]:
    """What DVC's ``.dvc`` or ``dvc.lock`` file says of a dataset, as an
    annotation, never a digest: mltrail does not check it against the bytes (a
    stale record, DVC 2's md5 of the text with CRLF made LF, or a folder's md5
    of DVC's listing are no md5 of what the run read) (ADR 0024 amendment)."""
    keys = ("md5", "hash", "source", "stage")
    return {k: dvc[k] for k in keys if dvc.get(k) is not None}


def _model_dep(base: dict[str, Any], cwd: str) -> dict[str, Any]:
    path = str(base.get("path") or base.get("name") or "base-model")
    return {
        "name": _relative(path, cwd),
        "uri": _uri(path),
        "digest": {"mltrailModel": str(base["model"])},
        "annotations": {"role": "base-model", "format": base.get("format")},
    }


def _code_deps(code: dict[str, Any], cwd: str) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    if code.get("vcs") == "git" and code.get("commit"):
        remote = code.get("remote") or code.get("root") or ""
        ref = f"@refs/heads/{code['branch']}" if code.get("branch") else ""
        deps.append(
            {
                "name": "code",
                "uri": f"git+{remote}{ref}",
                "digest": {"gitCommit": code["commit"]},
                "annotations": {
                    "dirty": code.get("dirty"),
                    "diff_sha256": code.get("diff_sha256"),
                },
            }
        )
    for item in code.get("files") or []:
        if item.get("sha256"):
            deps.append(
                {
                    "name": _relative(str(item["path"]), cwd),
                    "uri": _uri(str(item["path"])),
                    "digest": {"sha256": item["sha256"]},
                    "annotations": {"role": "program"},
                }
            )
    return deps


def _environment_deps(env: dict[str, Any]) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    container = env.get("container") or {}
    if container.get("image"):
        dep: dict[str, Any] = {
            "name": "container-image",
            "uri": str(container["image"]),
        }
        algo, _, hexa = str(container.get("digest") or "").partition(":")
        if hexa:
            dep["digest"] = {algo: hexa}
        deps.append(dep)
    packages = env.get("packages") or {}
    if packages.get("sha256"):
        deps.append(
            {
                "name": "python-packages",
                "digest": {"sha256": packages["sha256"]},
                "annotations": {
                    "count": packages.get("count"),
                    "python": (env.get("python") or {}).get("version"),
                },
            }
        )
    return deps


def _uri(location: str) -> str:
    if "://" in location:
        return location
    return "file://" + location if location.startswith("/") else location
