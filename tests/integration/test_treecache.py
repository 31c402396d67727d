"""The whole-folder result cache behind `mltrail data hash`: reused only when nothing
under the folder changed, and then byte for byte what hashing it again prints."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mltrail.capture.data import hashing
from mltrail.capture.data.hashcache import HashCache
from mltrail.capture.data.treecache import capture_tree
from mltrail.capture.data.treefiles import trees_folder
from mltrail.cli import data_cmd

NOT_UTF8 = os.fsdecode(b"caf\xff.bin")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root / "a.csv", b"a,b\n1,2\n")
    write(root / "empty.txt", b"")
    write(root / "train" / "x" / "deep.bin", os.urandom(70_000))
    write(root / "train" / "back\\slash.csv", b"odd name\n")
    write(root / NOT_UTF8, b"\x00\x01")
    (root / "nothing" / "inside").mkdir(parents=True)
    (root / "link").symlink_to("a.csv")
    return root


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "cache" / "hashes.db"


class Spy:
    """Counts files read and per-file cache lookups."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = self.lookups = 0
        real_hash, real_load = hashing._hash_fd, HashCache.load

        def counted_hash(fd: int, meter: object) -> tuple[str, int]:
            self.reads += 1
            return real_hash(fd, meter)

        def counted_load(cache: HashCache, folders: object) -> object:
            self.lookups += 1
            return real_load(cache, folders)

        monkeypatch.setattr(hashing, "_hash_fd", counted_hash)
        monkeypatch.setattr(HashCache, "load", counted_load)


def run(
    path: Path | str, cache_path: Path, window: float = 0
) -> tuple[bytes, str, bytes, int]:
    """sums, dataset id, manifest bytes, tree-cache hits of one `data hash PATH`."""
    with HashCache(cache_path, racy_window_s=window) as cache:
        result = data_cmd._hash_one(str(path), cache, False)
        return result.sums(), result.dataset_id, result.data, int(result.reused)


def fresh(path: Path | str) -> tuple[bytes, str, bytes]:
    """What `data hash --no-cache PATH` gives."""
    result = data_cmd._hash_one(str(path), None, False)
    return result.sums(), result.dataset_id, result.data


def settle() -> None:
    time.sleep(0.05)  # past the file system's timestamp granularity


def test_an_unchanged_folder_is_answered_from_the_tree(tree, cache_path, monkeypatch):
    first = run(tree, cache_path)
    assert first[3] == 0
    spy = Spy(monkeypatch)
    again = run(tree, cache_path)
    assert again == (*first[:3], 1)
    assert (spy.reads, spy.lookups) == (0, 0)
    assert again[:3] == fresh(tree)
    assert b"\\" in again[0]
    assert b"caf\xff.bin" in again[0]


def _content_same_size_mtime_put_back(root: Path) -> None:
    target = root / "train" / "x" / "deep.bin"
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _retarget_link(root: Path) -> None:
    (root / "link").unlink()
    (root / "link").symlink_to("empty.txt")


def _replace_with_a_copy(root: Path) -> None:  # same bytes, another inode
    data = (root / "a.csv").read_bytes()
    (root / "a.csv").unlink()
    write(root / "a.csv", data)


CHANGES = {
    "content, size and mtime kept": _content_same_size_mtime_put_back,
    "appended": lambda r: write(r / "a.csv", (r / "a.csv").read_bytes() + b"3,4\n"),
    "added": lambda r: write(r / "train" / "new.csv", b"new\n"),
    "added, not UTF-8": lambda r: write(r / os.fsdecode(b"n\xfe.bin"), b"z"),
    "removed": lambda r: (r / "empty.txt").unlink(),
    "renamed": lambda r: (r / "a.csv").rename(r / "b.csv"),
    "moved to a folder": lambda r: (r / "a.csv").rename(r / "train" / "a.csv"),
    "link retargeted": _retarget_link,
    "link removed": lambda r: (r / "link").unlink(),
    "empty folder added": lambda r: (r / "void").mkdir(),
    "empty folder removed": lambda r: (r / "nothing" / "inside").rmdir(),
    "replaced by a copy": _replace_with_a_copy,
    "chmod": lambda r: (r / "a.csv").chmod(0o600),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_any_change_is_hashed_again(tree, cache_path, change):
    run(tree, cache_path)
    assert run(tree, cache_path)[3] == 1  # stored
    settle()
    CHANGES[change](tree)
    again = run(tree, cache_path)
    assert again[3] == 0
    assert again[:3] == fresh(tree)
    assert run(tree, cache_path) == (*again[:3], 1)  # the new result is stored


def test_files_in_the_racy_window_are_checked_again(tree, cache_path, monkeypatch):
    run(tree, cache_path, window=3600)  # every file is "fresh": nothing stored
    with HashCache(cache_path) as cache:
        assert cache.tree_digest(os.path.realpath(os.fsencode(tree)) + b"\0") is None
    run(tree, cache_path)  # stored now (no window)
    spy = Spy(monkeypatch)
    again = run(tree, cache_path, window=3600)  # stored, but the files are too fresh
    assert again[3] == 0
    assert spy.lookups > 0
    assert again[:3] == fresh(tree)


def test_another_spelling_of_the_folder_prints_its_own_names(
    tree, cache_path, monkeypatch
):
    run(tree, cache_path)
    monkeypatch.chdir(tree.parent)
    for spelling in ("data/", "./data", "data"):
        again = run(spelling, cache_path)
        assert again[3] == 1, spelling
        assert again[:3] == fresh(spelling)


def test_a_hit_still_gives_the_whole_manifest(tree, cache_path):
    run(tree, cache_path)
    with HashCache(cache_path, racy_window_s=0) as cache:
        result = data_cmd._hash_one(str(tree), cache, False)
    nocache = data_cmd._hash_one(str(tree), None, False)
    assert result.reused
    assert result.manifest == nocache.manifest
    assert (result.file_count, result.total_bytes) == (5, nocache.total_bytes)


def test_following_links_is_stored_apart(tree, cache_path):
    (tree / "link").unlink()
    (tree / "train" / "up").symlink_to("../nothing")
    run(tree, cache_path)
    with HashCache(cache_path, racy_window_s=0) as cache:
        followed = capture_tree(tree, cache=cache, follow_links=True)
    assert followed.stored is None
    assert followed.entries is not None
    assert any(e.path == "train/up/inside" for e in followed.entries)


def _stored(cache_path: Path) -> list[Path]:
    folder = Path(trees_folder(str(cache_path)))
    return sorted(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1],  # torn at the end
        lambda data: data[:100],  # torn in the header
        lambda data: data + b"x",  # grown
        lambda data: b"\0" * len(data),  # zeros, as a crash can leave
        lambda data: data.replace(b"\n", b"\r", 1),  # the magic
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # the manifest's last byte
        lambda data: data[:200] + bytes([data[200] ^ 1]) + data[201:],  # the header
    ],
    ids=["torn", "torn-header", "grown", "zeros", "magic", "manifest", "header"],
)
def test_a_damaged_tree_file_is_a_miss_and_replaced(tree, cache_path, damage):
    first = run(tree, cache_path)
    [stored] = _stored(cache_path)
    stored.write_bytes(damage(stored.read_bytes()))
    again = run(tree, cache_path)
    assert again == (*first[:3], 0)
    assert run(tree, cache_path) == (*first[:3], 1)
    assert _stored(cache_path) == [stored]


def test_a_tree_file_of_another_folder_is_not_used(tree, cache_path, tmp_path):
    """Another folder's result copied over a folder's file: the walk digest differs."""
    other = write(tmp_path / "other" / "x" / "y.txt", b"y").parent.parent
    run(tree, cache_path)
    [tree_file] = _stored(cache_path)
    run(other, cache_path)
    [other_file] = set(_stored(cache_path)) - {tree_file}
    other_file.write_bytes(tree_file.read_bytes())
    assert run(other, cache_path) == (*fresh(other), 0)
    assert run(other, cache_path) == (*fresh(other), 1)


def test_a_file_root_is_not_stored(tree, cache_path):
    run(tree / "a.csv", cache_path)
    run(tree / "a.csv", cache_path)
    assert run(tree / "a.csv", cache_path)[:3] == fresh(tree / "a.csv")
    assert _stored(cache_path) == []


def test_the_cli_with_and_without_the_cache(tree, tmp_path):
    env = {**os.environ, "MLTRAIL_HOME": str(tmp_path / "home")}
    ahead = time.time_ns() + 86_400 * 10**9  # inside the CLI's 2 s racy window
    for path in tree.rglob("*"):  # for a day, however slow the runs below are
        if path.is_file() and not path.is_symlink():
            os.utime(path, ns=(ahead, ahead))

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        cmd = [sys.executable, "-m", "mltrail", "data", "hash", *args]
        done = subprocess.run(cmd, capture_output=True, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done

    nocache = cli("--no-cache", "data")
    for _ in range(2):
        assert cli("data").stdout == nocache.stdout
    assert cli("data").stderr == nocache.stderr
    assert _stored(tmp_path / "home" / "cache" / "hashes.db") == []  # too fresh


def test_printing_reads_only_the_stored_lines(tree, cache_path, monkeypatch):
    first = run(tree, cache_path)  # stored with the lines printed for str(tree)
    monkeypatch.chdir(tree.parent)
    with HashCache(cache_path, racy_window_s=0) as cache:
        same = data_cmd._hash_one(str(tree), cache, False, need_manifest=False)
        other = data_cmd._hash_one("./data", cache, False, need_manifest=False)
    assert same.reused
    assert same.hashed._data is None  # the manifest was not read
    assert same.sums() == first[0]
    assert other.reused
    assert other.sums() == fresh("./data")[0]  # from the manifest, read for it
    assert other.data == first[2]


def test_lookups_resume_once_the_walk_outgrows_the_stored_tree(
    tree, cache_path, monkeypatch
):
    monkeypatch.setattr(hashing, "LOOKUP_BATCH", 1)  # resolve after every folder
    run(tree, cache_path)
    settle()
    for i in range(3):
        write(tree / f"more{i}" / "new.csv", b"%d\n" % i)
    again = run(tree, cache_path)
    assert again[3] == 0
    assert again[:3] == fresh(tree)


def test_a_new_format_or_a_huge_result_is_not_reused(tree, cache_path, monkeypatch):
    from mltrail.capture.data import treecache

    run(tree, cache_path)
    monkeypatch.setattr(treecache, "FORMAT", b"mltrail-tree/99")
    assert run(tree, cache_path)[3] == 0  # stored again, under the new format
    assert run(tree, cache_path)[3] == 1
    monkeypatch.setattr(treecache, "FORMAT", b"mltrail-tree/100")
    monkeypatch.setattr(treecache, "MAX_STORED", 100)
    assert run(tree, cache_path)[3] == 0
    assert run(tree, cache_path)[3] == 0  # too large to store
