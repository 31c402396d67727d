"""A poisoned hash cache cannot turn a verdict (ADR 0035, "verdicts read every file").

The attacker can write the ledger home (not the signing key): after changing a
data file (same size, mtime put back), they forge what the home's hash cache says
of it, as rows of per-file hashes or as a whole-folder tree file, so that it
answers with the old content's hashes. ``reproduce --check`` and ``sources
check`` must still see the change; a capture must not use a cache that another
account could have written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING

import pytest

from cli_runner import mltrail
from mltrail.capture.data.files import hash_dataset
from mltrail.capture.data.hashcache import HashCache, StoredTree, stat_key
from mltrail.capture.data.hashing import hash_tree_unless
from mltrail.capture.data.treecache import TreeProbe

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.capture.data.files import HashedData

WINDOW_NS = 2_000_000_000  # the cache's default racy window


class Recorded:
    """A home with a run that read ``project/data`` and a source on it."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.project = tmp_path / "project"
        self.data = self.project / "data"
        (self.data / "sub").mkdir(parents=True)
        for n in (1, 2, 3):
            (self.data / f"f{n}.csv").write_text(f"row {n} good\n")
        (self.data / "sub" / "g.csv").write_text("label ok\n")
        self.cache = self.home / "cache" / "hashes.db"
        self.original = hash_dataset(self.data, cache=None)
        self.cli("init")
        ran = self.cli("run", "--data", "train=data", "--", "true")
        self.run = ran.stderr.split("run ", 1)[1].split()[0]
        self.cli("sources", "add", "raw", "data")

    def cli(self, *args: str, rc: int = 0) -> object:
        done = mltrail(self.home, *args, cwd=self.project)
        assert done.returncode == rc, (args, done.stdout, done.stderr)
        return done

    def last_check(self) -> dict[str, object]:
        """The body of the latest ``source.checked`` record."""
        records = json.loads(self.cli("log", "--json").stdout)  # type: ignore[attr-defined]
        bodies = [
            r["entry"]["body"]
            for r in records
            if r["entry"]["kind"] == "source.checked"
        ]
        return bodies[-1]  # type: ignore[no-any-return]

    def tamper(self) -> None:
        """Change a file's content, keeping its size and mtime: only ctime moves."""
        path = self.data / "f1.csv"
        st = path.stat()
        path.write_text("row 1 EVIL\n")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    def forge_rows(self) -> None:
        """Per-file rows: the files' stat keys now, with the old content's hashes."""
        rows: dict[tuple[int, int], list[tuple[tuple[int, ...], str, int]]] = {}
        for entry in self.original.manifest.entries:
            path = self.data / entry.path
            folder = path.parent.stat()
            key = stat_key(path.stat())
            forged_time = max(key[3], key[4]) + WINDOW_NS  # "hashed" long after
            rows.setdefault((folder.st_dev, folder.st_ino), []).append(
                (key, str(entry.sha256), forged_time)
            )
        with HashCache(self.cache) as cache:
            cache.save(rows)  # type: ignore[arg-type]

    def forge_tree(self) -> None:
        """A tree file for the folder's walk now, holding the old manifest."""
        with HashCache(self.cache) as cache:
            root = os.path.realpath(os.fsencode(self.data)) + b"\0"
            probe = TreeProbe(cache, root, look=False)
            hash_tree_unless(self.data, probe, cache=None)
            old = self.original
            cache.save_tree(
                root,
                StoredTree(
                    probe.digest.digest(), old.files, old.bytes, old.dataset_id,
                    old.data, b"", b"",
                ),
            )  # fmt: skip


def true_id(path: Path) -> str:
    return hash_dataset(path, cache=None).dataset_id


@pytest.fixture
def recorded(tmp_path: Path) -> Recorded:
    return Recorded(tmp_path)


def _forged_cache_answers(recorded: Recorded) -> HashedData:
    with HashCache(recorded.cache) as cache:
        return hash_dataset(recorded.data, cache=cache)


def test_reproduce_check_reads_every_file_despite_forged_rows(
    recorded: Recorded,
) -> None:
    recorded.tamper()
    recorded.forge_rows()
    forged = _forged_cache_answers(recorded)
    assert forged.dataset_id == recorded.original.dataset_id  # the attack works
    assert forged.dataset_id != true_id(recorded.data)

    trusting = recorded.cli(
        "reproduce", recorded.run, "--check", "--no-env", "--trust-cache", "--json"
    )  # asked to trust the cache, it is fooled, and says how it hashed
    assert json.loads(trusting.stdout)["data_hashed"] == "cache"

    done = recorded.cli(
        "reproduce", recorded.run, "--check", "--no-env", "--json", rc=1
    )
    report = json.loads(done.stdout)
    assert report["data_hashed"] == "content"
    assert any(m["what"] == "train f1.csv" for m in report["mismatches"])
    text = recorded.cli("reproduce", recorded.run, "--check", "--no-env", rc=1)
    assert "(data: every file read)" in text.stdout
    # the check stored what it read: the forged rows are gone
    assert _forged_cache_answers(recorded).dataset_id == true_id(recorded.data)


def test_sources_check_reads_every_file_despite_forged_rows(
    recorded: Recorded,
) -> None:
    recorded.tamper()
    recorded.forge_rows()
    assert _forged_cache_answers(recorded).dataset_id == recorded.original.dataset_id

    done = recorded.cli("sources", "check", "--json", rc=1)
    [result] = json.loads(done.stdout)
    assert result["changed"] is True
    assert result["hashed"] == "content"
    assert result["fingerprint"] == true_id(recorded.data)
    assert recorded.last_check()["hashed"] == "content"


def test_sources_check_of_one_file_reads_it_despite_a_forged_row(
    recorded: Recorded,
) -> None:
    recorded.cli("sources", "add", "one", "data/f1.csv")
    recorded.tamper()
    recorded.forge_rows()
    with HashCache(recorded.cache) as cache:  # the attack works on a lone file
        lone = hash_dataset(recorded.data / "f1.csv", cache=cache)
    assert lone.dataset_id != true_id(recorded.data / "f1.csv")

    done = recorded.cli("sources", "check", "one", "--json", rc=1)
    [result] = json.loads(done.stdout)
    assert result["changed"] is True
    assert result["fingerprint"] == true_id(recorded.data / "f1.csv")


def test_sources_check_ignores_a_forged_tree_file(recorded: Recorded) -> None:
    recorded.tamper()
    recorded.cache.unlink()  # no per-file rows: only the tree file answers
    recorded.forge_tree()
    time.sleep(2.1)  # the changed file is out of the racy window: the file is used
    assert _forged_cache_answers(recorded).dataset_id == recorded.original.dataset_id

    done = recorded.cli("sources", "check", "--json", rc=1)
    [result] = json.loads(done.stdout)
    assert result["changed"] is True
    assert result["fingerprint"] == true_id(recorded.data)


def test_sources_check_trusting_the_cache_says_so(recorded: Recorded) -> None:
    done = recorded.cli("sources", "check", "--trust-cache")
    assert "raw: unchanged" in done.stdout
    assert "(unchanged files' hashes taken from the hash cache" in done.stdout
    assert recorded.last_check()["hashed"] == "cache"


# -- a cache another account could write is not used -------------------------------


def _forged_home(tmp_path: Path) -> tuple[Recorded, Path]:
    recorded = Recorded(tmp_path)
    recorded.tamper()
    recorded.forge_rows()
    return recorded, recorded.cache.parent


def _capture_is_true(recorded: Recorded, caplog: pytest.LogCaptureFixture) -> str:
    with (
        caplog.at_level(logging.WARNING, logger="mltrail.capture"),
        HashCache(recorded.cache) as cache,
    ):
        assert not cache.enabled
        found = hash_dataset(recorded.data, cache=cache)
    assert found.dataset_id == true_id(recorded.data)
    return caplog.text


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_cache_folder_others_can_write_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorded, folder = _forged_home(tmp_path)
    folder.chmod(0o777)
    assert "can be written by its group or others" in _capture_is_true(recorded, caplog)


def _another_group() -> int | None:
    """A group this process may give its files that is not its own primary one."""
    if os.geteuid() == 0:
        return 4242
    others = [g for g in os.getgroups() if g != os.getegid()]
    return others[0] if others else None


def _own_group_is_private() -> bool:
    import grp
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    return set(grp.getgrgid(os.getegid()).gr_mem) <= {me}


@pytest.mark.skipif(
    os.name != "posix" or _another_group() is None, reason="POSIX, another group"
)
def test_a_cache_database_a_shared_group_can_write_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorded, _ = _forged_home(tmp_path)
    os.chown(recorded.cache, -1, _another_group())  # type: ignore[arg-type]
    recorded.cache.chmod(0o664)
    with (
        caplog.at_level(logging.WARNING, logger="mltrail.capture"),
        HashCache(recorded.cache) as cache,
    ):
        found = hash_dataset(recorded.data, cache=cache)
    assert found.dataset_id == true_id(recorded.data)
    assert "hashes.db can be written by its group or others" in caplog.text


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_cache_folder_linked_to_a_shared_folder_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorded, folder = _forged_home(tmp_path)
    shared = tmp_path / "shared"
    folder.rename(shared)
    shared.chmod(0o1777)  # as /tmp: sticky, but anyone can make new names
    folder.symlink_to(shared)
    assert "can be written by its group or others" in _capture_is_true(recorded, caplog)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="chown needs root")
def test_a_cache_folder_of_another_user_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorded, folder = _forged_home(tmp_path)
    os.chown(folder, 4242, 4242)
    assert "belongs to uid 4242" in _capture_is_true(recorded, caplog)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="chown needs root")
def test_a_tree_file_of_another_user_is_a_miss(tmp_path: Path) -> None:
    recorded = Recorded(tmp_path)
    recorded.tamper()
    recorded.cache.unlink()
    recorded.forge_tree()
    time.sleep(2.1)
    trees = recorded.cache.parent / "hashes.trees"
    for tree in trees.iterdir():
        os.chown(tree, 4242, 4242)
    assert _forged_cache_answers(recorded).dataset_id == true_id(recorded.data)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_new_cache_is_private_whatever_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("a\n")
    cache_path = tmp_path / "home" / "cache" / "hashes.db"
    old = os.umask(0o002)
    try:
        with HashCache(cache_path, racy_window_s=0) as cache:
            hash_dataset(data, cache=cache)
    finally:
        os.umask(old)
    for path in (cache_path.parent, cache_path, cache_path.parent / "hashes.trees"):
        assert path.stat().st_mode & 0o077 == 0, path
    with HashCache(cache_path) as cache:
        assert cache.enabled


@pytest.mark.skipif(
    os.name != "posix" or not _own_group_is_private(), reason="a group per user"
)
def test_a_cache_only_a_private_group_can_write_is_used(tmp_path: Path) -> None:
    """``umask 002`` where each user has a group of their own: nobody else."""
    recorded, folder = _forged_home(tmp_path)
    folder.chmod(0o775)
    recorded.cache.chmod(0o664)
    with HashCache(recorded.cache) as cache:
        assert cache.enabled
        found = hash_dataset(recorded.data, cache=cache)
    assert found.dataset_id == recorded.original.dataset_id  # the rows were read
