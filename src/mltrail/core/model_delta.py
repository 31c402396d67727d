"""Weight deltas between two checkpoints: how each tensor changed, and a summary.

The per-tensor numbers (L2 norm of the difference, relative change, largest
absolute change) are computed by a collector that reads the weights; this module
pairs the two fingerprints, orders and summarises the rows, and writes the table
stored as a blob: one RFC 8785 canonical JSON line per tensor, sorted by name.

    >>> rows = [TensorDelta("w", "changed", 4, l2=1.0, relative=0.5, max_abs=0.75)]
    >>> summary = compute_delta_summary(rows, top=5)
    >>> summary["tensors_changed"], summary["share_changed"]
    (1, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrail.core.canonical import canonical_bytes
from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from mltrail.core.model import ModelFingerprint

__all__ = [
    "DELTA_MEDIA_TYPE",
    "TensorDelta",
    "TensorPairing",
    "compute_delta_summary",
    "compute_delta_table",
    "pair_tensors",
]

DELTA_MEDIA_TYPE = "application/x-mltrail-delta+jsonl"
STATUSES = ("changed", "unchanged", "added", "removed", "reshaped")


@dataclass(frozen=True, slots=True)
class TensorDelta:
    """How one tensor differs between base and fine-tuned.

    ``status`` is one of ``changed``, ``unchanged``, ``added``, ``removed``,
    ``reshaped``; the norms are set for ``changed`` (and zero for ``unchanged``).
    ``relative`` is ``l2 / ||W_base||``, None when the base tensor is all zeros.
    """

    name: str
    status: str
    parameters: int
    l2: float | None = None
    relative: float | None = None
    max_abs: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """This row as a JSON object (norms only when known)."""
        row: dict[str, Any] = {
            "name": self.name,
            "status": self.status,
            "parameters": self.parameters,
        }
        for key in ("l2", "relative", "max_abs"):
            value = getattr(self, key)
            if value is not None:
                row[key] = value
        return row


@dataclass(frozen=True, slots=True)
class TensorPairing:
    """The tensors of two checkpoints matched by name."""

    same: tuple[str, ...]
    """In both with the same shape and the same bytes."""
    differ: tuple[str, ...]
    """In both with the same shape and different bytes (or dtypes)."""
    added: tuple[str, ...]
    removed: tuple[str, ...]
    reshaped: tuple[str, ...]


def pair_tensors(base: ModelFingerprint, tuned: ModelFingerprint) -> TensorPairing:
    """Match the tensors of ``base`` and ``tuned`` by name.

    Raises:
        InputError: fewer than half of the base's tensors are in the fine-tuned
            checkpoint with the same shape: not the same architecture.
    """
    old, new = base.by_name(), tuned.by_name()
    same, differ, reshaped = [], [], []
    for name, a in old.items():
        b = new.get(name)
        if b is None:
            continue
        if a.shape != b.shape:
            reshaped.append(name)
        elif a.sha256 == b.sha256 and a.dtype == b.dtype:
            same.append(name)
        else:
            differ.append(name)
    matched = len(same) + len(differ)
    if not old or matched * 2 < len(old):
        raise InputError(
            f"the checkpoints do not share an architecture: {matched} of the base's "
            f"{len(old)} tensors are in the other with the same name and shape",
            hint="compare a fine-tuned model with the base it was trained from",
        )
    added = tuple(n for n in new if n not in old)
    removed = tuple(n for n in old if n not in new)
    return TensorPairing(tuple(same), tuple(differ), added, removed, tuple(reshaped))


def compute_delta_table(rows: Iterable[TensorDelta]) -> bytes:
    """The per-tensor table blob: canonical JSON lines sorted by name."""
    ordered = sorted(rows, key=lambda r: r.name.encode("utf-8", "surrogatepass"))
    return b"".join(canonical_bytes(r.to_dict()) + b"\n" for r in ordered)


def compute_delta_summary(rows: Sequence[TensorDelta], *, top: int) -> dict[str, Any]:
    """Counts, share of parameters changed, and the ``top`` most-changed tensors.

    The share counts parameters of changed tensors among the parameters of the
    tensors present in both checkpoints with the same shape. Tensors are ranked by
    relative change (L2 when the relative change is unknown).
    """
    changed = [r for r in rows if r.status == "changed"]
    compared = [r for r in rows if r.status in ("changed", "unchanged")]
    total = sum(r.parameters for r in compared)
    params_changed = sum(r.parameters for r in changed)
    ranked = sorted(changed, key=_rank_key, reverse=True)[: max(top, 0)]
    return {
        "tensors_changed": len(changed),
        "tensors_unchanged": len(compared) - len(changed),
        "parameters_changed": params_changed,
        "share_changed": params_changed / total if total else 0.0,
        "added": _names(rows, "added"),
        "removed": _names(rows, "removed"),
        "reshaped": _names(rows, "reshaped"),
        "top": [
            {"name": r.name, "l2": r.l2, "relative": r.relative, "max_abs": r.max_abs}
            for r in ranked
        ],
    }


def _rank_key(row: TensorDelta) -> tuple[float, float, str]:
    relative = row.relative if row.relative is not None else float("inf")
    return (relative, row.l2 or 0.0, row.name)


def _names(rows: Iterable[TensorDelta], status: str) -> list[str]:
    return sorted(r.name for r in rows if r.status == status)
