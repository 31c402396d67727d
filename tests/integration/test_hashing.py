"""hash_tree and HashCache on real files: sha256sum agreement and every hard case."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mltrail.capture.data import hash_queue, hashing, progress
from mltrail.capture.data.files import capture_file_entries, hash_file
from mltrail.capture.data.hashcache import HashCache, default_cache_path
from mltrail.capture.data.hashing import HashProgress, hash_tree
from mltrail.core.manifest import FileEntry, compute_manifest, parse_manifest
from mltrail.errors import CaptureError

EMPTY = hashlib.sha256(b"").hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def by_path(entries: list[FileEntry]) -> dict[str, FileEntry]:
    return {e.path: e for e in entries}


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root / "a.csv", b"a,b\n1,2\n")
    write(root / "empty.txt", b"")
    write(root / "train" / "x" / "deep.bin", os.urandom(3 * hashing.BUFFER_SIZE + 17))
    write(root / "train" / "y.bin", os.urandom(70_000))
    (root / "nothing" / "inside").mkdir(parents=True)
    return root


class Counter:
    """Wraps hashing._hash_fd and counts the files whose content it reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.real = hashing._hash_fd
        monkeypatch.setattr(hashing, "_hash_fd", self)

    def __call__(self, fd: int, meter: object) -> tuple[str, int]:
        self.calls += 1
        return self.real(fd, meter)


# -- agreement and layout ------------------------------------------------------------


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs sha256sum")
def test_hashes_equal_what_sha256sum_prints(tree: Path):
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    out = subprocess.run(
        ["sha256sum", *map(str, files)], check=True, capture_output=True, text=True
    ).stdout
    expected = {
        Path(path.lstrip("*")).relative_to(tree).as_posix(): digest
        for digest, path in (line.split(maxsplit=1) for line in out.splitlines())
    }
    got = {e.path: e.sha256 for e in hash_tree(tree) if e.is_file}
    assert got == expected
    assert len(got) == 4


def test_nested_folders_empty_file_and_empty_folder(tree: Path):
    entries = by_path(hash_tree(tree))
    assert set(entries) == {
        "a.csv",
        "empty.txt",
        "train/x/deep.bin",
        "train/y.bin",
        "nothing/inside",
    }
    assert entries["empty.txt"] == FileEntry("empty.txt", 0, EMPTY)
    assert entries["nothing/inside"] == FileEntry("nothing/inside", is_dir=True)
    assert entries["train/x/deep.bin"].size == 3 * hashing.BUFFER_SIZE + 17
    deep = (tree / "train" / "x" / "deep.bin").read_bytes()
    assert entries["train/x/deep.bin"].sha256 == sha(deep)


def test_one_worker_and_many_workers_agree(tree: Path):
    one = compute_manifest(hash_tree(tree, workers=1))
    many = compute_manifest(hash_tree(tree, workers=4))
    assert one == many
    assert not any(t.name.startswith("mltrail-hash") for t in threading.enumerate())
    with pytest.raises(ValueError, match="workers must be at least 1"):
        hash_tree(tree, workers=-1)


@pytest.mark.parametrize(
    "limits",
    [
        {"INLINE_BELOW": 0, "MAX_QUEUED": 1, "BATCH_FILES": 1, "BATCH_BYTES": 1},
        {"INLINE_BELOW": 1 << 40, "LOOKUP_BATCH": 1},
    ],
    ids=["all-in-workers-one-at-a-time", "all-in-the-calling-thread"],
)
def test_queue_limits_and_lanes_do_not_change_the_result(tree, monkeypatch, limits):
    expected = compute_manifest(hash_tree(tree))
    for name, value in limits.items():
        for module in (hashing, hash_queue):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, value)
    assert compute_manifest(hash_tree(tree, workers=2)) == expected


def test_a_file_root_is_listed_under_its_name(tree: Path):
    assert hash_tree(tree / "a.csv") == [FileEntry("a.csv", 8, sha(b"a,b\n1,2\n"))]
    assert capture_file_entries(tree / "a.csv") == hash_tree(tree / "a.csv")
    assert hash_file(tree / "a.csv") == (8, sha(b"a,b\n1,2\n"))


def test_an_empty_root_folder_has_no_entries(tmp_path: Path):
    assert hash_tree(tmp_path) == []


def test_a_root_given_as_a_link_is_resolved(tree: Path, tmp_path: Path):
    (tmp_path / "to-data").symlink_to(tree)
    (tmp_path / "model.csv").symlink_to(tree / "a.csv")
    assert compute_manifest(hash_tree(tmp_path / "to-data")) == compute_manifest(
        hash_tree(tree)
    )
    assert hash_tree(tmp_path / "model.csv") == [
        FileEntry("model.csv", 8, sha(b"a,b\n1,2\n"))
    ]


def test_a_missing_root_is_a_capture_error(tmp_path: Path):
    with pytest.raises(CaptureError, match="no such file or folder"):
        hash_tree(tmp_path / "absent")
    with pytest.raises(CaptureError, match="is a folder"):
        hash_file(tmp_path)


# -- links ---------------------------------------------------------------------------


def test_links_are_recorded_as_links_and_not_followed(tree: Path):
    (tree / "link-to-file").symlink_to("a.csv")
    (tree / "link-to-dir").symlink_to("train")
    (tree / "dangling").symlink_to("/nowhere/at/all")
    entries = by_path(hash_tree(tree))
    assert entries["link-to-file"] == FileEntry("link-to-file", link="a.csv")
    assert entries["link-to-dir"] == FileEntry("link-to-dir", link="train")
    assert entries["dangling"] == FileEntry("dangling", link="/nowhere/at/all")
    assert not any(p.startswith("link-to-dir/") for p in entries)


def test_follow_links_hashes_what_links_point_to(tree: Path):
    (tree / "link-to-file").symlink_to("a.csv")
    (tree / "link-to-dir").symlink_to("train")
    entries = by_path(hash_tree(tree, follow_links=True))
    assert entries["link-to-file"].sha256 == entries["a.csv"].sha256
    assert entries["link-to-dir/y.bin"] == FileEntry(
        "link-to-dir/y.bin", 70_000, entries["train/y.bin"].sha256
    )


def test_follow_links_refuses_a_loop_and_names_it(tree: Path):
    (tree / "train" / "x" / "up").symlink_to("../..")
    assert by_path(hash_tree(tree))["train/x/up"].link == "../.."
    with pytest.raises(CaptureError, match=r"link loop: train/x/up leads back to \.$"):
        hash_tree(tree, follow_links=True)


def test_follow_links_refuses_a_broken_link(tree: Path):
    (tree / "dangling").symlink_to("missing.csv")
    with pytest.raises(
        CaptureError, match=r"cannot follow the symbolic link .*dangling"
    ):
        hash_tree(tree, follow_links=True)


# -- files that cannot be hashed -----------------------------------------------------


def test_a_fifo_is_refused(tree: Path):
    os.mkfifo(tree / "train" / "pipe")
    with pytest.raises(CaptureError, match=r"train/pipe is a FIFO, not a regular file"):
        hash_tree(tree)
    with pytest.raises(CaptureError, match="FIFO"):
        hash_tree(tree / "train" / "pipe")


def test_a_socket_is_refused():
    # socket paths must be short: not under pytest's tmp_path
    with tempfile.TemporaryDirectory() as short, socket.socket(socket.AF_UNIX) as sock:
        sock.bind(os.path.join(short, "s"))
        with pytest.raises(CaptureError, match="is a socket, not a regular file"):
            hash_tree(Path(short))


UNREADABLE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from mltrail.capture.data.hashing import hash_tree
    import hashlib  # hash_tree loads these on first use
    from mltrail.core import manifest
    from mltrail.errors import CaptureError
    if os.geteuid() == 0:  # after the imports: the interpreter may live under /root
        os.setgid(65534)
        os.setuid(65534)
    for target in sys.argv[1:]:
        try:
            hash_tree(Path(target))
        except CaptureError as e:
            print(f"{e} | {e.hint}")
        else:
            print("no error")
    """
)


@pytest.fixture
def shared_dir():
    """A folder others can enter: pytest's tmp_path is private to its owner."""
    with tempfile.TemporaryDirectory(prefix="mltrail-perm-") as path:
        os.chmod(path, 0o755)
        yield Path(path)


def test_unreadable_files_and_folders_are_named_and_nothing_is_returned(shared_dir):
    """chmod 000 really refuses reading, checked as an unprivileged user.

    Root reads anything, so when the tests run as root the check runs in a child
    process that drops to the ``nobody`` user first (skipped if it may not).
    """
    files = shared_dir / "files"
    write(files / "ok.csv", b"fine")
    secret = write(files / "secret.csv", b"no")
    secret.chmod(0)
    folders = shared_dir / "folders"
    write(folders / "locked" / "inner.csv", b"x")
    (folders / "locked").chmod(0)
    for path in (shared_dir, files, folders):
        path.chmod(0o755)
    if os.geteuid() == 0:
        probe = subprocess.run(
            [sys.executable, "-c", "import os; os.setgid(65534); os.setuid(65534)"],
            check=False,
        )
        if probe.returncode:
            pytest.skip("running as root and cannot drop to the nobody user")
    out = subprocess.run(
        [sys.executable, "-c", UNREADABLE_SCRIPT, str(files), str(folders)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert out[0].startswith(f"cannot read {secret}: Permission denied")
    assert "nothing was recorded" in out[0]
    assert out[1].startswith(f"cannot read {folders / 'locked'}: Permission denied")
    (folders / "locked").chmod(0o755)


def test_a_file_failing_to_open_fails_the_whole_tree(tree: Path, monkeypatch):
    """One worker's error stops the others and nothing partial comes back."""
    real_open = os.open
    bad = os.fsencode(tree / "train" / "y.bin")

    def failing_open(path, flags, *args, **kwargs):
        if path == bad:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(hashing.os, "open", failing_open)
    with pytest.raises(CaptureError, match=r"cannot read .*train/y\.bin: Permission"):
        hash_tree(tree, workers=3)
    assert not any(t.name.startswith("mltrail-hash") for t in threading.enumerate())


# -- files that change while they are hashed -----------------------------------------


def test_a_file_changing_while_hashed_is_hashed_again(tree: Path, monkeypatch):
    target = tree / "train" / "y.bin"
    real = hashing._hash_fd
    calls = []

    def append_during_first_hash(fd: int, meter: object) -> tuple[str, int]:
        result = real(fd, meter)
        calls.append(fd)
        if len(calls) == 1:
            with target.open("ab") as f:
                f.write(b"more rows")
        return result

    monkeypatch.setattr(hashing, "_hash_fd", append_during_first_hash)
    [entry] = hash_tree(target)
    final = target.read_bytes()
    assert len(calls) == 2
    assert entry == FileEntry("y.bin", len(final), sha(final))


def test_a_file_changing_every_time_is_refused(tree: Path, monkeypatch):
    target = tree / "a.csv"
    real = hashing._hash_fd

    def always_append(fd: int, meter: object) -> tuple[str, int]:
        result = real(fd, meter)
        with target.open("ab") as f:
            f.write(b"3,4\n")
        return result

    monkeypatch.setattr(hashing, "_hash_fd", always_append)
    with pytest.raises(CaptureError, match=r"a\.csv changed while it was hashed"):
        hash_tree(tree)


def test_a_file_replaced_by_a_fifo_while_hashed_is_refused(tree: Path, monkeypatch):
    target = tree / "a.csv"
    real = hashing._hash_fd

    def replace(fd: int, meter: object) -> tuple[str, int]:
        result = real(fd, meter)
        if target.is_file():
            target.unlink()
            os.mkfifo(target)
        return result

    monkeypatch.setattr(hashing, "_hash_fd", replace)
    with pytest.raises(
        CaptureError,
        match="changed while it was hashed: it is no longer a regular file",
    ):
        hash_tree(target)


# -- names ---------------------------------------------------------------------------


def test_non_utf8_names_keep_their_bytes_and_round_trip(tmp_path: Path):
    root = os.fsencode(tmp_path)
    with open(os.path.join(root, b"caf\xff.csv"), "wb") as f:
        f.write(b"latte")
    os.makedirs(os.path.join(root, b"d\xe9j\xe0", b"vide\xff"))
    entries = by_path(hash_tree(tmp_path))
    assert entries["caf\\xff.csv"] == FileEntry(
        "caf\\xff.csv", 5, sha(b"latte"), raw_path=b"caf\xff.csv"
    )
    assert entries["d\\xe9j\\xe0/vide\\xff"].raw_path == b"d\xe9j\xe0/vide\xff"
    manifest = compute_manifest(entries.values())
    assert parse_manifest(manifest.data) == manifest
    raw_root = os.path.join(root, b"caf\xff.csv")
    assert hash_tree(Path(os.fsdecode(raw_root)))[0].raw_path == b"caf\xff.csv"


def test_link_targets_that_are_not_utf8_keep_their_bytes(tmp_path: Path):
    root = os.fsencode(tmp_path)
    os.symlink(b"caf\xff.csv", os.path.join(root, b"odd"))
    os.symlink(b"../d\xe9j\xe0/\xff", os.path.join(root, b"l\xff"))
    os.symlink(b"plain.csv", os.path.join(root, b"plain"))
    entries = by_path(hash_tree(tmp_path))
    assert entries["odd"] == FileEntry(
        "odd", link="caf\\xff.csv", raw_link=b"caf\xff.csv"
    )
    assert entries["l\\xff"] == FileEntry(
        "l\\xff",
        link="../d\\xe9j\\xe0/\\xff",
        raw_path=b"l\xff",
        raw_link=b"../d\xe9j\xe0/\xff",
    )
    assert entries["plain"] == FileEntry("plain", link="plain.csv")
    manifest = compute_manifest(entries.values())
    assert b'"link_b64":"Y2Fm/y5jc3Y="' in manifest.data
    assert parse_manifest(manifest.data) == manifest
    parsed = {e.path: e for e in parse_manifest(manifest.data).entries}
    assert os.readlink(os.path.join(root, b"odd")) == parsed["odd"].raw_link


# -- progress ------------------------------------------------------------------------


def test_progress_is_reported_from_the_calling_thread(tree: Path, monkeypatch):
    monkeypatch.setattr(progress, "PROGRESS_DELAY_S", 0.0)
    seen: list[tuple[HashProgress, int]] = []
    hash_tree(tree, progress=lambda p: seen.append((p, threading.get_ident())))
    assert seen
    assert {ident for _, ident in seen} == {threading.get_ident()}
    last = seen[-1][0]
    assert (last.files_done, last.files_total) == (4, 4)
    assert last.bytes_done == last.bytes_total == 3 * hashing.BUFFER_SIZE + 70_025
    assert last.rate > 0


def test_no_progress_for_work_under_a_second(tree: Path):
    seen: list[HashProgress] = []
    hash_tree(tree, progress=seen.append)
    assert seen == []


# -- the hash cache ------------------------------------------------------------------


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return default_cache_path(tmp_path / "home")


def test_default_cache_path_is_under_the_home(tmp_path: Path):
    assert default_cache_path(tmp_path) == tmp_path / "cache" / "hashes.db"


def test_a_cache_hit_reads_no_content(tree: Path, cache_path: Path, monkeypatch):
    with HashCache(cache_path, racy_window_s=0) as cache:
        first = compute_manifest(hash_tree(tree, cache=cache))
    counter = Counter(monkeypatch)
    with HashCache(cache_path, racy_window_s=0) as cache:
        again = compute_manifest(hash_tree(tree, cache=cache))
    assert counter.calls == 0
    assert again == first


def test_a_file_changed_with_its_mtime_put_back_is_hashed_again(
    tree: Path, cache_path: Path, monkeypatch
):
    target = tree / "train" / "y.bin"
    with HashCache(cache_path, racy_window_s=0) as cache:
        hash_tree(tree, cache=cache)
    before = target.stat()
    time.sleep(0.05)  # past the file system's timestamp granularity
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns
    counter = Counter(monkeypatch)
    with HashCache(cache_path, racy_window_s=0) as cache:
        entries = by_path(hash_tree(tree, cache=cache))
    assert counter.calls == 1
    assert entries["train/y.bin"].sha256 == sha(bytes(data))


def test_hashes_made_before_a_failure_are_kept(tmp_path: Path, cache_path, monkeypatch):
    root = tmp_path / "big"
    root.mkdir()
    for mib in (9, 10, 11):  # large files: one task each, hashed one after another
        with (root / f"{mib}.bin").open("wb") as f:
            os.truncate(f.fileno(), mib << 20)
    real, calls = hashing._hash_fd, []

    def third_fails(fd: int, meter: object) -> tuple[str, int]:
        calls.append(fd)
        if len(calls) == 3:
            raise PermissionError(13, "Permission denied")
        return real(fd, meter)

    monkeypatch.setattr(hashing, "_hash_fd", third_fails)
    with HashCache(cache_path, racy_window_s=0) as cache:
        with pytest.raises(CaptureError, match="Permission denied"):
            hash_tree(root, cache=cache, workers=1)
        [table] = cache.load([(root.stat().st_dev, root.stat().st_ino)]).values()
    assert len(table) == 2


def test_hashes_are_saved_folder_by_folder(tree: Path, cache_path, monkeypatch):
    monkeypatch.setattr(hashing, "SAVE_EVERY", 1)
    saves = []
    real_save = HashCache.save

    def spy(self, hashed, *, merge=False):
        saves.append(merge)
        real_save(self, hashed, merge=merge)

    monkeypatch.setattr(HashCache, "save", spy)
    with HashCache(cache_path, racy_window_s=0) as cache:
        hash_tree(tree, cache=cache, workers=1)
    assert saves == [False, False, False]  # one per folder of files, each whole
    counter = Counter(monkeypatch)
    with HashCache(cache_path, racy_window_s=0) as cache:
        hash_tree(tree, cache=cache)
    assert counter.calls == 0


def test_fresh_files_are_not_cached(tree: Path, cache_path: Path, monkeypatch):
    """Files changed within the racy window could change again unseen: not stored."""
    with HashCache(cache_path) as cache:
        hash_tree(tree, cache=cache)
    counter = Counter(monkeypatch)
    with HashCache(cache_path) as cache:
        hash_tree(tree, cache=cache)
    assert counter.calls == 4


def test_a_corrupt_cache_is_moved_aside_and_recreated(
    tree: Path, cache_path: Path, caplog, monkeypatch
):
    write(cache_path, b"this is not a database" * 100)
    with (
        caplog.at_level(logging.WARNING, "mltrail.capture"),
        HashCache(cache_path, racy_window_s=0) as cache,
    ):
        entries = hash_tree(tree, cache=cache)
    assert "is corrupt (file is not a database)" in caplog.text
    [aside] = cache_path.parent.glob("hashes.db.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")
    assert compute_manifest(entries) == compute_manifest(hash_tree(tree))
    counter = Counter(monkeypatch)
    with HashCache(cache_path, racy_window_s=0) as cache:
        assert compute_manifest(hash_tree(tree, cache=cache)) == compute_manifest(
            entries
        )
    assert counter.calls == 0


def test_a_cache_of_another_schema_is_recreated(cache_path: Path, caplog):
    cache_path.parent.mkdir(parents=True)
    with sqlite3.connect(cache_path) as db:
        db.execute("PRAGMA user_version=99")
    with caplog.at_level(logging.WARNING, "mltrail.capture"):
        cache = HashCache(cache_path)  # opened when first needed
        assert cache.load([(1, 2)]) == {}
    assert cache.enabled
    assert "unknown cache schema version 99" in caplog.text
    cache.close()


def test_a_cache_that_cannot_be_opened_is_turned_off(tree: Path, tmp_path, caplog):
    write(tmp_path / "file", b"")
    with caplog.at_level(logging.WARNING, "mltrail.capture"):
        cache = HashCache(tmp_path / "file" / "cache" / "hashes.db")
    assert not cache.enabled
    assert "turned off" in caplog.text
    assert compute_manifest(hash_tree(tree, cache=cache)) == compute_manifest(
        hash_tree(tree)
    )
    cache.close()


def test_a_cache_damaged_after_opening_degrades_to_misses(cache_path: Path, caplog):
    folder, key = (1, 2), (1, 3, 4, 5, 6)
    with HashCache(cache_path, racy_window_s=0) as cache:
        cache.save({folder: [(key, EMPTY, time.time_ns())]})
    cache = HashCache(cache_path)
    assert cache.load([folder]) == {folder: {key: EMPTY}}
    cache._db.close()  # as if the connection broke
    with caplog.at_level(logging.WARNING, "mltrail.capture"):
        assert cache.load([folder]) == {}
    assert not cache.enabled
    assert "turned off" in caplog.text
    cache.close()


def test_a_damaged_folder_row_recreates_the_cache(cache_path: Path, caplog):
    folder, key = (1, 2), (1, 3, 4, 5, 6)
    with HashCache(cache_path, racy_window_s=0) as cache:
        cache.save({folder: [(key, EMPTY, time.time_ns())]})
    with sqlite3.connect(cache_path) as db:
        db.execute("UPDATE folders SET hashes = 'not hex'")
    with (
        caplog.at_level(logging.WARNING, "mltrail.capture"),
        HashCache(cache_path) as c,
    ):
        assert c.load([folder]) == {}
        assert c.enabled
    assert "is corrupt (a folder row is damaged)" in caplog.text


def test_cache_keys_beyond_63_bits_are_stored(cache_path: Path):
    folder, key = (2**64 - 1, 2**63 + 1), (2**64 - 1, 2**63 + 5, 7, -8, 9)
    with HashCache(cache_path, racy_window_s=0) as cache:
        cache.save({folder: [(key, EMPTY, time.time_ns())]})
    with HashCache(cache_path) as cache:
        assert cache.load([folder, (1, 2)]) == {folder: {key: EMPTY}}


def test_saving_replaces_a_folder_or_merges_into_it(cache_path: Path):
    folder, old, new = (1, 2), (1, 3, 4, 5, 6), (1, 4, 4, 5, 6)
    now = time.time_ns()
    with HashCache(cache_path, racy_window_s=0) as cache:
        cache.save({folder: [(old, EMPTY, now)]})
        cache.save({folder: [(new, "ab" * 32, now)]}, merge=True)
        assert cache.load([folder]) == {folder: {old: EMPTY, new: "ab" * 32}}
        cache.save({folder: [(new, "cd" * 32, now)]})
        assert cache.load([folder]) == {folder: {new: "cd" * 32}}


def test_a_lone_file_is_cached_beside_its_folder(tree: Path, cache_path, monkeypatch):
    with HashCache(cache_path, racy_window_s=0) as cache:
        hash_tree(tree, cache=cache)
        first = hash_tree(tree / "a.csv", cache=cache)
        hash_tree(tree / "train" / "y.bin", cache=cache)
    counter = Counter(monkeypatch)
    with HashCache(cache_path, racy_window_s=0) as cache:
        assert hash_tree(tree / "a.csv", cache=cache) == first
        assert len(hash_tree(tree, cache=cache)) == 5
    assert counter.calls == 0


# -- scale ---------------------------------------------------------------------------

HWM_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mltrail.capture.data.hashing import hash_tree

    def hwm_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    before = hwm_kib()
    [entry] = hash_tree(Path(sys.argv[1]))
    print(entry.size, entry.sha256, hwm_kib() - before)
    """
)
BIG = 4 * 2**30 + 1
"""Past 2**32 bytes (a size or offset kept in 32 bits would wrap) and twenty times
the memory bound below; 10 GiB took 45-61 s of a CI worker under load."""
ZEROS_BIG = "fbb82f7b353676bb562eb82157fcf0ea42c36492ca13ee56dbf82c08b6802c5c"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_file_past_4_gib_is_hashed_in_bounded_memory(tmp_path: Path):
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        os.truncate(f.fileno(), BIG)  # sparse: reads as zeros
    out = subprocess.run(
        [sys.executable, "-c", HWM_SCRIPT, str(big)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[:2] == [str(BIG), ZEROS_BIG]
    assert int(out[2]) < 200 * 1024  # peak RSS growth, KiB


@pytest.mark.slow
def test_100_000_small_files(tmp_path: Path, monkeypatch):
    root = tmp_path / "many"
    for d in range(100):
        folder = os.fsencode(root / f"d{d:02d}")
        os.makedirs(folder)
        for i in range(1000):
            fd = os.open(b"%s/%d.txt" % (folder, i), os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"%d/%d\n" % (d, i))
            os.close(fd)
    cache_path = tmp_path / "hashes.db"
    with HashCache(cache_path, racy_window_s=0) as cache:
        entries = by_path(hash_tree(root, cache=cache))
    assert len(entries) == 100_000
    assert entries["d42/999.txt"] == FileEntry("d42/999.txt", 7, sha(b"42/999\n"))
    counter = Counter(monkeypatch)
    with HashCache(cache_path, racy_window_s=0) as cache:
        again = hash_tree(root, cache=cache)
    assert counter.calls == 0
    assert compute_manifest(again) == compute_manifest(entries.values())
