"""Property test: ``find_blob_refs`` finds every blob reference, wherever it
sits, with the path a plain walk of every value gives."""

from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.codec import BlobRef, find_blob_refs

DIGEST = "sha256:" + "ab" * 32
REFS = st.builds(
    lambda size, extra: {"blob": DIGEST, "size": size, **extra},
    st.integers(min_value=0, max_value=10),
    st.dictionaries(st.sampled_from(["name", "x"]), st.integers(), max_size=1),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=4))
VALUES = st.recursive(
    st.one_of(SCALARS, REFS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=3), inner, max_size=4),
        REFS.map(lambda ref: ref),
    ),
    max_leaves=20,
)


def walk_every_value(value, path="body"):
    """The walk ``find_blob_refs`` made before it skipped leaves."""
    if isinstance(value, dict):
        digest, size = value.get("blob"), value.get("size")
        if (
            isinstance(digest, str)
            and digest.startswith("sha256:")
            and type(size) is int
        ):
            yield BlobRef(path=path, digest=digest, size=size)
        for key, item in value.items():
            yield from walk_every_value(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk_every_value(item, f"{path}[{i}]")


@given(st.dictionaries(st.text(max_size=3), VALUES, max_size=5))
def test_blob_refs_are_those_of_a_walk_of_every_value(body):
    assert list(find_blob_refs(body)) == list(walk_every_value(body))
