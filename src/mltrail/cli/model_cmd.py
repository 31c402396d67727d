"""``mltrail model``: model fingerprints and weight deltas, outside of any run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mltrail.cli.hash_bar import hash_bar_factory
from mltrail.cli.output import COUNT, console, emit_json, json_option

if TYPE_CHECKING:
    from mltrail.record.finetune import ScannedModel

__all__ = ["delta", "fingerprint"]

_PATH = click.Path(exists=True, path_type=Path)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _settings(values: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v}" for k, v in values.items())


@click.command()
@click.argument("path", type=_PATH)
@click.option("--tensors", "show_tensors", is_flag=True, help="List every tensor.")
@json_option
def fingerprint(path: Path, show_tensors: bool, as_json: bool) -> None:
    """Fingerprint the checkpoint at PATH: every tensor's name, dtype, shape and
    SHA-256, and the model id (their Merkle root), the same whatever the file
    or shard layout. PATH is a .safetensors file, a shard index, a Hugging Face
    model folder, a PEFT adapter folder, or a PyTorch .bin/.pt state dict
    (needs torch). Config, tokenizer and generation files are hashed too.

    \b
    Examples:
      mltrail model fingerprint ./model
      mltrail model fingerprint model.safetensors --json
      mltrail model fingerprint ./model --tensors
    """
    from mltrail.record.finetune import scan_model, without_blobs

    scanned = scan_model(path, progress=hash_bar_factory(quiet=as_json))
    info = without_blobs(scanned.part)
    if scanned.source.generation:
        info["generation"] = scanned.source.generation
    if as_json:
        if show_tensors:
            info["tensor_list"] = [t.to_dict() for t in scanned.fingerprint.tensors]
        emit_json(info)
        return
    _print_fingerprint(info, scanned if show_tensors else None)


def _print_fingerprint(info: dict[str, Any], scanned: ScannedModel | None) -> None:
    from rich.table import Table

    console.print(f"model       {info['model']}")
    console.print(f"format      {info['format']}")
    console.print(f"tensors     {info['tensors']:,}")
    console.print(f"parameters  {info['parameters']:,}")
    console.print(f"bytes       {info['bytes']:,} ({_human(info['bytes'])})")
    dtypes = ", ".join(f"{k} {v:,}" for k, v in info["dtypes"].items())
    console.print(f"dtypes      {dtypes}")
    if info.get("generation"):
        console.print(f"generation  {_settings(info['generation'])}")
    for name, digest in (info.get("files") or {}).items():
        console.print(f"file        {digest}  {name}")
    if scanned is not None:
        table = Table("tensor", "dtype", "shape", "sha256", box=None)
        for t in scanned.fingerprint.tensors:
            table.add_row(t.name, t.dtype, str(list(t.shape)), t.sha256)
        console.print(table)


@click.command()
@click.argument("base", type=_PATH)
@click.argument("tuned", type=_PATH, required=False)
@click.option(
    "--adapter",
    type=_PATH,
    help="A PEFT adapter folder trained on BASE: record its settings and the norm "
    "of each LoRA update, ||(alpha/r) B A||.",
)
@click.option(
    "--top", type=COUNT, default=10, show_default=True, help="How many tensors to list."
)
@json_option
def delta(
    base: Path, tuned: Path | None, adapter: Path | None, top: int, as_json: bool
) -> None:
    """How the weights of TUNED moved away from BASE: per tensor changed or not,
    L2 norm of the difference, relative change ||dW||/||W|| and largest absolute
    change; tensors added, removed or reshaped; the share of parameters changed.
    With --adapter (and no TUNED), the norm of each LoRA module's update.

    \b
    Examples:
      mltrail model delta ./base ./finetuned
      mltrail model delta ./base ./merged --top 20 --json
      mltrail model delta ./base --adapter ./lora
    """
    from mltrail.errors import InputError
    from mltrail.record.finetune import finetune_body, without_blobs

    if tuned is None and adapter is None:
        raise InputError(
            "nothing to compare BASE with",
            hint="mltrail model delta BASE TUNED, or BASE --adapter DIR",
        )
    body = finetune_body(
        base=base,
        adapter=adapter,
        model=tuned,
        top=top,
        progress=hash_bar_factory(quiet=as_json),
    )
    result = without_blobs(body)
    if as_json:
        emit_json(result)
        return
    _print_delta(result)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _print_delta(result: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    console.print(f"base        {result['base']['model']}")
    for part in ("adapter", "model"):
        if part in result:
            console.print(f"{part:<11} {result[part]['model']}")
    adapter = result.get("adapter")
    if adapter:
        console.print(
            f"adapter     {adapter.get('method')} r={adapter.get('r')} "
            f"alpha={adapter.get('lora_alpha')} targets={adapter.get('target_modules')}"
        )
        for row in adapter.get("rank_mismatch", []):
            console.print(
                Text.assemble(
                    ("warning", "yellow"), f": rank of {row['module']}: {row}"
                )
            )
    found = result.get("delta", {})
    if "tensors_changed" in found:
        changed, same = found["tensors_changed"], found["tensors_unchanged"]
        console.print(
            f"changed     {changed:,} tensors, {same:,} unchanged; "
            f"{found['parameters_changed']:,} parameters ({found['share_changed']:.2%})"
        )
        for key in ("added", "removed", "reshaped"):
            if found[key]:
                console.print(f"{key:<11} {', '.join(found[key])}")
        table = Table("tensor", "l2", "relative", "max |dW|", box=None)
        for row in found["top"]:
            table.add_row(
                row["name"],
                _fmt(row["l2"]),
                _fmt(row["relative"]),
                _fmt(row["max_abs"]),
            )
        console.print(table)
    if "lora" in found:
        table = Table("LoRA module", "||(alpha/r) B A||", "relative", box=None)
        for row in found["lora"]:
            table.add_row(row["module"], _fmt(row["norm"]), _fmt(row.get("relative")))
        console.print(table)
    if result.get("generation"):
        console.print(f"generation  {_settings(result['generation'])}")
