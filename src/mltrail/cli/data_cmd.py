"""``mltrail data``: dataset manifests and split statistics, outside of any run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mltrail.cli.output import emit_json, err_console, json_option
from mltrail.config import resolve_home

if TYPE_CHECKING:
    from collections.abc import Callable

    from mltrail.capture.hashing import HashProgress
    from mltrail.cli.state import AppState
    from mltrail.core.manifest import DatasetManifest, FileEntry

__all__ = ["data"]


@click.group()
def data() -> None:
    """Dataset manifests (SHA-256 of every file) and split statistics.

    \b
    Examples:
      mltrail data hash data/train data/val          # sha256sum-compatible lines
      mltrail data hash data/ --json                 # manifest and dataset id
      mltrail data describe train=data/train.csv test=data/test.csv --label default
    """


def _sum_line(digest: str, name: bytes) -> bytes:
    """One line as sha256sum prints it, escaping names with a backslash or newline."""
    if b"\\" in name or b"\n" in name:
        escaped = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + digest.encode() + b"  " + escaped + b"\n"
    return digest.encode() + b"  " + name + b"\n"


def _display(root: str, entry: FileEntry, is_file_root: bool) -> bytes:
    if is_file_root:
        return os.fsencode(root)
    name = entry.raw_path if entry.raw_path is not None else entry.path.encode()
    if root in (".", ""):
        return name
    return os.fsencode(root.rstrip("/")) + b"/" + name


class _Bar:
    """A progress bar on stderr that appears only when hashing takes over a second."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.start = time.monotonic()
        self.progress: Any = None
        self.task: Any = None

    def __call__(self, p: HashProgress) -> None:
        if self.progress is None:
            if time.monotonic() - self.start < 1.0 or not err_console.is_terminal:
                return
            self._open()
        self.progress.update(
            self.task,
            completed=p.bytes_done,
            total=p.bytes_total,
            files=f"{p.files_done:,}"
            + (f"/{p.files_total:,}" if p.files_total else ""),
        )

    def _open(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
        )
        self.task = self.progress.add_task(self.label, total=None, files="0")
        self.progress.start()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _hash_one(
    path: str, cache: Any, follow_links: bool
) -> tuple[DatasetManifest, bool]:
    from mltrail.capture.data import capture_file_entries
    from mltrail.capture.remote import hash_remote, is_remote
    from mltrail.core.manifest import compute_manifest

    if is_remote(path):
        return compute_manifest(hash_remote(path).entries), False
    bar = _Bar(f"hashing {path}")
    progress: Callable[[HashProgress], None] = bar
    try:
        entries = capture_file_entries(
            Path(path), cache=cache, progress=progress, follow_links=follow_links
        )
    finally:
        bar.close()
    return compute_manifest(entries), Path(path).is_file()


def _open_cache(ctx: click.Context, enabled: bool) -> Any:
    if not enabled:
        return None
    from mltrail.capture.hashcache import HashCache, default_cache_path

    state: AppState = ctx.obj
    home = resolve_home(state.home, os.environ)
    return HashCache(default_cache_path(home))


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
    dataset is re-hashed without reading it. stdout is exactly what `sha256sum`
    prints (so `mltrail data hash d | sha256sum -c` works); the dataset id (the
    Merkle root of the manifest), file count and size go to stderr. Symbolic
    links are recorded as links and not printed.
    """
    if manifest_out is not None and len(paths) != 1:
        raise click.UsageError("--manifest takes exactly one PATH")
    cache = _open_cache(ctx, not no_cache)
    results = []
    try:
        for path in paths:
            manifest, is_file = _hash_one(path, cache, follow_links)
            results.append((path, manifest, is_file))
    finally:
        if cache is not None:
            cache.close()
    if manifest_out is not None:
        manifest_out.write_bytes(results[0][1].data)
    if as_json:
        emit_json([_as_json(path, m) for path, m, _ in results])
        return
    _print_sums(results)


def _as_json(path: str, manifest: DatasetManifest) -> dict[str, Any]:
    return {
        "path": path,
        "dataset": manifest.dataset_id,
        "files": manifest.file_count,
        "bytes": manifest.total_bytes,
        "entries": [e.to_dict() for e in manifest.entries],
    }


def _print_sums(results: list[tuple[str, DatasetManifest, bool]]) -> None:
    out = sys.stdout.buffer
    for path, manifest, is_file in results:
        for entry in manifest.entries:
            if entry.is_file and entry.sha256 is not None:
                out.write(_sum_line(entry.sha256, _display(path, entry, is_file)))
        click.echo(
            f"dataset {manifest.dataset_id}  {path}: {manifest.file_count:,} files, "
            f"{manifest.total_bytes:,} bytes",
            err=True,
        )
    out.flush()


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
    from mltrail.capture.splits import describe_splits

    report = describe_splits(_parse_splits(splits), label=label)
    if as_json:
        emit_json(report)
    else:
        _print_report(report, label)
    return 1 if report.get("warnings") else 0


def _print_report(report: dict[str, Any], label: str | None) -> None:
    from rich.table import Table

    from mltrail.cli.output import console

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
