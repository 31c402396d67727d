"""find_dvc_hashes and dvc_md5 against DVC repositories laid out in tmp_path.

The ``REAL_*`` fixtures are verbatim output of DVC 3.67.1 (``dvc add`` and ``dvc
stage add`` + ``dvc repro`` in a scratch repository), and the md5 values expected
from ``dvc_md5`` were computed by DVC itself (dvc-data's ``file_md5``, with
``name="md5-dos2unix"`` for the DVC 2 values), so the formats and hashes here are
DVC's, not our reading of them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mltrail.capture.data.dvc import dvc_md5, find_dvc_hashes
from mltrail.errors import CaptureError, InputError

# `printf 'a,b\r\n1,2\r\n' > data/crlf.csv; dvc add data/crlf.csv`
REAL_FILE_DVC = """\
outs:
- md5: b202f333fba4fd38d4b8e5e693077aab
  size: 10
  hash: md5
  path: crlf.csv
"""
CRLF_CSV = b"a,b\r\n1,2\r\n"

# `dvc add data/images` (one.txt = "x\n", two.bin = b"\x00\x01binary")
REAL_FOLDER_DVC = """\
outs:
- md5: 0cf2d9456e4869e2af0d8c8380a25c90.dir
  size: 10
  nfiles: 2
  hash: md5
  path: images
"""
IMAGES = {"one.txt": b"x\n", "two.bin": b"\x00\x01binary"}
IMAGES_DIR_MD5 = "0cf2d9456e4869e2af0d8c8380a25c90"
# .dvc/cache/files/md5/0c/f2d9456e4869e2af0d8c8380a25c90.dir
REAL_IMAGES_DIR = (
    '[{"md5": "401b30e3b8b5d629635a5c613cdb7919", "relpath": "one.txt"}, '
    '{"md5": "0a3618d886b265f5986c91890c53f18d", "relpath": "two.bin"}]'
)

# pipe/: `dvc stage add -n train -d train.py -o model.bin -o out python train.py`
REAL_TRAIN_PY = """\
import pathlib
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/r.txt").write_text("r\\n")
pathlib.Path("model.bin").write_bytes(b"m")
"""
REAL_PIPE_LOCK = """\
schema: '2.0'
stages:
  train:
    cmd: python train.py
    deps:
    - path: train.py
      hash: md5
      md5: 5512ab51f06302737fcf24524017a3e8
      size: 144
    outs:
    - path: model.bin
      hash: md5
      md5: 6f8f57715090da2632453988d9a1501b
      size: 1
    - path: out
      hash: md5
      md5: 150f190b0eb1761e63a8347c2ef75e4e.dir
      size: 2
      nfiles: 1
"""
REAL_OUT_DIR = '[{"md5": "72cfd272ace172fa35026445fbef9b03", "relpath": "r.txt"}]'

# wd/: `dvc stage add -n mk -w sub -d mk.py -o o.txt python mk.py`: outputs in
# dvc.lock are relative to the stage's wdir, which only dvc.yaml records.
REAL_WDIR_YAML = """\
stages:
  mk:
    cmd: python mk.py
    wdir: sub
    deps:
    - mk.py
    outs:
    - o.txt
"""
REAL_WDIR_LOCK = """\
schema: '2.0'
stages:
  mk:
    cmd: python mk.py
    deps:
    - path: mk.py
      hash: md5
      md5: 126f7176c5f3397ea951a79601f84346
      size: 31
    outs:
    - path: o.txt
      hash: md5
      md5: e73af36376314c7c0022cb1d204f76b3
      size: 2
"""


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


@pytest.fixture
def repo(tmp_path) -> Path:
    """An empty DVC repository (a .dvc folder with a config, as `dvc init` makes)."""
    root = tmp_path / "repo"
    write(root / ".dvc" / "config", "[core]\n    analytics = false\n")
    return root


def cache_dir_file(repo: Path, md5: str, *, layout: int = 3) -> Path:
    cache = repo / ".dvc" / "cache"
    folder = cache / "files" / "md5" if layout == 3 else cache
    return folder / md5[:2] / (md5[2:] + ".dir")


# --- .dvc files ------------------------------------------------------------------


def test_dvc_add_file(repo):
    csv = write(repo / "data" / "crlf.csv", CRLF_CSV)
    write(repo / "data" / "crlf.csv.dvc", REAL_FILE_DVC)
    assert find_dvc_hashes(csv) == {
        "source": "data/crlf.csv.dvc",
        "stage": None,
        "md5": "b202f333fba4fd38d4b8e5e693077aab",
        "size": 10,
        "nfiles": None,
        "hash": "md5",
    }


def test_dvc3_md5_does_not_normalise_line_endings(repo):
    csv = write(repo / "crlf.csv", CRLF_CSV)
    assert dvc_md5(csv) == "b202f333fba4fd38d4b8e5e693077aab"  # what dvc add wrote
    assert dvc_md5(csv) == hashlib.md5(CRLF_CSV).hexdigest()
    # DVC 2 (md5-dos2unix) hashed the text with LF line endings
    assert dvc_md5(csv, legacy=True) == "e5ebd4c02cefbe7955977c67ada242b7"
    assert dvc_md5(csv, legacy=True) == hashlib.md5(b"a,b\n1,2\n").hexdigest()


def test_dvc2_md5_is_normalised_per_chunk_and_only_for_text(tmp_path):
    # a CRLF split across the 1 MiB chunk boundary is kept (dvc-data gives the same)
    straddle = write(tmp_path / "straddle.txt", b"p" * (2**20 - 1) + b"\r\nq\r\n")
    assert dvc_md5(straddle, legacy=True) == "65aa9841481f4723bfc0e8e0b6bb3fb1"
    binary = write(tmp_path / "bin.dat", b"\x00\r\n" + bytes(range(256)))
    assert dvc_md5(binary, legacy=True) == "1feb9ff1f5c4d07b647534c351723551"
    assert dvc_md5(binary) == "1feb9ff1f5c4d07b647534c351723551"


def test_dvc_add_folder_with_dvc3_cache(repo):
    images = repo / "data" / "images"
    for name, data in IMAGES.items():
        write(images / name, data)
    write(repo / "data" / "images.dvc", REAL_FOLDER_DVC)
    write(cache_dir_file(repo, IMAGES_DIR_MD5), REAL_IMAGES_DIR)
    record = find_dvc_hashes(images)
    assert record == {
        "source": "data/images.dvc",
        "stage": None,
        "md5": IMAGES_DIR_MD5 + ".dir",
        "size": 10,
        "nfiles": 2,
        "hash": "md5",
        "files": {
            "one.txt": "401b30e3b8b5d629635a5c613cdb7919",
            "two.bin": "0a3618d886b265f5986c91890c53f18d",
        },
    }
    assert dvc_md5(images) == record["md5"]
    for rel, md5 in record["files"].items():
        assert dvc_md5(images / rel) == md5


def test_folder_with_dvc2_cache_and_record(repo):
    images = repo / "images"
    dvc2 = REAL_FOLDER_DVC.replace("  hash: md5\n", "")  # DVC 2 wrote no hash field
    write(repo / "images.dvc", dvc2)
    write(cache_dir_file(repo, IMAGES_DIR_MD5, layout=2), REAL_IMAGES_DIR)
    record = find_dvc_hashes(images)  # not checked out: still tracked
    assert record is not None
    assert record["hash"] == "md5-dos2unix"
    assert record["files"] == json_files(REAL_IMAGES_DIR)


def json_files(listing: str) -> dict[str, str]:
    return {item["relpath"]: item["md5"] for item in json.loads(listing)}


def test_folder_without_its_listing_in_the_cache(repo):
    write(repo / "data" / "images.dvc", REAL_FOLDER_DVC)
    record = find_dvc_hashes(repo / "data" / "images")
    assert record is not None
    assert "files" not in record
    assert record["nfiles"] == 2


def test_cache_dir_from_the_dvc_config(repo, tmp_path):
    write(repo / ".dvc" / "config.local", "[cache]\n    dir = ../../shared-cache\n")
    write(repo / "images.dvc", REAL_FOLDER_DVC)
    shared = tmp_path / "shared-cache" / "files" / "md5"
    write(shared / IMAGES_DIR_MD5[:2] / (IMAGES_DIR_MD5[2:] + ".dir"), REAL_IMAGES_DIR)
    assert find_dvc_hashes(repo / "images")["files"] == json_files(REAL_IMAGES_DIR)


def test_listing_kept_in_the_record(repo):
    write(
        repo / "images.dvc",
        REAL_FOLDER_DVC
        + "  files:\n"
        + "  - relpath: one.txt\n    md5: 401b30e3b8b5d629635a5c613cdb7919\n    size: 2\n",
    )
    record = find_dvc_hashes(repo / "images")
    assert record["files"] == {"one.txt": "401b30e3b8b5d629635a5c613cdb7919"}


def test_a_tracked_file_that_is_a_link_into_the_cache(repo):
    cached = write(
        repo / ".dvc/cache/files/md5/b2/02f333fba4fd38d4b8e5e693077aab", CRLF_CSV
    )
    (repo / "data").mkdir()
    (repo / "data" / "crlf.csv").symlink_to(cached)
    write(repo / "data" / "crlf.csv.dvc", REAL_FILE_DVC)
    assert find_dvc_hashes(repo / "data" / "crlf.csv")["source"] == "data/crlf.csv.dvc"


# --- dvc.lock ----------------------------------------------------------------------


@pytest.fixture
def pipeline(repo) -> Path:
    pipe = repo / "pipe"
    write(pipe / "train.py", REAL_TRAIN_PY)
    write(pipe / "dvc.lock", REAL_PIPE_LOCK)
    write(pipe / "model.bin", b"m")
    write(pipe / "out" / "r.txt", b"r\n")
    write(cache_dir_file(repo, "150f190b0eb1761e63a8347c2ef75e4e"), REAL_OUT_DIR)
    return pipe


def test_dvc_lock_outputs(pipeline):
    assert find_dvc_hashes(pipeline / "model.bin") == {
        "source": "pipe/dvc.lock",
        "stage": "train",
        "md5": "6f8f57715090da2632453988d9a1501b",
        "size": 1,
        "nfiles": None,
        "hash": "md5",
    }
    out = find_dvc_hashes(pipeline / "out")
    assert out["md5"] == "150f190b0eb1761e63a8347c2ef75e4e.dir"
    assert out["files"] == {"r.txt": "72cfd272ace172fa35026445fbef9b03"}
    assert dvc_md5(pipeline / "out") == out["md5"]
    assert dvc_md5(pipeline / "model.bin") == "6f8f57715090da2632453988d9a1501b"


def test_dependencies_are_not_outputs(pipeline):
    assert find_dvc_hashes(pipeline / "train.py") is None


def test_dvc_lock_paths_are_relative_to_the_stage_wdir(repo):
    write(repo / "wd" / "dvc.yaml", REAL_WDIR_YAML)
    write(repo / "wd" / "dvc.lock", REAL_WDIR_LOCK)
    record = find_dvc_hashes(repo / "wd" / "sub" / "o.txt")
    assert record["source"] == "wd/dvc.lock"
    assert record["stage"] == "mk"
    assert record["md5"] == "e73af36376314c7c0022cb1d204f76b3"
    assert find_dvc_hashes(repo / "wd" / "o.txt") is None


def test_dvc_lock_in_a_parent_folder(repo):
    lock = """\
schema: '2.0'
stages:
  prepare:
    cmd: python prepare.py
    outs:
    - path: data/prepared/train.csv
      hash: md5
      md5: 0123456789abcdef0123456789abcdef
      size: 42
"""
    write(repo / "dvc.lock", lock)
    write(repo / "data" / "dvc.lock", "schema: '2.0'\nstages: {}\n")  # nearer, no match
    record = find_dvc_hashes(repo / "data" / "prepared" / "train.csv")
    assert record["source"] == "dvc.lock"
    assert record["stage"] == "prepare"
    assert record["md5"] == "0123456789abcdef0123456789abcdef"


def test_the_nearest_dvc_lock_wins(repo):
    def lock(md5: str, path: str) -> str:
        return f"schema: '2.0'\nstages:\n  s:\n    outs:\n    - path: {path}\n      md5: {md5}\n"

    write(repo / "dvc.lock", lock("a" * 32, "data/x.csv"))
    write(repo / "data" / "dvc.lock", lock("b" * 32, "x.csv"))
    assert find_dvc_hashes(repo / "data" / "x.csv")["md5"] == "b" * 32


def test_dvc_lock_above_the_repository_root_is_ignored(tmp_path, repo):
    write(
        tmp_path / "dvc.lock",
        "schema: '2.0'\nstages:\n  s:\n    outs:\n    - path: repo/x.csv\n      md5: "
        + "c" * 32
        + "\n",
    )
    assert find_dvc_hashes(repo / "x.csv") is None


def test_dvc1_lock_format(repo):
    write(
        repo / "dvc.lock",
        "train:\n  cmd: python t.py\n  outs:\n  - path: m.pkl\n    md5: "
        + "d" * 32
        + "\n",
    )
    record = find_dvc_hashes(repo / "m.pkl")
    assert record["stage"] == "train"
    assert record["hash"] == "md5-dos2unix"


def test_external_outputs_are_skipped(repo):
    write(
        repo / "dvc.lock",
        "schema: '2.0'\nstages:\n  s:\n    outs:\n    - path: s3://bucket/x.csv\n      etag: abc\n",
    )
    assert find_dvc_hashes(repo / "x.csv") is None


# --- untracked and malformed ---------------------------------------------------------


def test_untracked_paths(repo, tmp_path):
    write(repo / "data" / "plain.csv", b"1\n")
    assert find_dvc_hashes(repo / "data" / "plain.csv") is None
    assert find_dvc_hashes(repo / "data") is None
    outside = write(tmp_path / "elsewhere" / "f.csv", b"1\n")
    assert find_dvc_hashes(outside) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("outs: [\n", "not valid YAML"),
        ("- just a list\n", "top level is not a mapping"),
        ("outs: {path: x.csv}\n", "outs must be a list"),
        ("outs:\n- md5: " + "a" * 32 + "\n", "each output needs a path"),
        ("outs:\n- path: x.csv\n  md5: nothex\n", "md5 is not an md5"),
        (
            "outs:\n- path: x.csv\n  md5: " + "a" * 32 + "\n  size: -1\n",
            "size is not a count",
        ),
        (
            "outs:\n- path: x.csv\n  md5: " + "a" * 32 + "\n  nfiles: two\n",
            "nfiles is not",
        ),
        ("outs:\n- path: x.csv\n  hash: [md5]\n", "hash is not a name"),
    ],
)
def test_malformed_dvc_file(repo, text, message):
    dvc_file = write(repo / "x.csv.dvc", text)
    with pytest.raises(InputError, match=message) as caught:
        find_dvc_hashes(repo / "x.csv")
    assert str(dvc_file) in str(caught.value)
    assert "dvc" in caught.value.hint


def test_not_utf8_dvc_file(repo):
    write(repo / "x.csv.dvc", b"outs:\n- path: \xff\n")
    with pytest.raises(InputError, match="not UTF-8"):
        find_dvc_hashes(repo / "x.csv")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema: '2.0'\nstages: [a, b]\n", "stages must be a mapping"),
        ("schema: '2.0'\nstages:\n  s: 3\n", "stages must be a mapping"),
        (
            "schema: '2.0'\nstages:\n  s:\n    outs: x.csv\n",
            "stage 's': outs must be a list",
        ),
        ("schema: '2.0'\nstages: {a: {outs: [b]}\n", "not valid YAML"),
    ],
)
def test_malformed_dvc_lock(repo, text, message):
    lock = write(repo / "dvc.lock", text)
    with pytest.raises(InputError, match=message) as caught:
        find_dvc_hashes(repo / "x.csv")
    assert str(lock) in str(caught.value)


@pytest.mark.parametrize(
    "listing",
    [
        "not json",
        '{"md5": "x"}',
        '[{"relpath": "a"}]',
        '[{"md5": "zz", "relpath": "a"}]',
        "[1]",
    ],
)
def test_malformed_cache_listing(repo, listing):
    write(repo / "images.dvc", REAL_FOLDER_DVC)
    cached = write(cache_dir_file(repo, IMAGES_DIR_MD5), listing)
    with pytest.raises(InputError, match="malformed DVC") as caught:
        find_dvc_hashes(repo / "images")
    assert str(cached) in str(caught.value)


def test_dvc_md5_of_a_missing_file(tmp_path):
    with pytest.raises(CaptureError, match="cannot read"):
        dvc_md5(tmp_path / "gone.bin")
