"""``run.finetune`` bodies: base model, adapter settings, fine-tuned model, deltas.

A model part names a checkpoint by its model id (the Merkle root of its tensor
fingerprint, see :mod:`mltrail.core.model`), with the fingerprint itself as a blob
and the SHA-256 of its config, tokenizer and generation files. The adapter part
holds the PEFT settings (method, rank, alpha, dropout, target modules, ...), the
adapter weights' id, and the rank the weights actually have. The delta says how
the fine-tuned weights moved away from the base: per-tensor norms for a full
fine-tune or a merged adapter, ``||(alpha/r) B A||`` per module for LoRA.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.capture.model.adapter import lora_modules, read_adapter_config
from mltrail.capture.model.delta import capture_delta
from mltrail.capture.model.fingerprint import capture_fingerprint
from mltrail.capture.model.model_files import hash_side_files, locate_model
from mltrail.capture.run.blob import Blob
from mltrail.core.canonical import canonical_bytes
from mltrail.core.model import FINGERPRINT_MEDIA_TYPE
from mltrail.core.model_delta import (
    DELTA_MEDIA_TYPE,
    compute_delta_summary,
    compute_delta_table,
)
from mltrail.errors import InputError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from mltrail.capture.data.progress import ProgressCallback, ProgressFactory
    from mltrail.capture.model.adapter import AdapterConfig, LoraModule
    from mltrail.capture.model.model_files import ModelSource
    from mltrail.core.model import ModelFingerprint

__all__ = [
    "ScannedModel",
    "finetune_body",
    "scan_model",
    "without_blobs",
]

LORA_MEDIA_TYPE = "application/x-mltrail-lora+jsonl"


@dataclass(frozen=True)
class ScannedModel:
    """A checkpoint read and fingerprinted: its body part, source and fingerprint."""

    part: dict[str, Any]
    source: ModelSource
    fingerprint: ModelFingerprint


def _hashing(
    progress: ProgressFactory | None, label: str
) -> AbstractContextManager[ProgressCallback | None]:
    return progress(label) if progress is not None else contextlib.nullcontext()


def scan_model(
    path: Path, *, what: str = "model", progress: ProgressFactory | None = None
) -> ScannedModel:
    """Locate and fingerprint the checkpoint at ``path``.

    Raises:
        InputError: the path holds no readable checkpoint.
    """
    source = locate_model(path)
    with _hashing(progress, f"fingerprinting {what} {path}") as callback:
        fingerprint = capture_fingerprint(source, progress=callback)
    part: dict[str, Any] = {
        "path": str(path),
        "model": fingerprint.model_id,
        "format": source.format,
        "tensors": len(fingerprint.tensors),
        "parameters": fingerprint.parameters,
        "bytes": fingerprint.total_bytes,
        "dtypes": fingerprint.dtypes(),
        "fingerprint": Blob(fingerprint.data, FINGERPRINT_MEDIA_TYPE),
    }
    if source.files:
        part["files"] = hash_side_files(source.files)
    name = source.config.get("_name_or_path")
    if isinstance(name, str) and name:
        part["name"] = name
    return ScannedModel(part, source, fingerprint)


def _adapter_part(
    path: Path, progress: ProgressFactory | None
) -> tuple[ScannedModel, AdapterConfig]:
    config = read_adapter_config(path)
    scanned = scan_model(path, what="adapter", progress=progress)
    part = {"path": str(path), **config.fields}
    part["config"] = Blob(config.raw, "application/json", text=True, name="config.json")
    for key in ("model", "format", "tensors", "parameters", "bytes", "fingerprint"):
        part[key] = scanned.part[key]
    return ScannedModel(part, scanned.source, scanned.fingerprint), config


def _rank_fields(modules: list[LoraModule]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "effective_rank": {m.module: m.effective_rank for m in modules}
    }
    mismatch = [
        {
            "module": m.module,
            "declared": m.declared,
            "shape": m.shape_rank,
            "effective": m.effective_rank,
        }
        for m in modules
        if m.shape_rank != m.declared or m.effective_rank < m.shape_rank
    ]
    if mismatch:
        fields["rank_mismatch"] = mismatch
    return fields


def _lora_delta(modules: list[LoraModule], top: int) -> dict[str, Any]:
    rows = []
    for m in modules:
        row: dict[str, Any] = {"module": m.module, "norm": m.norm}
        if m.relative is not None:
            row["relative"] = m.relative
        rows.append(row)
    table = b"".join(canonical_bytes(r) + b"\n" for r in rows)
    ranked = sorted(rows, key=lambda r: (-r["norm"], r["module"]))
    return {"lora": ranked[: max(top, 0)], "lora_table": Blob(table, LORA_MEDIA_TYPE)}


def _full_delta(base: ScannedModel, tuned: ScannedModel, top: int) -> dict[str, Any]:
    rows = capture_delta(base.source, tuned.source, base.fingerprint, tuned.fingerprint)
    summary = compute_delta_summary(rows, top=top)
    return {**summary, "table": Blob(compute_delta_table(rows), DELTA_MEDIA_TYPE)}


def _scan(
    value: Path | ScannedModel | None, what: str, progress: ProgressFactory | None
) -> ScannedModel | None:
    if value is None or isinstance(value, ScannedModel):
        return value
    return scan_model(Path(value), what=what, progress=progress)


def finetune_body(
    *,
    base: Path | ScannedModel | None = None,
    adapter: Path | None = None,
    model: Path | ScannedModel | None = None,
    top: int = 10,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """The ``run.finetune`` body of a base model, an adapter and/or a fine-tuned
    model. ``base`` may be scanned beforehand (at the start of a run, before the
    command could change it).

    Raises:
        InputError: nothing given, a path holds no readable checkpoint or adapter,
            or base and fine-tuned model are different architectures.
    """
    if base is None and adapter is None and model is None:
        raise InputError(
            "nothing to record", hint="give a base model, an adapter or a model"
        )
    scanned_base = _scan(base, "base", progress)
    scanned_model = _scan(model, "model", progress)
    body: dict[str, Any] = {}
    if scanned_base is not None:
        body["base"] = scanned_base.part
    delta: dict[str, Any] = {}
    if adapter is not None:
        scanned, config = _adapter_part(Path(adapter), progress)
        source = scanned_base.source if scanned_base is not None else None
        modules = lora_modules(scanned.source, config, source)
        body["adapter"] = scanned.part | _rank_fields(modules)
        if scanned_base is not None and modules:
            delta |= _lora_delta(modules, top)
    if scanned_model is not None:
        body["model"] = scanned_model.part
        if scanned_base is not None:
            delta |= _full_delta(scanned_base, scanned_model, top)
    if delta:
        body["delta"] = {"against": "base", **delta}
    generation = _generation(scanned_model, scanned_base)
    if generation:
        body["generation"] = generation
    return body


def _generation(*models: ScannedModel | None) -> dict[str, Any]:
    for scanned in models:
        if scanned is not None and scanned.source.generation:
            return dict(scanned.source.generation)
    return {}


def without_blobs(value: Any) -> Any:
    """``value`` with every :class:`Blob` left out (what a caller reads back)."""
    if isinstance(value, dict):
        return {
            k: without_blobs(v) for k, v in value.items() if not isinstance(v, Blob)
        }
    if isinstance(value, list):
        return [without_blobs(v) for v in value]
    return value
