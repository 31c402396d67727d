"""``mltrail data``: dataset manifests and split statistics, outside of any run."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mltrail.cli.hash_bar import hash_bar_factory
from mltrail.config import resolve_home
from mltrail.errors import InputError

if TYPE_CHECKING:
    from mltrail.capture.data.files import HashedData
    from mltrail.capture.data.progress import ProgressCallback
    from mltrail.cli.state import AppState
    from mltrail.core.manifest import DatasetManifest

__all__ = ["data"]

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


def _sum_line(digest: str, name: bytes) -> bytes:
    """One line as sha256sum prints it, escaping names with a backslash or newline."""
    if b"\\" in name or b"\n" in name:
        escaped = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        return b"\\" + digest.encode() + b"  " + escaped + b"\n"
    return digest.encode() + b"  " + name + b"\n"


def _sum_lines(root: str, manifest: DatasetManifest, is_file_root: bool) -> bytes:
    """The sha256sum lines of the files of ``manifest``, named as under ``root``."""
    if is_file_root:
        (entry,) = manifest.entries
        return _sum_line(entry.sha256 or "", os.fsencode(root))
    prefix = "" if root in (".", "") else root.rstrip("/") + "/"
    raw_prefix = os.fsencode(prefix)
    if (
        "\\" in prefix
        or "\n" in prefix
        or raw_prefix != prefix.encode("utf-8", "replace")  # not UTF-8
        or any(e.raw_path is not None for e in manifest.entries)
    ):
        return _sum_lines_bytes(raw_prefix, manifest)
    lines = []  # the common case: text names, joined and encoded once
    for entry in manifest.entries:
        sha, path = entry.sha256, entry.path
        if sha is None:  # links and folders are not printed
            continue
        if "\\" in path or "\n" in path:
            lines.append(_sum_line(sha, (prefix + path).encode()).decode())
        else:
            lines.append(f"{sha}  {prefix}{path}\n")
    return "".join(lines).encode()


def _sum_lines_bytes(prefix: bytes, manifest: DatasetManifest) -> bytes:
    lines = []
    for entry in manifest.entries:
        if entry.sha256 is not None:
            raw = entry.raw_path
            name = prefix + (entry.path.encode() if raw is None else raw)
            lines.append(_sum_line(entry.sha256, name))
    return b"".join(lines)


class _Result:
    """One PATH's result: reused from the tree cache, or a manifest computed now."""

    def __init__(
        self,
        path: str,
        *,
        manifest: DatasetManifest | None = None,
        is_file: bool = False,
        hashed: HashedData | None = None,
    ) -> None:
        from mltrail.capture.data.files import HashedData

        self.path = path
        self.is_file = is_file
        self.hashed = hashed or HashedData(manifest=manifest)
        self.reused = self.hashed.reused  # from the tree cache
        self.dataset_id = self.hashed.dataset_id
        self.file_count, self.total_bytes = self.hashed.files, self.hashed.bytes
        self._sums = self.hashed.view or None

    @property
    def data(self) -> bytes:
        """The manifest bytes."""
        return self.hashed.data

    @property
    def manifest(self) -> DatasetManifest:
        return self.hashed.manifest

    def sums(self) -> bytes:
        """The sha256sum lines of its files."""
        if self._sums is None:
            self._sums = _sum_lines(self.path, self.manifest, self.is_file)
        return self._sums


def _view_key(path: str) -> bytes:
    """What the sha256sum lines stored with a folder's tree result depend on: the
    PATH as given, and how they are written (bump the 1 if `_sum_lines` changes)."""
    return b"sha256sum/1\0" + os.fsencode(path)


def _hash_one(
    path: str, cache: Any, follow_links: bool, *, need_manifest: bool = True
) -> _Result:
    from mltrail.capture.data.files import hash_dataset
    from mltrail.capture.data.urls import is_remote

    factory = hash_bar_factory()
    bar = factory(f"hashing {path}") if factory else contextlib.nullcontext(None)
    with bar as progress:
        if is_remote(path):
            return _Result(path, manifest=_hash_remote(path, progress))
        is_file = Path(path).is_file()
        hashed = hash_dataset(
            Path(path),
            cache=cache,
            progress=progress,
            follow_links=follow_links,
            need_manifest=need_manifest,
            view_key=_view_key(path),
            view=lambda m: _sum_lines(path, m, is_file),
        )
    return _Result(path, hashed=hashed, is_file=is_file)


def _hash_remote(path: str, progress: ProgressCallback | None) -> DatasetManifest:
    from mltrail.capture.data.progress import count_progress
    from mltrail.capture.data.remote import hash_remote
    from mltrail.core.manifest import compute_manifest

    listing = hash_remote(path, progress=count_progress(progress))
    return compute_manifest(listing.entries)


def _open_cache(ctx: click.Context, enabled: bool) -> Any:
    if not enabled:
        return None
    from mltrail.capture.data.hashcache import HashCache, default_cache_path
    from mltrail.storage.readonly import can_write

    state: AppState = ctx.obj
    path = default_cache_path(resolve_home(state.home, os.environ))
    return HashCache(path) if can_write(path) else None  # a read-only home: no cache


def _write_manifest(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
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
    _print_sums(results)


def _as_json(path: str, manifest: DatasetManifest) -> dict[str, Any]:
    return {
        "path": path,
        "dataset": manifest.dataset_id,
        "files": manifest.file_count,
        "bytes": manifest.total_bytes,
        "entries": [e.to_dict() for e in manifest.entries],
    }


def _print_sums(results: list[_Result]) -> None:
    out = sys.stdout.buffer
    for r in results:
        out.write(r.sums())
        click.echo(
            f"dataset {r.dataset_id}  {r.path}: {r.file_count:,} files, "
            f"{r.total_bytes:,} bytes",
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
