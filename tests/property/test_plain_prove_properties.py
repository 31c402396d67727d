"""Property test: the plain path takes ``prove SEQ --json`` only for a SEQ it
reads as click's ``int`` does (ADR 0038), and leaves every other SEQ to click."""

import click
from hypothesis import given
from hypothesis import strategies as st

from mltrail.cli.reads import _parse

SEQS = st.one_of(
    st.integers(min_value=0, max_value=10**20).map(str),
    st.integers(min_value=0, max_value=99).map(lambda n: f"00{n}"),
    st.text(alphabet="0123456789+-_ .e٣x", min_size=1, max_size=22),
    st.text(min_size=1, max_size=6),
)


def _click_int(text: str) -> int | None:
    try:
        return click.INT.convert(text, None, None)
    except click.BadParameter:
        return None


@given(SEQS)
def test_plain_prove_reads_seq_as_click_does(seq):
    parsed = _parse(["--home", ".", "prove", seq, "--json"])
    plain = seq.isascii() and seq.isdigit() and len(seq) <= 18
    if seq.startswith("-"):
        assert parsed is None  # an option to click
        return
    assert (parsed is not None) == plain
    if parsed is not None:
        command, _, values = parsed
        assert command == ("prove",)
        assert int(values["target"]) == _click_int(seq)


@given(SEQS)
def test_plain_prove_takes_no_other_option(seq):
    for args in (
        ["prove", seq, "--json", "--consistency", "1", "2"],
        ["--home", ".", "prove", seq, "--full", "--json"],  # show's flag
        ["prove", "--json", seq, seq],
        ["prove", seq],  # text: click
        ["prove", "--json"],
    ):
        assert _parse(args) is None, args
