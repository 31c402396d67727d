"""``mltrail data``: dataset manifests and split statistics, outside of any run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mltrail.cli.data_hash import (  # _sum_lines, _hash_one: for the tests
    _hash_one,
    _sum_lines,
    open_cache,
    print_sums,
)
from mltrail.errors import InputError

if TYPE_CHECKING:
    from mltrail.cli.state import AppState
    from mltrail.core.manifest import DatasetManifest

__all__ = ["_hash_one", "_sum_lines", "data"]

# As mltrail.cli.output's json_option: not imported from there, because that module
# loads rich and the ledger, which `mltrail data hash` does not need (start-up time
# is most of the time of re-hashing an unchanged dataset).
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print machine-readable JSON instead of text.",
)


@click.group()
def data() -> None:
    """Dataset manifests (SHA-256 of every file) and split statistics.

    \b
    Examples:
      mltrail data hash data/train data/val          # sha256sum-compatible lines
      mltrail data hash data/ --json                 # manifest and dataset id
      mltrail data describe train=data/train.csv test=data/test.csv --label default
    """


def _write_manifest(path: Path, data: bytes) -> None:
    from mltrail.cli.out_file import write_output_file

    try:
        write_output_file(path, data)
    except OSError as e:
        raise InputError(
            f"cannot write the manifest to {path}: {e.strerror or e}",
            hint="name a file in a folder that exists and can be written",
        ) from e


@data.command("hash")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--no-cache", is_flag=True, help="Read every file, ignoring the hash cache."
)
@click.option(
    "--follow-links", is_flag=True, help="Follow symbolic links (loops refused)."
)
@click.option(
    "--manifest",
    "manifest_out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the manifest (one canonical JSON line per file) here; one PATH only.",
)
@json_option
@click.pass_context
def hash_cmd(
    ctx: click.Context,
    paths: tuple[str, ...],
    no_cache: bool,
    follow_links: bool,
    manifest_out: Path | None,
    as_json: bool,
) -> None:
    """Hash every file under PATHs: the same lines as `sha256sum`, and a dataset id.

    A PATH may be an fsspec URL (s3://bucket/prefix/, https://host/file.csv, ...):
    a store's own SHA-256 is used when it has one, else the bytes are streamed.

    Files are hashed in parallel on all cores and remembered in a cache in the
    ledger home keyed by (device, inode, size, mtime, ctime), so an unchanged
    dataset is re-hashed without reading it (what the cache says is trusted:
    to check data against a record, use --no-cache, or `mltrail reproduce
    RUN --check`, which reads every file). stdout is exactly what `sha256sum`
    prints (so `mltrail data hash d | sha256sum -c` works); the dataset id (the
    Merkle root of the manifest), file count and size go to stderr. Symbolic
    links are recorded as links and not printed.
    """
    if manifest_out is not None and len(paths) != 1:
        raise click.UsageError("--manifest takes exactly one PATH")
    state: AppState = ctx.obj
    cache = open_cache(state.home, not no_cache)
    results = []
    try:
        for path in paths:
            need = as_json or manifest_out is not None
            results.append(_hash_one(path, cache, follow_links, need_manifest=need))
    finally:
        if cache is not None:
            cache.close()
    if manifest_out is not None:
        _write_manifest(manifest_out, results[0].data)
    if as_json:
        from mltrail.cli.output import emit_json

        emit_json([_as_json(r.path, r.manifest) for r in results])
        return
    print_sums(results)


def _as_json(path: str, manifest: DatasetManifest) -> dict[str, Any]:
    return {
        "path": path,
        "dataset": manifest.dataset_id,
        "files": manifest.file_count,
        "bytes": manifest.total_bytes,
        "entries": [e.to_dict() for e in manifest.entries],
    }


def _parse_splits(values: tuple[str, ...]) -> dict[str, Path]:
    splits: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value).stem, value
        if not name or not path:
            raise click.BadParameter(
                f"{value!r} is not SPLIT=PATH, e.g. train=train.csv"
            )
        if name in splits:
            raise click.BadParameter(f"split {name!r} is given twice")
        splits[name] = Path(path)
    return splits


@data.command()
@click.argument("splits", nargs=-1, required=True, metavar="SPLIT=PATH...")
@click.option("--label", help="The label column: its distribution per split.")
@json_option
def describe(splits: tuple[str, ...], label: str | None, as_json: bool) -> int:
    """Describe table splits (CSV, TSV, JSONL, Parquet): rows, columns and types,
    label distribution, numeric summaries, and rows shared between splits.

    Rows that appear in more than one split are reported as a leakage warning
    (and make the command exit 1, so it can gate a pipeline).

    \b
    Examples:
      mltrail data describe train=data/train.csv validation=data/val.csv --label y
      mltrail data describe data/*.parquet --json
    """
    from mltrail.capture.data.splits import describe_splits
    from mltrail.cli.output import emit_json

    report = describe_splits(_parse_splits(splits), label=label)
    if as_json:
        emit_json(report)
    else:
        _print_report(report, label)
    return 1 if report.get("warnings") else 0


def _print_report(report: dict[str, Any], label: str | None) -> None:
    from rich.table import Table

    from mltrail.cli.output import console, err_console

    table = Table(box=None, pad_edge=False)
    for column in ("split", "format", "rows", "columns", "label distribution"):
        table.add_column(column)
    for name, split in report["splits"].items():
        table.add_row(
            name,
            split["format"],
            f"{split['rows']:,}",
            str(len(split["columns"])),
            _label_text(split.get("label")) if label else "",
        )
    console.print(table)
    for warning in report.get("warnings", []):
        err_console.print(f"warning: {warning}", style="yellow", markup=False)


def _label_text(label: dict[str, Any] | None) -> str:
    if not label:
        return ""
    total = sum(label["counts"].values()) + label.get("other", 0)
    top = sorted(label["counts"].items(), key=lambda kv: -kv[1])[:4]
    parts = [f"{k}: {v / total:.1%}" for k, v in top] if total else []
    return ", ".join(parts) + (" ..." if label.get("distinct", 0) > 4 else "")
