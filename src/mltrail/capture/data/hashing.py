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
  ``path``; so does a link target that is not UTF-8 (``raw_link`` and ``link``).

How it is fast (``benchmarks/bench_hash.py`` has the measurements):

- :func:`hash_tree_unless` takes a :class:`~mltrail.capture.data.treecache.TreeProbe`:
  when the walk matches a folder's stored result, nothing is looked up or read
  (``mltrail data hash`` of an unchanged folder is then bound by the ``lstat``
  calls and start-up); ``hashlib`` and the manifest module are loaded only when
  a file is hashed or an entry made;
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
  the others (see :class:`~mltrail.capture.data.hash_queue.WorkQueue`); entries are
  made in the calling thread;
- memory stays bounded whatever the files' sizes: each worker streams its files
  through one :data:`BUFFER_SIZE` buffer, and at most
  :data:`~mltrail.capture.data.hash_queue.MAX_QUEUED` files wait for a worker. What grows
  with the number of files is the list returned (about 300 bytes per entry).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from _queue import Empty, SimpleQueue  # as queue has them, without its imports

from mltrail.capture.data import hash_queue
from mltrail.capture.data.hash_queue import File, WorkQueue
from mltrail.capture.data.hashcache import CacheWriter, FolderKey, StatKey, stat_key
from mltrail.capture.data.progress import PROGRESS_EVERY_S, HashProgress, Reporter
from mltrail.capture.data.walk import (
    KEYS,
    NOTHING_RECORDED,
    Folder,
    Walker,
    entry_name,
    not_regular,
    show,
    unreadable,
)
from mltrail.errors import CaptureError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from mltrail.capture.data.hashcache import HashCache
    from mltrail.capture.data.treecache import TreeProbe
    from mltrail.capture.data.walk import Listing
    from mltrail.core.manifest import FileEntry

__all__ = ["BUFFER_SIZE", "HashProgress", "hash_file", "hash_tree", "hash_tree_unless"]

BUFFER_SIZE = 1 << 17
"""Bytes read per call: 128 KiB stays in a core's L2 cache between the copy from
the page cache and the hashing; 1 MiB spilled it and doubled the system time
(benchmarks/README.md, bench_data_small)."""
LOOKUP_BATCH = 4_000
SAVE_EVERY = 20_000  # files per cache transaction
INLINE_BELOW = 32 << 10
MAX_TRIES = 3
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_Hashed = tuple[bytes, str, StatKey, FolderKey, int]  # rel, sha, key, folder, when


class _StoppedError(Exception):
    """Another worker failed: stop hashing."""


class _Meter:
    """One worker's read buffer and byte count (written by that worker only)."""

    def __init__(self, stop: threading.Event) -> None:
        import hashlib  # not at import: a folder found unchanged reads no file

        self.sha256 = hashlib.sha256
        self.buffer = bytearray(BUFFER_SIZE)
        self.view = memoryview(self.buffer)
        self.stop = stop
        self.done = 0


def _hash_fd(fd: int, meter: _Meter) -> tuple[str, int]:
    """SHA-256 hex and length of what ``fd`` reads until end of file."""
    digest = meter.sha256()
    buffers, view, total = [meter.buffer], meter.view, 0
    while n := os.readv(fd, buffers):
        digest.update(view[:n])
        total += n
        meter.done += n
        if meter.stop.is_set():
            raise _StoppedError
    return digest.hexdigest(), total


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
        self.walker = Walker(follow_links)
        self.restat = os.stat if follow_links else os.lstat
        self.cache = (
            CacheWriter(cache, save_every=SAVE_EVERY)
            if cache is not None and cache.enabled
            else None
        )
        self.reporter = Reporter(progress)
        self.stop = threading.Event()
        self.work = WorkQueue()
        self.results: SimpleQueue[list[_Hashed] | BaseException | None] = SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.running = 0
        self.meters: list[_Meter] = []
        self.inline: list[File] = []
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
    def walk(self, root: Folder, probe: TreeProbe | None = None) -> bool:
        """List every folder under ``root``; look its files up in the cache.

        With a ``probe``, the lookups wait (while it says so) until the whole tree
        is listed; if the probe then matches, none are made and True is returned.
        """
        stack, unresolved, count = [root], [], 0
        # nothing to look up (no cache, or one made by this run): each folder's
        # files go to the workers as soon as it is listed
        batch = LOOKUP_BATCH if self.cache and not self.cache.cache.is_new else 1
        while stack:
            listing = self.walker.list_dir(stack.pop())
            stack.extend(listing.dirs)
            self.entries.extend(listing.entries)
            self.found += len(listing.names)
            if probe is not None:
                probe.add(listing)
            unresolved.append(listing)
            count += len(listing.names)
            if count >= batch and not (probe and probe.waits(self.found)):
                self._resolve(unresolved)
                unresolved, count = [], 0
            if self.reporter.due():
                self.reporter.report(self.snapshot())
        if probe is not None and probe.matches():
            self.done = self.found
            return True
        self._resolve(unresolved)
        return False

    def _resolve(self, listings: list[Listing]) -> None:
        """Entries for the files the cache knows; the others to the workers."""
        tables = {}
        if self.cache is not None:
            tables = self.cache.load(x.folder.ident for x in listings if x.names)
        known = _known_file() if tables else _no_hit  # loaded when first needed
        entries, unpack = self.entries, KEYS.iter_unpack
        for folder, names, packed, _, _ in listings:
            keys: list[StatKey] = list(unpack(b"".join(packed)))  # type: ignore[arg-type]
            table = tables.get(folder.ident, {})
            misses = []
            for name, key in zip(names, keys, strict=True):
                rel = folder.rel + name
                sha = table.get(key)
                if sha is None:
                    misses.append(
                        File(folder.full + b"/" + name, rel, key, folder.ident)
                    )
                    continue
                try:  # the cache checked sha; names from a listing need no check
                    entries.append(known(rel.decode(), key[2], sha))
                except UnicodeDecodeError:
                    entries.append(known(show(rel), key[2], sha, rel))
            self.done += len(keys) - len(misses)
            if self.cache is not None and (misses or len(table) != len(keys)):
                self.cache.expect(folder.ident, table, keys, len(misses))
            for file in misses:
                self._queue(file)

    def add_file(self, file: File) -> None:
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
        from mltrail.core.manifest import FileEntry

        path, raw = entry_name(file.rel)
        self.entries.append(FileEntry(path, file.key[2], sha, raw_path=raw))
        self.done = 1

    # -- hash -------------------------------------------------------------------
    def _queue(self, file: File) -> None:
        """Hand ``file`` to the workers; take in their results meanwhile."""
        self.to_read += file.key[2]
        if file.key[2] < INLINE_BELOW:
            self.inline.append(file)
            if len(self.inline) >= hash_queue.BATCH_FILES:
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
        if self.inline and self.main_meter is None:
            self.main_meter = _Meter(self.stop)
            self.meters.append(self.main_meter)
        batch, self.inline = self.inline, []
        if batch:
            assert self.main_meter is not None
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
        if not item:
            return
        # entries are made here rather than in the workers: validating them is pure
        # Python, and the workers would take turns at the GIL for it
        from mltrail.core.manifest import FileEntry

        known = FileEntry.known_file  # names from a listing, sha from hashlib
        for rel, sha, key, folder, hashed_at in item:
            path, raw = entry_name(rel)
            self.entries.append(known(path, key[2], sha, raw))
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

    def _hash_one(self, file: File, meter: _Meter) -> _Hashed:
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
                raise unreadable(file.full, e) from e
            if not stat.S_ISREG(st.st_mode):
                raise _changed(file.full, ": it is no longer a regular file")
            key = stat_key(st)
        raise _changed(file.full, f" ({MAX_TRIES} tries)")


def _known_file() -> Callable[..., FileEntry]:
    """``FileEntry.known_file``: the manifest module is imported on first use (a
    matched probe needs none; a cold run imports it while the workers hash)."""
    from mltrail.core.manifest import FileEntry

    return FileEntry.known_file


def _no_hit(*args: object) -> FileEntry:
    raise AssertionError("a cache hit without a cache table")  # pragma: no cover


def _changed(path: bytes, how: str) -> CaptureError:
    return CaptureError(
        f"{show(path)} changed while it was hashed{how}",
        hint="capture it when nothing is writing to it" + NOTHING_RECORDED,
    )


def _read_and_hash(full: bytes, meter: _Meter) -> tuple[str, int, StatKey]:
    """SHA-256 hex, bytes read, and the stat key of the open file after reading."""
    try:
        fd = os.open(full, _OPEN_FLAGS)
    except OSError as e:
        raise unreadable(full, e) from e
    try:
        sha, size = _hash_fd(fd, meter)
        return sha, size, stat_key(os.fstat(fd))
    except OSError as e:
        raise unreadable(full, e) from e
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
        raise CaptureError(f"no such file or folder: {show(path)}") from e
    except OSError as e:
        raise unreadable(path, e) from e


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
    entries = hash_tree_unless(
        root,
        None,
        cache=cache,
        workers=workers,
        follow_links=follow_links,
        progress=progress,
    )
    assert entries is not None  # only a probe stops it
    return entries


def hash_tree_unless(
    root: str | Path,
    probe: TreeProbe | None,
    *,
    cache: HashCache | None = None,
    workers: int | None = None,
    follow_links: bool = False,
    progress: Callable[[HashProgress], None] | None = None,
) -> list[FileEntry] | None:
    """:func:`hash_tree`, unless the walk of the folder ``root`` matches ``probe``.

    The probe (:class:`~mltrail.capture.data.treecache.TreeProbe`) sees every folder's
    listing; when it matches at the end of the walk, nothing is looked up or read
    and None is returned. A file ``root`` is never probed.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    raw_root = os.fsencode(root)
    st = _stat(raw_root)
    real = os.path.realpath(raw_root)
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise not_regular(raw_root, st.st_mode)
    engine = _Engine(workers or _default_workers(), follow_links, cache, progress)
    try:
        if stat.S_ISDIR(st.st_mode):
            top = Folder(real, b"", (((st.st_dev, st.st_ino), b""),))
            if engine.walk(top, probe):
                engine.finish()
                return None
        else:
            parent = _stat(os.path.dirname(real))
            from pathlib import Path  # not at import: a folder needs none

            name = os.fsencode(Path(root).name)
            folder = (parent.st_dev, parent.st_ino)
            engine.add_file(File(real, name, stat_key(st), folder))
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
        raise CaptureError(f"{show(raw)} is a folder, not a file")
    [entry] = hash_tree(path, workers=1)
    return entry.size, entry.sha256 or ""
