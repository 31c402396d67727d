"""The whole-tree hash cache serves every caller (issue 15, part 4): `mltrail run
--data`, `mltrail step` and `Run.log_dataset` go through `datasets.dataset_body`,
which reuses an unchanged folder's stored result as `mltrail data hash` does."""

from __future__ import annotations

import os

from mltrail.capture.data.files import hash_dataset
from mltrail.capture.data.hashcache import HashCache
from mltrail.capture.data.treefiles import trees_folder
from mltrail.record.datasets import artifact_body, dataset_body


def _tree(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    for i in range(30):
        (root / "a" / f"{i}.txt").write_bytes(b"x" * i)
    (root / "top.csv").write_text("x,y\n1,2\n")
    return root


def test_dataset_body_stores_and_reuses_the_whole_tree(tmp_path):
    root = _tree(tmp_path)
    db = tmp_path / "hashes.db"
    plain = dataset_body("train", root)
    with HashCache(db, racy_window_s=0) as cache:
        first = dataset_body("train", root, cache=cache)
    assert len(os.listdir(trees_folder(str(db)))) == 1
    with HashCache(db, racy_window_s=0) as cache:
        again = hash_dataset(root, cache=cache)
        second = dataset_body("train", root, cache=cache)
    assert again.reused
    assert plain["dataset"] == first["dataset"] == second["dataset"]
    assert plain["manifest"].data == second["manifest"].data


def test_a_changed_file_is_not_served_from_the_stored_tree(tmp_path):
    root = _tree(tmp_path)
    db = tmp_path / "hashes.db"
    with HashCache(db, racy_window_s=0) as cache:
        first = dataset_body("train", root, cache=cache)
        (root / "a" / "3.txt").write_bytes(b"changed")
        changed = hash_dataset(root, cache=cache)
        output = artifact_body(root, cache=cache)
    assert not changed.reused
    assert changed.dataset_id != first["dataset"]
    assert output["dataset"] == changed.dataset_id
