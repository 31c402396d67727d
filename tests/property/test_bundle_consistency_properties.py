"""A bundle's proof that it extends a kept checkpoint (``export
--consistent-with``): any edit of the proof, of the kept text it carries, or of
the checkpoint the verifier kept, fails in verify-bundle and in the standalone
example, and neither ever raises (ADR 0016, amendment of 2026-12-07)."""

import importlib.util
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.core.bundle import BundlePolicy, BundleReport, verify_bundle_bytes
from mltrail.core.canonical import canonical_bytes
from mltrail.evidence.bundle import export_bundle
from mltrail.index import open_index
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft

ROOT = Path(__file__).resolve().parents[2]


def _example():
    spec = importlib.util.spec_from_file_location(
        "verify_bundle_example", ROOT / "examples" / "verify_bundle.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _example()


def _runs(home, names):
    opened = open_home(home)
    for name in names:
        opened.ledger.append_many([
            Draft("run.started", {"source": "api", "name": name}, f"run-{name}"),
            Draft("run.ended", {"status": "succeeded"}, f"run-{name}"),
        ])  # fmt: skip
    text = opened.checkpoint().to_text()
    opened.close()
    return text


def _build():
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        init_home(home, origin="test.mltrail.local/consistency-properties")
        kept = _runs(home, ["a", "b"])  # size 5: not a power of two
        _runs(home, ["c", "d", "e"])
        opened = open_home(home)
        index = open_index(opened)
        try:
            bundle = export_bundle(
                opened.ledger, index, "run:run-a", consistent_with=[("kept", kept)]
            )
        finally:
            index.close()
            opened.close()
    return canonical_bytes(bundle), kept


DATA, KEPT = _build()
GROUP = len(json.loads(DATA)["evidence"]) - 1


def _verify(data: bytes, kept: str) -> BundleReport:
    return verify_bundle_bytes(data, BundlePolicy(trusted_checkpoints=[("k", kept)]))


def test_the_unedited_bundle_verifies_in_both():
    assert _verify(DATA, KEPT).ok
    assert EXAMPLE.check_kept(json.loads(DATA), KEPT, _keys()) == 5


def _keys():
    bundle = json.loads(DATA)
    return EXAMPLE.key_history(EXAMPLE.read_records(bundle), bundle["origin"])


hex_hash = st.binary(min_size=32, max_size=32).map(bytes.hex)
value = st.one_of(
    st.none(), st.integers(-3, 2**53 - 1), st.text(max_size=80), hex_hash,
    st.lists(hex_hash, max_size=8), st.just({}),
)  # fmt: skip


@st.composite
def edited_proofs(draw):
    proof = list(json.loads(DATA)["evidence"][GROUP]["consistency"])
    kind = draw(st.sampled_from(["flip", "drop", "add", "swap", "value"]))
    at = draw(st.integers(0, len(proof) - 1))
    if kind == "flip":
        digit = draw(st.integers(0, 63))
        old = proof[at][digit]
        new = draw(st.sampled_from("0123456789abcdef").filter(lambda c: c != old))
        proof[at] = proof[at][:digit] + new + proof[at][digit + 1 :]
    elif kind == "drop":
        del proof[at]
    elif kind == "add":
        proof.insert(at, draw(hex_hash))
    elif kind == "swap" and len(set(proof)) > 1:
        other = draw(
            st.integers(0, len(proof) - 1).filter(lambda i: proof[i] != proof[at])
        )
        proof[at], proof[other] = proof[other], proof[at]
    else:
        proof = draw(value)
    return proof


def _check_fails(bundle, kept, tmp):
    data = canonical_bytes(bundle)
    report = _verify(data, kept)
    assert isinstance(report, BundleReport)
    assert not report.ok
    target = tmp / "bundle.json"
    target.write_bytes(data)
    cp = tmp / "kept.cp"
    cp.write_text(kept)
    assert (
        EXAMPLE.main(["verify_bundle.py", str(target), "--trust-checkpoint", str(cp)])
        == 1
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_proofs())
def test_an_edited_consistency_proof_fails_in_both(proof):
    bundle = json.loads(DATA)
    if proof == bundle["evidence"][GROUP]["consistency"]:
        return
    bundle["evidence"][GROUP]["consistency"] = proof
    with tempfile.TemporaryDirectory() as folder:
        _check_fails(bundle, KEPT, Path(folder))


def _edit_text(draw, text):
    at = draw(st.integers(0, len(text) - 1))
    kind = draw(st.sampled_from(["replace", "delete", "insert"]))
    char = draw(st.characters(codec="utf-8", exclude_characters="\r"))
    if kind == "replace":
        return text[:at] + char + text[at + 1 :]
    if kind == "delete":
        return text[:at] + text[at + 1 :]
    return text[:at] + char + text[at:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_an_edited_kept_checkpoint_fails_in_both(data):
    """An edit of the checkpoint the verifier kept, or of the copy the bundle
    carries, that still says something else than the signed text: it fails."""
    bundle = json.loads(DATA)
    kept = KEPT
    if data.draw(st.booleans()):
        kept = _edit_text(data.draw, KEPT)
    else:
        bundle["evidence"][GROUP]["checkpoint"] = _edit_text(data.draw, KEPT)
    if _same_note(kept, KEPT) and _same_note(
        bundle["evidence"][GROUP]["checkpoint"], KEPT
    ):
        return
    with tempfile.TemporaryDirectory() as folder:
        _check_fails(bundle, kept, Path(folder))


def _same_note(a: str, b: str) -> bool:
    """Whether an edit left the body, and a signature line that verifies, as
    they were (an edit of the note's other lines, which no one signed)."""
    body_a, _, sigs_a = a.rpartition("\n\n")
    body_b, _, sigs_b = b.rpartition("\n\n")
    return body_a == body_b and sigs_b.splitlines()[0] in sigs_a.splitlines()
