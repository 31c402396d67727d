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


def test_a_link_target_that_is_not_utf8_keeps_its_bytes():
    link = FileEntry("l", link="caf\\xff", raw_link=b"caf\xff")
    manifest = compute_manifest([link, FileEntry("a", 1, H)])
    assert manifest.data.splitlines()[1] == (
        b'{"link":"caf\\\\xff","link_b64":"Y2Fm/w==","path":"l"}'
    )
    assert parse_manifest(manifest.data).entries[1] == link
    assert link.to_dict()["link_b64"] == "Y2Fm/w=="


@pytest.mark.parametrize(
    "make",
    [
        lambda: FileEntry("l", link="caf", raw_link=b"caf"),  # UTF-8: no raw bytes
        lambda: FileEntry("l", link="other", raw_link=b"caf\xff"),  # not its bytes
        lambda: FileEntry("f", 1, H, raw_link=b"caf\xff"),  # only links have one
        lambda: FileEntry("caf", 1, H, raw_path=b"caf"),
        lambda: FileEntry("x", 1, H, raw_path=b"caf\xff"),
        lambda: FileEntry("l", link="caf\\xff", raw_link="caf\xff"),  # not bytes
    ],
)
def test_raw_bytes_must_be_needed_and_shown(make):
    with pytest.raises(SchemaError):
        make()


LINK = '{"link":"caf\\\\xff","link_b64":"%s","path":"l"}\n'


@pytest.mark.parametrize(
    "data",
    [
        (LINK % "Y2Fm/w").encode(),  # padding missing
        (LINK % "Y2Fm/w=\n=").encode(),  # not base64
        (LINK % "Y2Fm").encode(),  # UTF-8 bytes
        (LINK % "ZG9n/w==").encode(),  # bytes that link does not show
        f'{{"link_b64":"Y2Fm/w==","path":"a","sha256":"{H}","size":1}}\n'.encode(),
        b'{"dir":true,"link_b64":"Y2Fm/w==","path":"a"}\n',
        b'{"link":"caf\\\\xff","link_b64":1,"path":"l"}\n',
    ],
)
def test_link_b64_is_parsed_strictly(data):
    with pytest.raises(SchemaError):
        parse_manifest(data)


TEXT = st.text(
    alphabet=st.characters(blacklist_characters="/", blacklist_categories=("Cs",)),
    min_size=1,
)


@given(st.lists(TEXT.filter(lambda n: n not in (".", "..")), min_size=1, max_size=3))
def test_fast_file_lines_are_the_canonical_lines(parts):
    from mltrail.core.canonical import canonical_bytes

    entry = FileEntry("/".join(parts), 2**53 - 1, H)
    assert entry.to_line() == canonical_bytes(entry.to_dict())


def test_known_files_equal_checked_ones():
    known = FileEntry.known_file("a/caf\\xff", 3, H, b"a/caf\xff")
    assert known == FileEntry("a/caf\\xff", 3, H, raw_path=b"a/caf\xff")
    assert (
        known.to_line()
        == FileEntry("a/caf\\xff", 3, H, raw_path=b"a/caf\xff").to_line()
    )


@pytest.mark.parametrize("n", [*range(40), 63, 64, 65, 127, 1000])
def test_the_dataset_id_is_the_rfc9162_root_for_every_size(n):
    entries = [FileEntry(f"f{i:04d}", i, H) for i in range(n)]
    manifest = compute_manifest(entries)
    leaves = [hash_leaf(line) for line in manifest.data.splitlines()]
    assert manifest.dataset_id == compute_root(leaves).hex()
