"""PEFT adapters: the settings of ``adapter_config.json`` and what the weights hold.

For LoRA, every adapted module has ``lora_A`` (r x in) and ``lora_B`` (out x r);
the update it adds to the base weight is ``(alpha / r) * B @ A``. Its norm and rank
are computed without forming ``B @ A`` (out x in, as large as the base weight):
with ``B = Q_B R_B`` and ``A^T = Q_A R_A`` (thin QR), ``B @ A = Q_B (R_B R_A^T) Q_A^T``
and the Q factors have orthonormal columns, so ``||B @ A||_F = ||R_B R_A^T||_F`` and
``rank(B @ A) = rank(R_B R_A^T)``, an r x r matrix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrail.capture.model.delta import load_array, numpy, tensor_norm
from mltrail.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.capture.model.model_files import ModelSource, TensorRef

__all__ = ["AdapterConfig", "LoraModule", "lora_modules", "read_adapter_config"]

_PREFIX = "base_model.model."


@dataclass(frozen=True)
class AdapterConfig:
    """The settings of a PEFT adapter, as recorded (``fields``) and as used."""

    fields: dict[str, Any]
    raw: bytes
    use_rslora: bool
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]


def read_adapter_config(folder: Path) -> AdapterConfig:
    """The ``adapter_config.json`` of a PEFT adapter folder.

    Raises:
        InputError: the file is missing or not a JSON object.
    """
    path = folder / "adapter_config.json"
    try:
        raw = path.read_bytes()
        value = json.loads(raw)
    except OSError as e:
        raise InputError(
            f"{folder} is not a PEFT adapter: cannot read adapter_config.json "
            f"({e.strerror or e})",
            hint="pass the folder that model.save_pretrained() wrote for the adapter",
        ) from None
    except ValueError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise InputError(f"{path} is not a JSON object")
    targets = value.get("target_modules")
    fields = {
        "method": str(value.get("peft_type") or "UNKNOWN"),
        "r": value.get("r"),
        "lora_alpha": value.get("lora_alpha"),
        "lora_dropout": value.get("lora_dropout"),
        "target_modules": sorted(targets) if isinstance(targets, list) else targets,
        "bias": value.get("bias"),
        "modules_to_save": value.get("modules_to_save"),
        "base_model_name_or_path": value.get("base_model_name_or_path"),
        "revision": value.get("revision"),
    }
    return AdapterConfig(
        {k: v for k, v in fields.items() if v is not None or k in _NULLABLE},
        raw,
        bool(value.get("use_rslora")),
        dict(value.get("rank_pattern") or {}),
        dict(value.get("alpha_pattern") or {}),
    )


_NULLABLE = ("modules_to_save", "base_model_name_or_path", "revision")


@dataclass(frozen=True, slots=True)
class LoraModule:
    """One adapted module: its declared and actual rank, and the update's norm."""

    module: str
    declared: int | None
    shape_rank: int
    effective_rank: int
    norm: float
    relative: float | None = None


def _pattern(patterns: dict[str, Any], module: str, default: Any) -> Any:
    for key, value in patterns.items():
        if module == key or module.endswith("." + key):
            return value
    return default


def _pairs(adapter: ModelSource) -> dict[str, tuple[TensorRef, TensorRef]]:
    refs = {r.name: r for r in adapter.tensors}
    pairs = {}
    for name, ref in refs.items():
        if ".lora_A." not in name:
            continue
        module, _, rest = name.partition(".lora_A.")
        other = refs.get(f"{module}.lora_B.{rest}")
        if other is not None:
            pairs[module] = (ref, other)
    return pairs


def lora_modules(
    adapter: ModelSource, config: AdapterConfig, base: ModelSource | None = None
) -> list[LoraModule]:
    """Each LoRA module's declared and effective rank and ``||scale * B @ A||_F``
    (relative to the base weight's norm when ``base`` is given), one at a time.

    Raises:
        InputError: NumPy is missing, or an A/B pair has shapes that do not fit
            or values that are not finite.
    """
    r, alpha = config.fields.get("r"), config.fields.get("lora_alpha")
    base_refs = {ref.name: ref for ref in base.tensors} if base is not None else {}
    found = []
    for module, (a_ref, b_ref) in sorted(_pairs(adapter).items()):
        declared = _pattern(config.rank_pattern, module, r)
        module_alpha = _pattern(config.alpha_pattern, module, alpha)
        norm, shape_rank, effective = _lora_update(module, a_ref, b_ref)
        if isinstance(module_alpha, int | float) and shape_rank:
            scale = module_alpha / (
                math.sqrt(shape_rank) if config.use_rslora else shape_rank
            )
            norm *= abs(scale)
        relative = None
        weight = base_refs.get(module.removeprefix(_PREFIX) + ".weight")
        if weight is not None:
            w = tensor_norm(weight)
            relative = norm / w if w > 0 else None
        found.append(
            LoraModule(module, declared, shape_rank, effective, norm, relative)
        )
    return found


def _lora_update(
    module: str, a_ref: TensorRef, b_ref: TensorRef
) -> tuple[float, int, int]:
    """``||B @ A||_F``, the shared dimension r, and ``rank(B @ A)``."""
    np = numpy()
    a, b = load_array(a_ref), load_array(b_ref)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
        raise InputError(
            f"LoRA module {module}: A {list(a.shape)} and B {list(b.shape)} do not fit",
            hint="the adapter weights are corrupt or not LoRA",
        )
    r = a.shape[0]
    if r == 0:
        return 0.0, 0, 0
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        # QR would give a NaN norm, and rank 0 as if B were untrained
        raise InputError(
            f"LoRA module {module}: A or B holds NaN or infinite values",
            hint="the adapter's training diverged or its weights are corrupt",
        )
    core = np.linalg.qr(b, mode="r") @ np.linalg.qr(a.T, mode="r").T
    norm = float(np.linalg.norm(core))
    rank = int(np.linalg.matrix_rank(core)) if norm > 0 else 0
    return norm, r, rank
