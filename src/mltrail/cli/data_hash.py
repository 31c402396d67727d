"""``mltrail data hash``'s work, without click: hashing PATHs through the hash
cache and printing ``sha256sum`` lines.

:mod:`mltrail.cli.data_cmd` defines the click command on top of it, and
:func:`run_plain` runs the plain form of the command (``data hash PATH...
[--no-cache] [--follow-links]``) straight from :mod:`mltrail.cli.main`, so that
re-hashing an unchanged dataset does not pay for importing click (ADR 0035).
Both print the same bytes and exit with the same codes.
"""

from __future__ import annotations

import os
import sys

from mltrail.cli.hash_bar import hash_bar_factory
from mltrail.errors import MltrailError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from mltrail.capture.data.files import HashedData
    from mltrail.capture.data.progress import ProgressCallback
    from mltrail.core.manifest import DatasetManifest

__all__ = ["open_cache", "print_sums", "run_plain"]

_PLAIN_FLAGS = {"--no-cache", "--follow-links"}


def run_plain(args: list[str]) -> bool:
    """Run ``mltrail data hash`` with ``args`` (what follows ``hash``) if they are
    paths and the flags ``--no-cache`` and ``--follow-links`` only; return False
    (nothing done) otherwise, for click to parse them.

    Errors are printed and exit as the click command's do (``error:``/``hint:``
    lines, the error's exit code; 130 on Ctrl-C).
    """
    paths = [a for a in args if a not in _PLAIN_FLAGS]
    if not paths or any(a.startswith("-") for a in paths):
        return False  # options, --help, --: click's
    try:
        from mltrail.cli.main import check_arguments

        check_arguments(["data", "hash", *args])
        cache = open_cache(None, "--no-cache" not in args)
        results = []
        try:
            for path in paths:
                results.append(
                    _hash_one(
                        path, cache, "--follow-links" in args, need_manifest=False
                    )
                )
        finally:
            if cache is not None:
                cache.close()
        print_sums(results)
    except MltrailError as e:
        from mltrail.cli.app import fail

        fail(e)
    except (EOFError, KeyboardInterrupt):
        from mltrail.cli.app import aborted

        sys.stderr.write("\n")  # as click does before its Abort
        aborted()
    return True


def open_cache(home: Path | None, enabled: bool) -> Any:
    """The hash cache of the ledger home (``--home``, else ``$MLTRAIL_HOME``, else
    ``~/.mltrail``); None when ``enabled`` is false or the home is read-only."""
    if not enabled:
        return None
    from mltrail.capture.data.hashcache import HashCache, cache_file
    from mltrail.home_dir import home_folder
    from mltrail.storage.readonly import can_write

    path = cache_file(home_folder(home, os.environ))  # str: pathlib is not imported
    return HashCache(path) if can_write(path) else None  # a read-only home: no cache


def print_sums(results: list[_Result]) -> None:
    """Each result's sha256sum lines on stdout, its dataset id line on stderr."""
    out = sys.stdout.buffer
    for r in results:
        out.write(r.sums())
        _echo_err(
            f"dataset {r.dataset_id}  {r.path}: {r.file_count:,} files, "
            f"{r.total_bytes:,} bytes"
        )
    out.flush()


def _echo_err(text: str) -> None:
    """``click.echo(text, err=True)``: written as is when it is plain ASCII text
    (click would print it unchanged), else through click (which strips ANSI
    escapes from a stream that is not a terminal, and picks the encoding)."""
    if text.isascii() and "\x1b" not in text:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
        return
    import click

    click.echo(text, err=True)


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
    factory = hash_bar_factory()
    if factory is None:  # no bar (contextlib.nullcontext: not imported for it)
        return _hash_with(path, cache, follow_links, need_manifest, None)
    with factory(f"hashing {path}") as progress:
        return _hash_with(path, cache, follow_links, need_manifest, progress)


def _hash_with(
    path: str,
    cache: Any,
    follow_links: bool,
    need_manifest: bool,
    progress: ProgressCallback | None,
) -> _Result:
    from mltrail.capture.data.files import hash_dataset

    if "://" in path and _is_remote(path):
        return _hash_remote(path, progress)
    is_file = os.path.isfile(path)
    hashed = hash_dataset(
        path,
        cache=cache,
        progress=progress,
        follow_links=follow_links,
        need_manifest=need_manifest,
        view_key=_view_key(path),
        view=lambda m: _sum_lines(path, m, is_file),
    )
    return _Result(path, hashed=hashed, is_file=is_file)


def _is_remote(path: str) -> bool:
    from mltrail.capture.data.urls import is_remote  # its patterns: ~2 ms to compile

    return is_remote(path)


def _hash_remote(path: str, progress: ProgressCallback | None) -> _Result:
    """A URL's objects, hashed, shown under the URL without its credentials (as
    a run records it); a URL naming one object prints as one file does."""
    from mltrail.capture.data.progress import count_progress
    from mltrail.capture.data.remote import hash_remote
    from mltrail.core.manifest import compute_manifest

    listing = hash_remote(path, progress=count_progress(progress))
    shown = listing.url
    # one object is listed under its base name; a folder URL's last part is ""
    name = shown.split("?", 1)[0].rsplit("/", 1)[-1]
    single = len(listing.entries) == 1 and listing.entries[0].path == name
    return _Result(shown, manifest=compute_manifest(listing.entries), is_file=single)
