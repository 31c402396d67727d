"""Find a checkpoint's tensors and side files: safetensors, shards, HF folders, torch,
Lightning ``.ckpt`` files (the tensors of their ``state_dict``).

:func:`locate_model` takes a file or folder and says what it is (``format``), where
every tensor's bytes lie (:class:`TensorRef`), which small files come with the
weights (config, generation config, tokenizer) and what generation settings the
model ships with. safetensors files are read without torch; PyTorch ``.bin`` /
``.pt`` state dicts need torch and are loaded with ``weights_only=True`` (no code
in the file runs) and memory-mapped, so tensors are paged in only when read.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.capture.model.safetensors_io import (
    TensorSpan,
    read_safetensors,
    read_sharded,
    read_span,
)
from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = [
    "FINETUNE_EXTRA",
    "ModelSource",
    "TensorRef",
    "is_model_path",
    "iter_tensor_bytes",
    "locate_model",
]

FINETUNE_EXTRA = "pip install 'mltrail[finetune]'"
SAFE_INDEX = "model.safetensors.index.json"
TORCH_INDEX = "pytorch_model.bin.index.json"
_TORCH_SUFFIXES = (".bin", ".pt", ".pth")
_TORCH_NAMES = ("pytorch_model", "adapter_model")
"""A ``.bin`` output is a checkpoint only by these names (Hugging Face's): other
``.bin`` files are as often raw bytes of any kind."""
LIGHTNING_SUFFIX = ".ckpt"
_WEIGHT_SUFFIXES = (".safetensors", *_TORCH_SUFFIXES)
_SIDE_FILE_LIMIT = 64 * 2**20


@dataclass(frozen=True, slots=True)
class TensorRef:
    """One tensor of a checkpoint: its type and where its bytes are.

    ``span`` for safetensors (read from the file in chunks), ``tensor`` for a torch
    state dict (a memory-mapped torch tensor).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    size: int
    span: TensorSpan | None = None
    tensor: Any = None


@dataclass(frozen=True)
class ModelSource:
    """A checkpoint found at ``path``: format, tensors, side files, settings."""

    path: Path
    format: str
    tensors: list[TensorRef]
    files: dict[str, Path] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def _refs(spans: list[TensorSpan]) -> list[TensorRef]:
    return [TensorRef(s.name, s.dtype, s.shape, s.size, span=s) for s in spans]


def is_model_path(path: Path) -> bool:
    """Whether ``path`` looks like a checkpoint (cheap: names only, nothing read)."""
    if path.is_file():
        return (
            path.suffix in (".safetensors", LIGHTNING_SUFFIX, ".pt", ".pth")
            or path.name in (SAFE_INDEX, TORCH_INDEX)
            or (path.suffix == ".bin" and path.name.startswith(_TORCH_NAMES))
        )
    if not path.is_dir():
        return False
    names = (
        "model.safetensors",
        SAFE_INDEX,
        "adapter_model.safetensors",
        TORCH_INDEX,
        *(f"{n}.bin" for n in _TORCH_NAMES),
    )
    return any((path / n).is_file() for n in names)


def locate_model(path: Path) -> ModelSource:
    """What checkpoint ``path`` holds and where its tensors are.

    Raises:
        InputError: the path is missing, holds no weights, or a weight file is
            corrupt, unsafe, or needs torch when torch is not installed.
    """
    if path.is_file():
        return ModelSource(path, *_weights_of_file(path))
    if not path.is_dir():
        raise InputError(f"model {path} does not exist", hint="check the path")
    weights = _weights_in_folder(path)
    if weights is None:
        raise InputError(
            f"{path} holds no model weights",
            hint="expected *.safetensors (or a shard index), pytorch_model.bin, "
            "or adapter_model.safetensors",
        )
    fmt, tensors = _weights_of_file(weights)
    if (path / "config.json").is_file():
        fmt = "hf-folder"
    elif (path / "adapter_config.json").is_file():
        fmt = "peft-adapter"
    return ModelSource(
        path,
        fmt,
        tensors,
        files=_side_files(path),
        generation=_generation(path / "generation_config.json"),
        config=_json_object(path / "config.json"),
    )


def _weights_in_folder(path: Path) -> Path | None:
    """The weights of a folder, refused if a framework would read others.

    Raises:
        InputError: the folder holds two sets of weights, so that transformers or
            peft would load another file than the one fingerprinted.
    """
    chosen = _first_weights(path)
    if chosen is not None:
        _refuse_other_weights(path, chosen)
    return chosen


_FULL_WEIGHTS = (SAFE_INDEX, "model.safetensors", TORCH_INDEX, "pytorch_model.bin")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def _refuse_other_weights(folder: Path, chosen: Path) -> None:
    """Refuse a folder whose model, as transformers or peft load it, is not the
    weights in ``chosen``: a model id over one file while the framework loads
    another would let an approval of the one cover the other."""
    present = [n for n in (*_FULL_WEIGHTS, *_ADAPTER_WEIGHTS) if (folder / n).is_file()]
    full = [n for n in present if n in _FULL_WEIGHTS]
    adapter = [n for n in present if n in _ADAPTER_WEIGHTS]
    loaded = None
    single = {SAFE_INDEX: "model.safetensors", TORCH_INDEX: "pytorch_model.bin"}
    if single.get(chosen.name) in present:
        loaded = single[chosen.name]  # transformers tries it before the index
    elif full and adapter and (folder / "adapter_config.json").is_file():
        # transformers (with peft) applies the adapter to the folder's model
        loaded = f"{adapter[0]} too, as an adapter on the model"
    elif chosen.name in _ADAPTER_WEIGHTS and full:
        # no adapter_config.json: transformers ignores the adapter, loads the model
        loaded = "pytorch_model.bin" if "pytorch_model.bin" in full else full[0]
    elif chosen.name not in present and present:
        loaded = present[0]  # a lone *.safetensors no framework looks for
    named = _json_object(folder / "config.json").get("transformers_weights")
    if loaded is None and named is not None and named != chosen.name:
        loaded = f"{named!r} (named by transformers_weights in config.json)"
    if loaded is not None:
        raise InputError(
            f"{folder} holds two sets of weights: mltrail would fingerprint "
            f"{chosen.name} but a framework would load {loaded}",
            hint="keep one set of weights in the folder, or name the weight file "
            "itself; nothing was recorded",
        )


def _first_weights(path: Path) -> Path | None:
    for name in (SAFE_INDEX, "model.safetensors", "adapter_model.safetensors"):
        if (path / name).is_file():
            return path / name
    found = sorted(path.glob("*.safetensors"))
    if len(found) > 1:
        raise InputError(
            f"{path} holds {len(found)} safetensors files and no {SAFE_INDEX}",
            hint="name one file, or add the shard index",
        )
    if found:
        return found[0]
    for name in (TORCH_INDEX, "pytorch_model.bin", "adapter_model.bin"):
        if (path / name).is_file():
            return path / name
    return None


def _weights_of_file(path: Path) -> tuple[str, list[TensorRef]]:
    if path.name.endswith(".index.json"):
        if path.name == TORCH_INDEX or "pytorch" in path.name:
            return "pytorch", _torch_sharded(path)
        return "safetensors-sharded", _refs(read_sharded(path)[0])
    if path.suffix in _TORCH_SUFFIXES:
        return "pytorch", _torch_file(path)
    if path.suffix == LIGHTNING_SUFFIX:  # the weights are its state_dict
        return "lightning-checkpoint", _torch_file(path, key="state_dict")
    return "safetensors", _refs(read_safetensors(path)[0])


def _side_files(folder: Path) -> dict[str, Path]:
    """The small files beside the weights (config, tokenizer, generation config)."""
    files = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.endswith((*_WEIGHT_SUFFIXES, ".index.json")):
            continue
        if p.stat().st_size <= _SIDE_FILE_LIMIT:
            files[p.name] = p
    return files


def hash_side_files(files: dict[str, Path]) -> dict[str, str]:
    """The SHA-256 of each side file, by name."""
    digests = {}
    for name, p in files.items():
        try:
            with p.open("rb") as f:
                digests[name] = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as e:
            raise InputError(f"cannot read {p}: {e.strerror or e}") from e
    return digests


def _json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise InputError(f"{path} is not a JSON object")
    return value


def _generation(path: Path) -> dict[str, Any]:
    """Generation settings (temperature, top_p, ...): the scalar and list values."""
    settings = _json_object(path)
    return {
        k: v
        for k, v in sorted(settings.items())
        if not k.startswith("_")
        and (v is None or isinstance(v, str | int | float | list))
    }


def iter_tensor_bytes(
    ref: TensorRef, buffer: bytearray, fds: dict[Path, int]
) -> Iterator[memoryview]:
    """The bytes of ``ref`` in chunks (read into ``buffer`` for files; ``fds`` caches
    open files, which the caller closes)."""
    if ref.span is None:
        yield memoryview(_torch_bytes(ref.tensor))
        return
    span = ref.span
    fd = fds.get(span.file)
    if fd is None:
        fd = fds[span.file] = os.open(span.file, os.O_RDONLY)
    yield from read_span(fd, span.offset, span.size, buffer)


# ---- PyTorch state dicts (torch imported lazily) --------------------------------


SAFE_TORCH = (2, 10)
"""The first torch whose ``torch.load(weights_only=True)`` has no known way to run
code from the file: CVE-2025-32434 (before 2.6) ran it, CVE-2026-24747 (before
2.10) corrupted memory."""


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise InputError(
            "reading a PyTorch .bin/.pt checkpoint needs torch",
            hint=f"{FINETUNE_EXTRA}, or convert the checkpoint to safetensors",
        ) from None
    found = tuple(int(n) for n in re.findall(r"\d+", str(torch.__version__))[:2])
    if found < SAFE_TORCH:
        raise InputError(
            "reading a PyTorch .bin/.pt checkpoint needs torch 2.10 or later (this "
            f"is {torch.__version__}): its weights_only loader can run code from "
            "the file (CVE-2025-32434, CVE-2026-24747)",
            hint=f"{FINETUNE_EXTRA} (torch>=2.10), or convert the checkpoint to "
            "safetensors",
        )
    return torch


def _torch_file(path: Path, *, key: str | None = None) -> list[TensorRef]:
    """The tensors of a state dict (of ``state[key]`` when given: a Lightning
    checkpoint's weights, without its optimizer state)."""
    torch = _torch()
    try:
        state = _torch_load(torch, path)
    except pickle.UnpicklingError as e:
        raise InputError(
            f"{path} is not a plain state dict: loading it would run code ({e})",
            hint="only tensors are read (weights_only=True); save the model as "
            "safetensors or as a state dict of tensors",
        ) from None
    except Exception as e:
        # torch's restricted unpickler raises KeyError, IndexError... on bytes
        # that are no pickle (a text file named .pt): one error, never a crash
        raise InputError(
            f"{path} is not a readable PyTorch checkpoint: {type(e).__name__}: {e}",
            hint="the file may be truncated or corrupt; nothing was recorded",
        ) from None
    if key is not None:
        if not isinstance(state, dict) or not isinstance(state.get(key), dict):
            raise InputError(f"{path} holds no {key!r} of tensors")
        state = state[key]
    refs = list(_flatten(torch, state, ""))
    if not refs:
        raise InputError(f"{path} holds no tensors")
    return refs


def _torch_load(torch: Any, path: Path) -> Any:
    try:
        return torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):  # the legacy (not zip) format cannot be mapped
            raise
        return torch.load(path, weights_only=True, map_location="cpu")


def _torch_sharded(index: Path) -> list[TensorRef]:
    weight_map = _json_object(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise InputError(f"{index}: no weight_map of tensor names to shard files")
    refs: list[TensorRef] = []
    for shard in sorted(set(map(str, weight_map.values()))):
        if "/" in shard or shard in ("", ".", ".."):
            raise InputError(f"{index}: shard {shard!r} is not a file beside the index")
        refs += _torch_file(index.parent / shard)
    return refs


def _flatten(torch: Any, value: Any, prefix: str) -> Iterator[TensorRef]:
    if isinstance(value, torch.Tensor):
        name = prefix[:-1]
        t = value.detach()
        if t.layout != torch.strided or t.device.type != "cpu":
            # a sparse tensor's bytes are not its values; a meta tensor has none
            raise InputError(
                f"tensor {name} is a {t.layout} tensor on {t.device.type}, not a "
                "dense tensor in memory: mltrail cannot hash its values",
                hint="save the dense weights (tensor.to_dense().cpu()); nothing "
                "was recorded",
            )
        dtype = _torch_dtype(torch, t.dtype, name)
        yield TensorRef(
            name, dtype, tuple(t.shape), t.numel() * t.element_size(), tensor=t
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(torch, item, f"{prefix}{key}.")
    elif isinstance(value, list | tuple | set | frozenset) and _holds_tensor(
        torch, value
    ):
        # left out, other weights there would keep the id; named by position,
        # the ids of such checkpoints recorded so far would change
        raise InputError(
            f"{prefix[:-1] or 'the checkpoint'} holds tensors in a list: a "
            "fingerprint names each tensor by its dict keys",
            hint="save the weights as a dict of tensors (a state dict); nothing "
            "was recorded",
        )


def _holds_tensor(torch: Any, value: Any) -> bool:
    """Whether a tensor is anywhere inside ``value``: a loop, not recursion (a
    list of any depth), each container looked at once (a pickle can reference
    one list from many places: following every path could take forever)."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            return True
        if id(item) in seen:
            continue
        if isinstance(item, dict):
            seen.add(id(item))
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            seen.add(id(item))
            stack.extend(item)
    return False


def _torch_dtype(torch: Any, dtype: Any, name: str) -> str:
    names = {
        "float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
        "int8": "I8", "uint8": "U8", "int16": "I16", "int32": "I32", "int64": "I64",
        "uint16": "U16", "uint32": "U32", "uint64": "U64", "bool": "BOOL",
        "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "complex64": "C64",
    }  # fmt: skip
    found = names.get(str(dtype).removeprefix("torch."))
    if found is None:
        raise InputError(f"tensor {name} has a dtype mltrail does not know: {dtype}")
    return found


def _torch_bytes(tensor: Any) -> Any:
    """A tensor's raw bytes (row-major, as safetensors stores them) as a NumPy array."""
    import torch

    # a conjugate or negative view holds other bytes than its values: resolve it
    flat = tensor.resolve_conj().resolve_neg().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return flat.view(torch.uint8).numpy()
