"""Hash a file or a folder tree: in parallel, streamed, cached, exact about odd files.

:func:`hash_tree` returns one :class:`~mltrail.core.manifest.FileEntry` per file,
symbolic link and empty folder; the SHA-256 of a file is what ``sha256sum`` prints.
What it does with each hard case:

- symbolic links are recorded as links (their ``readlink`` text), not followed; with
  ``follow_links`` they are followed, and a folder reached again through a link on its
  own path raises :class:`CaptureError` naming the loop (so does a broken link);
- a FIFO, socket or device raises ``CaptureError`` ("not a regular file"); so does a
  file or folder that cannot be read: nothing partial is returned;
- a file whose ``(dev, ino, size, mtime_ns, ctime_ns)`` differs between the walk and
  the end of its hashing is hashed again, up to three times, then refused;
- empty files are files (the SHA-256 of no bytes); an empty folder is an entry;
- a name that is not UTF-8 keeps its bytes in ``raw_path`` and a backslash-escaped
  ``path``.

How it is fast (``benchmarks/bench_hash.py`` has the measurements):

- the walk and the cache lookups run in the calling thread: they are bound by the
  interpreter, and listing folders in other threads made the warm path (nothing
  changed) slower, not faster, as the threads fought for the GIL;
- small files (under :data:`INLINE_BELOW`) are hashed in the calling thread too:
  for them opening, reading and stat-ing cost more than hashing, and that work
  holds the GIL, so threads only take turns at it (two threads made a million
  files of 1 B-4 KiB twice as slow as one);
- larger files go, as the walk finds them, to a few threads (one per core): large
  ones alone, largest known first, the others in batches. SHA-256 is sequential,
  so one file is hashed by one thread; ``hashlib`` and ``read`` release the GIL
  for the bulk of the work, so threads scale across cores without the pickling
  and start-up of processes. Half the threads start on large files and half on
  the others (see :class:`_Work`); entries are made in the calling thread;
- memory stays bounded whatever the files' sizes: each worker streams its files
  through one :data:`BUFFER_SIZE` buffer, and at most :data:`MAX_QUEUED` files wait
  for a worker. What grows with the number of files is the list returned (about
  300 bytes per entry).
"""

from __future__ import annotations

import hashlib
import heapq
import os
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, NamedTuple

from mltrail.capture.hashcache import CacheWriter, FolderKey, StatKey, stat_key
from mltrail.core.manifest import FileEntry
from mltrail.errors import CaptureError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mltrail.capture.hashcache import HashCache

__all__ = ["BUFFER_SIZE", "HashProgress", "hash_file", "hash_tree"]

BUFFER_SIZE = 1 << 20
BATCH_BYTES = 8 << 20
BATCH_FILES = 256
LOOKUP_BATCH = 4_000
SAVE_EVERY = 20_000  # files per cache transaction
INLINE_BELOW = 32 << 10
MAX_QUEUED = 1 << 16  # files waiting for a worker, at most (a few tens of MB)
MAX_TRIES = 3
PROGRESS_DELAY_S = 1.0
PROGRESS_EVERY_S = 0.1
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NOTHING_RECORDED = "; nothing was recorded"
_Hashed = tuple[bytes, str, StatKey, FolderKey, int]  # rel, sha, key, folder, when


@dataclass(frozen=True, slots=True)
class HashProgress:
    """How far a :func:`hash_tree` has got.

    ``files_total`` and ``bytes_total`` are None while the tree is still being walked
    (``files_found`` counts the files seen so far). ``files_done`` counts files whose
    hash is known (from the cache or hashed); ``bytes_total`` and ``bytes_done`` count
    only the bytes that must be read (files the cache did not know).
    """

    files_done: int
    bytes_done: int
    files_total: int | None
    bytes_total: int | None
    files_found: int = 0
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        """Bytes hashed per second so far."""
        return self.bytes_done / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Dir(NamedTuple):
    """A folder to list: its path, its path in the manifest, the folders above it."""

    full: bytes
    rel: bytes  # b"" for the root, else b"a/b/"
    ancestors: tuple[tuple[FolderKey, bytes], ...]  # (dev, ino) and rel, itself last

    @property
    def ident(self) -> FolderKey:
        return self.ancestors[-1][0]


class _Listing(NamedTuple):
    """What one folder holds: regular files (names and stat keys), folders, others."""

    folder: _Dir
    names: list[bytes]
    keys: list[StatKey]
    dirs: list[_Dir]
    entries: list[FileEntry]  # links, and the folder itself when empty


class _File(NamedTuple):
    """A regular file to hash, with its stat key when it was listed."""

    full: bytes
    rel: bytes
    key: StatKey
    folder: FolderKey


class _StoppedError(Exception):
    """Another worker failed: stop hashing."""


class _Meter:
    """One worker's read buffer and byte count (written by that worker only)."""

    def __init__(self, stop: threading.Event) -> None:
        self.buffer = bytearray(BUFFER_SIZE)
        self.view = memoryview(self.buffer)
        self.stop = stop
        self.done = 0


def _hash_fd(fd: int, meter: _Meter) -> tuple[str, int]:
    """SHA-256 hex and length of what ``fd`` reads until end of file."""
    digest = hashlib.sha256()
    buffers, view, total = [meter.buffer], meter.view, 0
    while n := os.readv(fd, buffers):
        digest.update(view[:n])
        total += n
        meter.done += n
        if meter.stop.is_set():
            raise _StoppedError
    return digest.hexdigest(), total


def _show(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


def _entry_name(rel: bytes) -> tuple[str, bytes | None]:
    """The manifest path of ``rel``, and its raw bytes when they are not UTF-8."""
    try:
        return rel.decode(), None
    except UnicodeDecodeError:
        return _show(rel), rel


def _unreadable(path: bytes, error: OSError) -> CaptureError:
    return CaptureError(
        f"cannot read {_show(path)}: {error.strerror or error}",
        hint="check its permissions" + _NOTHING_RECORDED,
    )


def _changed(path: bytes, how: str) -> CaptureError:
    return CaptureError(
        f"{_show(path)} changed while it was hashed{how}",
        hint="capture it when nothing is writing to it" + _NOTHING_RECORDED,
    )


def _not_regular(path: bytes, mode: int) -> CaptureError:
    kinds = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}
    kind = kinds.get(stat.S_IFMT(mode), "a device or other special file")
    return CaptureError(
        f"{_show(path)} is {kind}, not a regular file",
        hint="move it out of the folder being captured" + _NOTHING_RECORDED,
    )


class _Walker:
    """Lists one folder: files with their stat keys, links, subfolders to walk."""

    def __init__(self, follow_links: bool) -> None:
        self.follow_links = follow_links

    def list_dir(self, folder: _Dir) -> _Listing:
        listing = _Listing(folder, [], [], [], [])
        names, keys = listing.names, listing.keys
        try:
            with os.scandir(folder.full) as it:
                for entry in it:
                    if entry.is_file(follow_symlinks=False):  # the common case, inline
                        names.append(entry.name)
                        keys.append(stat_key(entry.stat(follow_symlinks=False)))
                    else:
                        self._add_other(listing, entry)
        except OSError as e:  # the folder, or an entry that vanished or cannot be read
            name = e.filename if isinstance(e.filename, bytes) else folder.full
            raise _unreadable(name, e) from e
        if not (names or listing.dirs or listing.entries) and folder.rel:
            path, raw = _entry_name(folder.rel[:-1])
            listing.entries.append(FileEntry(path, is_dir=True, raw_path=raw))
        return listing

    def _add_other(self, listing: _Listing, entry: os.DirEntry[bytes]) -> None:
        if entry.is_dir(follow_symlinks=False):
            self._add_dir(listing, entry, entry.stat(follow_symlinks=False))
        elif not entry.is_symlink():
            raise _not_regular(entry.path, entry.stat(follow_symlinks=False).st_mode)
        elif self.follow_links:
            self._follow(listing, entry)
        else:
            target = os.readlink(entry.path)
            path, raw = _entry_name(listing.folder.rel + entry.name)
            listing.entries.append(FileEntry(path, link=_show(target), raw_path=raw))

    def _add_dir(
        self, listing: _Listing, entry: os.DirEntry[bytes], st: os.stat_result
    ) -> None:
        folder = listing.folder
        rel = folder.rel + entry.name
        ident = (st.st_dev, st.st_ino)
        for seen, seen_rel in folder.ancestors:
            if seen == ident:
                via = (
                    "symbolic link" if entry.is_symlink() else "folder (a bind mount?)"
                )
                raise CaptureError(
                    f"{via} loop: {_show(rel)} leads back to {_show(seen_rel) or '.'}",
                    hint="capture without following links, or remove the loop"
                    + _NOTHING_RECORDED,
                )
        listing.dirs.append(
            _Dir(entry.path, rel + b"/", (*folder.ancestors, (ident, rel)))
        )

    def _follow(self, listing: _Listing, entry: os.DirEntry[bytes]) -> None:
        try:
            st = os.stat(entry.path)
        except OSError as e:
            raise CaptureError(
                f"cannot follow the symbolic link {_show(entry.path)}: {e.strerror or e}",
                hint="fix or remove the link, or capture without following links"
                + _NOTHING_RECORDED,
            ) from e
        if stat.S_ISDIR(st.st_mode):
            self._add_dir(listing, entry, st)
        elif stat.S_ISREG(st.st_mode):
            listing.names.append(entry.name)
            listing.keys.append(stat_key(st))
        else:
            raise _not_regular(entry.path, st.st_mode)


class _Reporter:
    """Calls ``progress`` from the calling thread: after 1 s, then at most 10 times/s."""

    def __init__(self, callback: Callable[[HashProgress], None] | None) -> None:
        self.callback = callback
        self.start = time.monotonic()
        self.next_at = self.start + PROGRESS_DELAY_S
        self.shown = False

    def due(self) -> bool:
        return self.callback is not None and time.monotonic() >= self.next_at

    def report(self, snapshot: HashProgress, *, final: bool = False) -> None:
        if self.callback is None or (final and not self.shown):
            return
        self.callback(snapshot)
        self.shown = True
        self.next_at = time.monotonic() + PROGRESS_EVERY_S


class _Work:
    """Files to hash, handed from the walk to the workers as they are found.

    Large files go alone, largest known first; small ones in batches. Half the
    workers take large files first and half small ones, so that threads hashing
    large files (which hardly need the GIL) run beside those hashing small files
    (which need it for every open, read and stat), rather than all of them taking
    turns at the GIL on small files at the end. At most MAX_QUEUED files wait: then
    the walk waits for the workers rather than holding the whole tree in memory.
    """

    def __init__(self) -> None:
        self.queued = 0
        self.ready = threading.Condition()
        self.large: list[tuple[int, int, list[_File]]] = []  # heap: (-size, n, [file])
        self.small: deque[list[_File]] = deque()
        self.batch: list[_File] = []
        self.batch_size = self.tasks = 0
        self.closed = False

    def add(self, file: _File) -> None:
        size = file.key[2]
        if size >= BATCH_BYTES:
            self.tasks += 1
            with self.ready:
                heapq.heappush(self.large, (-size, self.tasks, [file]))
                self.queued += 1
                self.ready.notify()
            return
        if not self.batch:
            self.tasks += 1
        self.batch.append(file)
        self.batch_size += size
        if self.batch_size >= BATCH_BYTES or len(self.batch) >= BATCH_FILES:
            self._flush()

    def _flush(self) -> None:
        with self.ready:
            if self.batch:
                self.small.append(self.batch)
                self.queued += len(self.batch)
                self.ready.notify()
            self.batch, self.batch_size = [], 0

    def close(self) -> None:
        """No more files: workers finish what is queued, then stop."""
        self._flush()
        with self.ready:
            self.closed = True
            self.ready.notify_all()

    def full(self) -> bool:
        return self.queued >= MAX_QUEUED

    def take(self, large_first: bool) -> list[_File] | None:
        """The next batch (waiting for one), or None once closed and empty."""
        with self.ready:
            while True:
                if self.large and (large_first or not self.small):
                    self.queued -= 1
                    return heapq.heappop(self.large)[2]
                if self.small:
                    batch = self.small.popleft()
                    self.queued -= len(batch)
                    return batch
                if self.closed:
                    return None
                self.ready.wait()


class _Engine:
    """One :func:`hash_tree` call: the walk, the cache, the hashing threads, progress."""

    def __init__(
        self,
        workers: int,
        follow_links: bool,
        cache: HashCache | None,
        progress: Callable[[HashProgress], None] | None,
    ) -> None:
        self.workers = workers
        self.walker = _Walker(follow_links)
        self.restat = os.stat if follow_links else os.lstat
        self.cache = (
            CacheWriter(cache, save_every=SAVE_EVERY)
            if cache is not None and cache.enabled
            else None
        )
        self.reporter = _Reporter(progress)
        self.stop = threading.Event()
        self.work = _Work()
        self.results: SimpleQueue[list[_Hashed] | BaseException | None] = SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.running = 0
        self.meters: list[_Meter] = []
        self.inline: list[_File] = []
        self.main_meter: _Meter | None = None
        self.entries: list[FileEntry] = []
        self.found = self.done = self.to_read = 0
        self.files_total: int | None = None

    def snapshot(self) -> HashProgress:
        return HashProgress(
            self.done,
            sum(m.done for m in self.meters),
            self.files_total,
            None if self.files_total is None else self.to_read,
            self.found,
            time.monotonic() - self.reporter.start,
        )

    # -- walk -------------------------------------------------------------------
    def walk(self, root: _Dir) -> None:
        """List every folder under ``root``; look its files up in the cache."""
        stack, unresolved, count = [root], [], 0
        while stack:
            listing = self.walker.list_dir(stack.pop())
            stack.extend(listing.dirs)
            self.entries.extend(listing.entries)
            self.found += len(listing.names)
            unresolved.append(listing)
            count += len(listing.names)
            if count >= LOOKUP_BATCH:
                self._resolve(unresolved)
                unresolved, count = [], 0
            if self.reporter.due():
                self.reporter.report(self.snapshot())
        self._resolve(unresolved)

    def _resolve(self, listings: list[_Listing]) -> None:
        """Entries for the files the cache knows; the others to the workers."""
        tables = {}
        if self.cache is not None:
            tables = self.cache.load(x.folder.ident for x in listings if x.names)
        entries = self.entries
        for folder, names, keys, _, _ in listings:
            table = tables.get(folder.ident, {})
            misses = []
            for name, key in zip(names, keys, strict=True):
                rel = folder.rel + name
                sha = table.get(key)
                if sha is None:
                    misses.append(
                        _File(folder.full + b"/" + name, rel, key, folder.ident)
                    )
                    continue
                try:
                    entries.append(FileEntry(rel.decode(), key[2], sha))
                except UnicodeDecodeError:
                    entries.append(FileEntry(_show(rel), key[2], sha, raw_path=rel))
            self.done += len(keys) - len(misses)
            if self.cache is not None and (misses or len(table) != len(keys)):
                self.cache.expect(folder.ident, table, keys, len(misses))
            for file in misses:
                self._queue(file)

    def add_file(self, file: _File) -> None:
        """A lone file (the root): from the cache, or to hash."""
        self.found = 1
        if self.cache is None:
            self._queue(file)
            return
        self.cache.merge = True  # one file of its folder: keep the others' rows
        table = self.cache.load([file.folder]).get(file.folder, {})
        sha = table.get(file.key)
        if sha is None:
            self.cache.expect(file.folder, {}, [], 1)
            self._queue(file)
            return
        path, raw = _entry_name(file.rel)
        self.entries.append(FileEntry(path, file.key[2], sha, raw_path=raw))
        self.done = 1

    # -- hash -------------------------------------------------------------------
    def _queue(self, file: _File) -> None:
        """Hand ``file`` to the workers; take in their results meanwhile."""
        self.to_read += file.key[2]
        if file.key[2] < INLINE_BELOW:
            self.inline.append(file)
            if len(self.inline) >= BATCH_FILES:
                self._hash_inline()
            return
        self.work.add(file)
        if len(self.threads) < min(self.workers, self.work.tasks):  # one per task
            large_first = len(self.threads) % 2 == 0
            name = f"mltrail-hash-{len(self.threads)}"
            thread = threading.Thread(
                target=self._worker, args=(large_first,), name=name
            )
            thread.start()
            self.threads.append(thread)
            self.running += 1
        while self.work.full() or not self.results.empty():
            self._take(self._next())

    def _hash_inline(self) -> None:
        """Hash the small files gathered so far here, in the calling thread."""
        if self.main_meter is None:
            self.main_meter = _Meter(self.stop)
            self.meters.append(self.main_meter)
        batch, self.inline = self.inline, []
        self._take([self._hash_one(file, self.main_meter) for file in batch])
        while not self.results.empty():
            self._take(self.results.get())

    def finish(self) -> None:
        """Wait for the workers; save the hashes."""
        self._hash_inline()
        self.work.close()
        self.files_total = self.found
        while self.running:
            self._take(self._next())
        if self.cache is not None:
            self.cache.flush()
        self.reporter.report(self.snapshot(), final=True)

    def _take(self, item: list[_Hashed] | BaseException | None) -> None:
        """A worker's result: its hashes, its error (raised here), or its end."""
        if item is None:
            self.running -= 1
            return
        if isinstance(item, BaseException):
            raise item
        # entries are made here rather than in the workers: validating them is pure
        # Python, and the workers would take turns at the GIL for it
        for rel, sha, key, folder, hashed_at in item:
            path, raw = _entry_name(rel)
            self.entries.append(FileEntry(path, key[2], sha, raw_path=raw))
            if self.cache is not None:
                self.cache.add(folder, key, sha, hashed_at)
        self.done += len(item)

    def _next(self) -> list[_Hashed] | BaseException | None:
        while True:
            if self.reporter.due():
                self.reporter.report(self.snapshot())
            try:
                return self.results.get(timeout=PROGRESS_EVERY_S)
            except Empty:
                continue

    def close(self) -> None:
        """Stop the workers (at once if something failed) and wait for them."""
        self.stop.set()
        self.work.close()
        for thread in self.threads:
            thread.join()

    def _worker(self, large_first: bool) -> None:
        meter = _Meter(self.stop)
        self.meters.append(meter)  # list.append is atomic
        try:
            while (batch := self.work.take(large_first)) and not self.stop.is_set():
                self.results.put([self._hash_one(file, meter) for file in batch])
        except BaseException as e:  # handed to the calling thread, raised there
            self.results.put(e)
        finally:
            self.results.put(None)

    def _hash_one(self, file: _File, meter: _Meter) -> _Hashed:
        """Hash ``file``; again if it changed meanwhile (up to MAX_TRIES times)."""
        key = file.key
        for _ in range(MAX_TRIES):
            if self.stop.is_set():
                raise _StoppedError
            sha, size, after = _read_and_hash(file.full, meter)
            if after == key and size == key[2]:
                return file.rel, sha, key, file.folder, time.time_ns()
            meter.done -= size
            try:
                st = self.restat(file.full)
            except OSError as e:
                raise _unreadable(file.full, e) from e
            if not stat.S_ISREG(st.st_mode):
                raise _changed(file.full, ": it is no longer a regular file")
            key = stat_key(st)
        raise _changed(file.full, f" ({MAX_TRIES} tries)")


def _read_and_hash(full: bytes, meter: _Meter) -> tuple[str, int, StatKey]:
    """SHA-256 hex, bytes read, and the stat key of the open file after reading."""
    try:
        fd = os.open(full, _OPEN_FLAGS)
    except OSError as e:
        raise _unreadable(full, e) from e
    try:
        sha, size = _hash_fd(fd, meter)
        return sha, size, stat_key(os.fstat(fd))
    except OSError as e:
        raise _unreadable(full, e) from e
    finally:
        os.close(fd)


def _default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _stat(path: bytes) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError as e:
        raise CaptureError(f"no such file or folder: {_show(path)}") from e
    except OSError as e:
        raise _unreadable(path, e) from e


def hash_tree(
    root: Path,
    *,
    cache: HashCache | None = None,
    workers: int | None = None,
    follow_links: bool = False,
    progress: Callable[[HashProgress], None] | None = None,
) -> list[FileEntry]:
    """Entries for the file or folder ``root``, hashed in parallel.

    A file is listed under its own name; a folder's contents under their paths
    relative to it (in no particular order: ``compute_manifest`` sorts). A ``root``
    that is a symbolic link is resolved first.

    Args:
        root: the file or folder.
        cache: where to look up and store hashes by stat key (none: hash everything).
        workers: threads hashing at once (default: the CPUs this process may use).
        follow_links: follow symbolic links instead of recording them as links.
        progress: called from this thread with a :class:`HashProgress`, first after
            one second of work, then at most ten times a second, and once at the end.

    Raises:
        CaptureError: ``root`` is missing; a file or folder cannot be read, is not a
            regular file, or kept changing while it was hashed; links form a loop.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    raw_root = os.fsencode(root)
    st = _stat(raw_root)
    real = os.path.realpath(raw_root)
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise _not_regular(raw_root, st.st_mode)
    engine = _Engine(workers or _default_workers(), follow_links, cache, progress)
    try:
        if stat.S_ISDIR(st.st_mode):
            engine.walk(_Dir(real, b"", (((st.st_dev, st.st_ino), b""),)))
        else:
            parent = _stat(os.path.dirname(real))
            name = os.fsencode(Path(root).name)
            folder = (parent.st_dev, parent.st_ino)
            engine.add_file(_File(real, name, stat_key(st), folder))
        engine.finish()
    except BaseException:
        engine.close()
        if engine.cache is not None:
            engine.cache.flush()  # what was hashed is right: keep it for next time
        raise
    engine.close()
    return engine.entries


def hash_file(path: Path) -> tuple[int, str]:
    """Size and SHA-256 hex of the regular file at ``path`` (links followed).

    Raises:
        CaptureError: it is missing, unreadable, not a regular file, or kept changing.
    """
    raw = os.fsencode(path)
    if stat.S_ISDIR(_stat(raw).st_mode):
        raise CaptureError(f"{_show(raw)} is a folder, not a file")
    [entry] = hash_tree(path, workers=1)
    return entry.size, entry.sha256 or ""
