"""A hash cache that does not exist yet is made in a file of its own, without
journal or fsync, and gets its name once synced (ADR 0035): what a crash, a
second process or a purge can see of it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mltrail.capture.data import hashing
from mltrail.capture.data.hashcache import HashCache, StoredTree, default_cache_path
from mltrail.capture.data.hashing import hash_tree
from mltrail.capture.data.treecache import erase_cached_trees
from mltrail.capture.data.treefiles import trees_folder

EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return default_cache_path(tmp_path / "home")


def _aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.new-*"))


def _row(n: int) -> dict:
    return {(1, n): [((1, 1000 + n, 0, 5, 5), EMPTY, time.time_ns())]}


def test_a_new_cache_gets_its_name_when_closed(cache_path: Path):
    cache = HashCache(cache_path, racy_window_s=0)
    assert not cache_path.exists()
    assert _aside(cache_path) == []  # opened when first needed
    assert cache.is_new
    cache.save(_row(1))
    [aside] = _aside(cache_path)
    assert cache.load([(1, 1)]) == {(1, 1): {(1, 1001, 0, 5, 5): EMPTY}}
    cache.close()
    assert not aside.exists()
    assert _aside(cache_path) == []
    db = sqlite3.connect(cache_path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    with HashCache(cache_path) as again:
        assert again.load([(1, 1)]) == {(1, 1): {(1, 1001, 0, 5, 5): EMPTY}}


def test_a_saved_tree_is_where_a_purge_looks_at_once(cache_path: Path):
    """A stored manifest must be where `erase_cached_trees` (purge) looks, before
    the cache is closed (and without the SQLite file)."""
    manifest = b'{"path":"a","sha256":"' + EMPTY.encode() + b'","size":0}\n'
    tree = StoredTree(b"d" * 32, 1, 0, "0" * 64, manifest, b"", b"")
    other = StoredTree(b"e" * 32, 1, 0, "0" * 64, b"another", b"", b"")
    with HashCache(cache_path) as cache:
        cache.save_tree(b"/data\0", tree)
        cache.save_tree(b"/other\0", other)
        assert not cache_path.exists()  # no per-file hash was stored
        assert cache.enabled
        assert cache.tree_digest(b"/data\0") == (b"d" * 32, 1)
        digest = "sha256:" + __import__("hashlib").sha256(manifest).hexdigest()
        assert erase_cached_trees(cache_path, {digest}) == 1
        assert cache.tree_digest(b"/data\0") is None
        assert cache.tree_digest(b"/other\0") == (b"e" * 32, 1)


def test_two_new_caches_at_once_keep_both_rows(cache_path: Path):
    first = HashCache(cache_path, racy_window_s=0)
    second = HashCache(cache_path, racy_window_s=0)
    first.save(_row(1))
    second.save(_row(2))
    first.close()
    second.close()  # finds the first one's file: its rows are copied in
    assert _aside(cache_path) == []
    with HashCache(cache_path) as cache:
        assert set(cache.load([(1, 1), (1, 2)])) == {(1, 1), (1, 2)}


def test_without_hard_links_the_rows_are_copied_into_a_file_made_as_usual(
    cache_path: Path, monkeypatch
):
    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with HashCache(cache_path, racy_window_s=0) as cache:
        cache.save(_row(3))
    monkeypatch.undo()
    assert _aside(cache_path) == []
    with HashCache(cache_path) as cache:
        assert set(cache.load([(1, 3)])) == {(1, 3)}


def test_a_process_dying_before_closing_leaves_no_cache(cache_path: Path, tmp_path):
    code = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from mltrail.capture.data.hashcache import HashCache
        cache = HashCache(Path({str(cache_path)!r}), racy_window_s=0)
        cache.save({{(1, 1): [((1, 7, 0, 5, 5), {EMPTY!r}, time.time_ns())]}})
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert not cache_path.exists()
    assert len(_aside(cache_path)) == 1  # what the dead process left
    with HashCache(cache_path, racy_window_s=0) as cache:
        assert cache.load([(1, 1)]) == {}
        assert len(_aside(cache_path)) == 1  # only this process's own
    assert _aside(cache_path) == []


def test_a_file_rewritten_within_the_timestamp_granularity_is_hashed_again(
    tmp_path: Path, cache_path: Path
):
    """Same size, same mtime (put back, as a write within one timestamp tick
    leaves it): the first hash was too fresh to store, so the file is read again."""
    root = tmp_path / "data"
    root.mkdir()
    target = root / "x.bin"
    target.write_bytes(b"a" * 4096)
    with HashCache(cache_path) as cache:  # the default 2 s racy window
        [first] = hash_tree(root, cache=cache)
    before = target.stat()
    target.write_bytes(b"b" * 4096)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size
    assert target.stat().st_mtime_ns == before.st_mtime_ns
    reads = []
    real = hashing._hash_fd

    def counted(fd: int, meter: object) -> tuple[str, int]:
        reads.append(fd)
        return real(fd, meter)

    hashing._hash_fd = counted
    try:
        with HashCache(cache_path) as cache:
            [second] = hash_tree(root, cache=cache)
    finally:
        hashing._hash_fd = real
    assert reads
    assert first.sha256 != second.sha256
    assert second.sha256 == __import__("hashlib").sha256(b"b" * 4096).hexdigest()


def test_a_purge_deletes_a_tree_file_left_half_written_by_a_crash(cache_path: Path):
    """A process dying between writing a tree result aside and renaming it into
    place leaves a manifest there: `erase_cached_trees` (purge) deletes the file."""
    code = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from mltrail.capture.data.hashcache import HashCache, StoredTree
        os.replace = lambda *args: os._exit(0)  # dies before the rename
        cache = HashCache(Path({str(cache_path)!r}))
        tree = StoredTree(b"d" * 32, 1, 0, "0" * 64, b"secret manifest", b"", b"")
        cache.save_tree(b"/data\\0", tree)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    folder = Path(trees_folder(str(cache_path)))
    [left] = folder.iterdir()
    assert ".new-" in left.name
    assert b"secret manifest" in left.read_bytes()
    assert erase_cached_trees(cache_path, {"sha256:" + "0" * 64}) == 0
    assert list(folder.iterdir()) == []


def test_a_purge_deletes_a_new_cache_file_left_by_a_crash(cache_path: Path):
    """A process dying before linking its new SQLite file in leaves it beside the
    cache; `erase_cached_trees` (purge) deletes it."""
    code = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from mltrail.capture.data.hashcache import HashCache
        HashCache._publish = lambda self: os._exit(0)  # dies before the link
        cache = HashCache(Path({str(cache_path)!r}), racy_window_s=0)
        cache.save({{(1, 1): [((1, 1001, 0, 5, 5), {EMPTY!r}, time.time_ns())]}})
        cache.close()
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert len(_aside(cache_path)) == 1
    assert erase_cached_trees(cache_path, {"sha256:" + "0" * 64}) == 0
    assert _aside(cache_path) == []


def test_a_purge_still_clears_the_trees_table_of_a_cache_of_before(cache_path: Path):
    """Caches written before the tree files kept results in a `trees` table."""
    cache_path.parent.mkdir(parents=True)
    manifest = b"a manifest of before"
    db = sqlite3.connect(cache_path)
    db.execute(
        "CREATE TABLE trees (root BLOB PRIMARY KEY, digest BLOB, files INTEGER,"
        " bytes INTEGER, dataset TEXT, manifest BLOB, view_key BLOB, view BLOB)"
    )
    db.execute(
        "INSERT INTO trees VALUES (?, ?, 1, 0, ?, ?, ?, ?)",
        (b"/old\0", b"d" * 32, "0" * 64, manifest, b"", b""),
    )
    db.commit()
    db.close()
    digest = "sha256:" + __import__("hashlib").sha256(manifest).hexdigest()
    assert erase_cached_trees(cache_path, {digest}) == 1
    assert manifest not in cache_path.read_bytes()
    with HashCache(cache_path) as cache:  # still opens: the table is ignored
        assert cache.tree_digest(b"/old\0") is None
        assert cache.load([(1, 1)]) == {}
        assert cache.enabled
