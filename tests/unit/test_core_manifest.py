"""Dataset manifests: canonical lines, sorting, ids, strict parsing."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.manifest import FileEntry, compute_manifest, parse_manifest
from mltrail.core.merkle import compute_root, hash_leaf
from mltrail.errors import SchemaError

H = hashlib.sha256(b"x").hexdigest()


def test_lines_are_canonical_and_sorted_by_raw_bytes():
    manifest = compute_manifest(
        [
            FileEntry("b/z.csv", 3, H),
            FileEntry("a.csv", 0, hashlib.sha256(b"").hexdigest()),
            FileEntry("b/link", link="../a.csv"),
            FileEntry("empty", is_dir=True),
            FileEntry("caf\\xff", 1, H, raw_path=b"caf\xff"),
        ]
    )
    lines = manifest.data.decode().splitlines()
    assert lines[0].startswith('{"path":"a.csv","sha256":')
    assert lines[1] == '{"link":"../a.csv","path":"b/link"}'
    assert (
        lines[3]
        == f'{{"path":"caf\\\\xff","path_b64":"Y2Fm/w==","sha256":"{H}","size":1}}'
    )
    assert lines[4] == '{"dir":true,"path":"empty"}'
    assert manifest.file_count == 3
    assert manifest.total_bytes == 4
    leaves = [hash_leaf(line.encode()) for line in lines]
    assert manifest.dataset_id == compute_root(leaves).hex()
    assert parse_manifest(manifest.data) == manifest


def test_the_empty_dataset_has_the_empty_tree_root():
    assert compute_manifest([]).dataset_id == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    "make",
    [
        lambda: FileEntry("/abs", 1, H),
        lambda: FileEntry("a/../b", 1, H),
        lambda: FileEntry("a//b", 1, H),
        lambda: FileEntry("a", 1, "XYZ"),
        lambda: FileEntry("a", -1, H),
        lambda: FileEntry("a", 1, H, link="b"),
        lambda: FileEntry("a", 5, None, is_dir=True),
        lambda: FileEntry("a"),
    ],
)
def test_bad_entries_are_refused(make):
    with pytest.raises(SchemaError):
        make()


def test_duplicates_are_refused():
    with pytest.raises(SchemaError, match="twice"):
        compute_manifest([FileEntry("a", 1, H), FileEntry("a", link="b")])


@pytest.mark.parametrize(
    "data",
    [
        b'{"path":"a","sha256":"' + H.encode() + b'","size":1}',  # no newline
        b'{"path":"b","sha256":"' + H.encode() + b'","size":1}\n'
        b'{"path":"a","sha256":"' + H.encode() + b'","size":1}\n',  # unsorted
        b'{"size":1,"path":"a","sha256":"' + H.encode() + b'"}\n',  # not canonical
        b'{"path":"a","sha256":"' + H.encode() + b'","size":1,"x":1}\n',
        b'{"path":"a","dir":false}\n',
        b"[1]\n",
    ],
)
def test_parse_is_strict(data):
    with pytest.raises(SchemaError):
        parse_manifest(data)


NAMES = st.text(
    alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
).filter(lambda n: n not in (".", ".."))


@given(
    st.dictionaries(
        st.lists(NAMES, min_size=1, max_size=3).map("/".join), st.binary(max_size=20)
    )
)
def test_manifests_round_trip_and_ids_ignore_input_order(files):
    entries = [
        FileEntry(path, len(data), hashlib.sha256(data).hexdigest())
        for path, data in files.items()
    ]
    forward = compute_manifest(entries)
    backward = compute_manifest(list(reversed(entries)))
    assert forward == backward
    assert parse_manifest(forward.data) == forward
