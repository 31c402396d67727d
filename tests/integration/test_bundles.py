"""Proof bundles on a real home: export, verify with no ledger, and every edit caught.

The CLI runs as a real subprocess; `verify-bundle` and the standalone
examples/verify_bundle.py run with no MLTRAIL_HOME and HOME pointing at an
empty folder, which must stay empty.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mltrail.core.bundle import BundlePolicy, verify_bundle
from mltrail.core.canonical import canonical_bytes
from mltrail.core.signing import compute_key_id
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "verify_bundle.py"


def _id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


MODEL, BASE = _id("model"), _id("base-model")


def mltrail(*args, home=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    if home is not None:
        env["MLTRAIL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
    )  # fmt: skip


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def fill(path: Path, origin: str = "test.mltrail.local/bundles") -> None:
    """A data step, a base model's run, a fine-tune, an unrelated run, and records
    about the model (promotion, flag, notes)."""
    init_home(path, origin=origin)
    home = open_home(path)
    ledger = home.ledger
    raw = ledger.put_blob(b"raw manifest\n")
    clean = ledger.put_blob(b"clean manifest\n")
    fingerprint = ledger.put_blob(b"base fingerprint\n")
    ledger.append_many([
        Draft("run.started", {"source": "api", "name": "prepare"}, "run-prep"),
        Draft("run.data", {"role": "raw", "path": "raw", "dataset": _id("raw"),
                           "files": 2, "bytes": 9, "manifest": raw}, "run-prep"),
        Draft("run.artifact", {"path": "clean", "exists": True, "type": "directory",
                               "dataset": _id("clean"), "files": 1, "bytes": 5,
                               "manifest": clean}, "run-prep"),
        Draft("run.ended", {"status": "succeeded"}, "run-prep"),
        Draft("run.started", {"source": "api", "name": "pretrain"}, "run-base"),
        Draft("run.artifact", {"path": "base.safetensors", "exists": True,
                               "type": "file", "sha256": _id("bw"), "size": 4,
                               "model": BASE}, "run-base"),
        Draft("run.ended", {"status": "succeeded"}, "run-base"),
        Draft("run.started", {"source": "api", "name": "other"}, "run-other"),
        Draft("run.ended", {"status": "failed"}, "run-other"),
    ])  # fmt: skip
    ledger.append_many([
        Draft("run.started", {"source": "api", "name": "finetune"}, "run-tune"),
        Draft("run.data", {"role": "train", "path": "clean", "dataset": _id("clean"),
                           "files": 1, "bytes": 5, "manifest": clean}, "run-tune"),
        Draft("run.finetune", {"base": {"path": "base.safetensors", "model": BASE,
                                        "tensors": 1, "parameters": 4, "bytes": 4,
                                        "fingerprint": fingerprint}}, "run-tune"),
        Draft("run.artifact", {"path": "model.safetensors", "exists": True,
                               "type": "file", "sha256": _id("mw"), "size": 4,
                               "model": MODEL}, "run-tune"),
        Draft("run.ended", {"status": "succeeded"}, "run-tune"),
    ])  # fmt: skip
    promoted = ledger.append(
        "model.promoted",
        {"model": MODEL, "model_type": "model", "stage": "production",
         "action": "enter", "run": "run-tune"},
    )  # fmt: skip
    ledger.append("note", {"text": "reviewed", "refers_to": promoted.seq})
    ledger.append("note", {"text": "unrelated"})
    home.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("bundles")
    fill(base / "home")
    ok(mltrail("export", f"model:{MODEL[:12]}", "-o", base / "model.json",
               home=base / "home"))  # fmt: skip
    return base


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No ledger anywhere: HOME is an empty folder that must stay empty."""
    empty = tmp_path / "empty-home"
    empty.mkdir()
    monkeypatch.setenv("HOME", str(empty))
    for name in list(os.environ):
        if name.startswith("MLTRAIL_"):
            monkeypatch.delenv(name)
    yield empty
    assert not list(empty.iterdir()), "verify-bundle created files in HOME"


def kinds(bundle):
    return [json.loads(r["record"])["entry"]["kind"] for r in bundle["records"]]


def runs(bundle):
    return {json.loads(r["record"])["entry"].get("run") for r in bundle["records"]}


# -- export and verify -------------------------------------------------------------


def test_a_model_bundle_holds_its_lineage_and_verifies_offline(world, clean_env):
    bundle = json.loads((world / "model.json").read_bytes())
    assert bundle["format"] == "mltrail-bundle/1"
    assert runs(bundle) - {None} == {"run-prep", "run-base", "run-tune"}
    assert {"model.promoted", "note", "key.added", "run.finetune"} <= set(kinds(bundle))
    texts = [r["record"] for r in bundle["records"]]
    assert not [t for t in texts if "unrelated" in t or "run-other" in t]
    assert [b["data"] is not None for b in bundle["blobs"]] == [True] * 3
    proc = ok(mltrail("verify-bundle", world / "model.json", cwd=clean_env))
    assert "bundle intact" in proc.stdout
    assert "unpinned" in proc.stdout
    digest = "sha256:" + hashlib.sha256((world / "model.json").read_bytes()).hexdigest()
    assert f"digest {digest}" in proc.stdout
    standalone = subprocess.run(
        [sys.executable, EXAMPLE, world / "model.json"], capture_output=True, text=True
    )
    assert standalone.returncode == 0, standalone.stderr
    assert digest in standalone.stdout


def test_export_prints_the_digest_and_a_run_bundle_has_its_outputs(world):
    out = world / "run.json"
    proc = ok(
        mltrail("export", "run:run-tune", "-o", out, "--json", home=world / "home")
    )
    summary = json.loads(proc.stdout)
    assert summary["digest"] == "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()
    bundle = json.loads(out.read_bytes())
    assert bundle["subject"]["node"] == "run:run-tune"
    assert "model.promoted" in kinds(bundle)  # about the model the run wrote
    assert "run-other" not in runs(bundle)
    report = verify_bundle(bundle, BundlePolicy())
    assert report.ok, report.problems


def test_no_blobs_carries_hashes_only(world, clean_env):
    out = world / "hashes.json"
    ok(
        mltrail(
            "export", f"model:{MODEL}", "-o", out, "--no-blobs", home=world / "home"
        )
    )
    bundle = json.loads(out.read_bytes())
    assert bundle["blobs"]
    assert all(b["data"] is None for b in bundle["blobs"])
    proc = ok(mltrail("verify-bundle", out, "--json", cwd=clean_env))
    report = json.loads(proc.stdout)
    assert report["blobs_checked"] == 0
    assert report["blobs_absent"] == 3


def test_a_model_bundle_carries_the_gates_its_promotions_passed(tmp_path):
    """A promotion is read against the gate of its stage: `production` needs 2
    approvals, the gate is lowered to 0 (with a note), the model promoted with
    none, and the gate raised again. The bundle carried the promotion but no
    `stage.gated` record, so a reader could not tell that approvals were
    required, nor that the gate was lowered for this one promotion."""
    home = tmp_path / "home"
    fill(home)
    ok(mltrail("model", "gate", "production", "--require-approval", "2", home=home))
    ok(mltrail("model", "gate", "production", "--require-approval", "0",
               "--note", "just this once", home=home))  # fmt: skip
    opened = open_home(home)
    try:
        opened.ledger.append(
            "model.promoted",
            {"model": MODEL, "model_type": "model", "stage": "production",
             "action": "enter", "run": "run-tune"},
        )  # fmt: skip
    finally:
        opened.close()
    ok(mltrail("model", "gate", "production", "--require-approval", "2", home=home))
    ok(mltrail("model", "gate", "staging", "--require-approval", "1", home=home))
    ok(mltrail("checkpoint", home=home))
    out = tmp_path / "gated.json"
    ok(mltrail("export", f"model:{MODEL}", "-o", out, home=home))
    bundle = json.loads(out.read_bytes())
    gates = [
        json.loads(r["record"])["entry"]["body"]
        for r in bundle["records"]
        if '"kind":"stage.gated"' in r["record"]
    ]
    assert [(g["stage"], g["require_approval"]) for g in gates] == [
        ("production", 2),
        ("production", 0),
        ("production", 2),
    ]  # the staging gate is of no stage the model entered
    assert gates[1]["note"] == "just this once"
    ok(mltrail("verify-bundle", out))


def test_unknown_subject_is_a_clean_input_error(world):
    proc = mltrail("export", "nothing-like-this", "-o", world / "x.json",
                   home=world / "home")  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_source_and_folder_file_bundles_verify_and_show_their_subject(tmp_path):
    """Subjects named by a source.registered record, and by a line of an output
    folder's manifest (no record holds that file's hash), verify; the subject
    is shown with the verdict."""
    home = tmp_path / "home"
    fill(home)
    (tmp_path / "raw.csv").write_text("a,b\n")
    ok(mltrail("sources", "add", "rawsrc", tmp_path / "raw.csv", home=home))
    script = (
        "import pathlib; d = pathlib.Path('outdir'); d.mkdir(); "
        "(d / 'a.txt').write_text('aaa'); (d / 'b.txt').write_text('bbb')"
    )
    ok(mltrail("run", "-q", "--output", "outdir", "--", sys.executable, "-c", script,
               home=home, cwd=tmp_path))  # fmt: skip
    ok(mltrail("checkpoint", home=home))
    sha = hashlib.sha256(b"aaa").hexdigest()
    for node in ("source:rawsrc", f"file:{sha}"):
        out = tmp_path / "b.json"
        ok(mltrail("export", node, "-o", out, home=home))
        assert sha not in "".join(
            r["record"] for r in json.loads(out.read_bytes())["records"]
        ) or node.startswith("source")
        proc = ok(mltrail("verify-bundle", out, cwd=tmp_path))
        assert f"subject {node}" in proc.stdout
        standalone = subprocess.run(
            [sys.executable, EXAMPLE, out], capture_output=True, text=True
        )
        assert standalone.returncode == 0, standalone.stderr
        assert f"({node})" in standalone.stdout
    ok(mltrail("export", f"file:{sha}", "-o", out, "--no-blobs", home=home))
    proc = mltrail("verify-bundle", out, cwd=tmp_path)
    assert proc.returncode == 3
    assert "a manifest the bundle carries by hash only may list it" in proc.stdout


def test_a_file_subject_is_not_named_by_a_log_line(tmp_path):
    """A file subject counts as named by a line of a carried *manifest* (the
    blob a record gives as a dataset's ``manifest``), not by any carried blob:
    a run whose stdout printed ``{"sha256": X}`` was a proof "of file X" once
    its subject was relabelled, though no record says the run read or wrote X
    (the standalone example applies the same rule)."""
    home = tmp_path / "home"
    fill(home)
    other = _id("the production model's weights")
    script = f"import json; print(json.dumps({{'sha256': '{other}', 'size': 4}}))"
    ok(mltrail("run", "-q", "--name", "printer", "--", sys.executable, "-c", script,
               home=home, cwd=tmp_path))  # fmt: skip
    ok(mltrail("checkpoint", home=home))
    out = tmp_path / "run.json"
    ok(mltrail("export", "printer", "-o", out, home=home))
    bundle = json.loads(out.read_bytes())
    assert any(
        other in base64.b64decode(b["data"]).decode() for b in bundle["blobs"]
    )  # the stdout blob is carried
    bundle["subject"]["node"] = f"file:{other}"
    path = tmp_path / "relabelled.json"
    path.write_bytes(canonical_bytes(bundle))
    proc = mltrail("verify-bundle", path, "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "subject" in [p["code"] for p in json.loads(proc.stdout)["problems"]]
    standalone = subprocess.run(
        [sys.executable, EXAMPLE, path], capture_output=True, text=True
    )
    assert standalone.returncode == 1, standalone.stdout
    assert "subject" in standalone.stderr


# -- tampering -----------------------------------------------------------------------


def _seq_of(bundle, kind):
    return next(
        r["seq"] for r in bundle["records"] if f'"kind":"{kind}"' in r["record"]
    )


def _record(bundle, seq):
    return next(r for r in bundle["records"] if r["seq"] == seq)


def edit_body(b):
    seq = _seq_of(b, "model.promoted")
    r = _record(b, seq)
    r["record"] = r["record"].replace('"production"', '"producti0n"')
    return f"record {seq}"


def edit_sig(b):
    seq = _seq_of(b, "run.finetune")
    r = _record(b, seq)
    head, _, tail = r["record"].partition('"value":"')
    flipped = "B" if tail[0] == "A" else "A"
    r["record"] = head + '"value":"' + flipped + tail[1:]
    return f"record {seq}"


def edit_proof(b):
    r = b["records"][3]
    r["inclusion"][0] = "00" * 32
    return f"record {r['seq']}"


def edit_blob(b):
    b["blobs"][0]["data"] = base64.b64encode(b"not the manifest\n").decode()
    return "blob"


def drop_blob(b):
    """A referenced blob left out of the list altogether (the standalone example
    checked only the blobs listed, and said intact)."""
    b["blobs"] = b["blobs"][1:]
    return "blob"


def edit_checkpoint(b):
    lines = b["checkpoint"].split("\n")
    lines[2] = base64.b64encode(b"\x01" * 32).decode()
    b["checkpoint"] = "\n".join(lines)
    return "checkpoint"


def huge_checkpoint_size(b):
    """A tree size int() cannot read (more than 4,300 digits): verify-bundle
    crashed with a ValueError traceback, exit 1."""
    lines = b["checkpoint"].split("\n")
    lines[1] = "1" * 5000
    b["checkpoint"] = "\n".join(lines)
    return "checkpoint"


def drop_record(b):
    seq = _seq_of(b, "run.data")
    b["records"] = [r for r in b["records"] if r["seq"] != seq]
    return f"record {seq}"


def list_a_seq_twice(b):
    """The contents name a carried record twice (mltrail counted it once and
    said intact; the standalone example failed with an IndexError)."""
    seq = b["subject"]["seqs"][3]
    b["subject"]["seqs"].append(seq)
    return f"record {seq}"


def swap_keys(b, other):
    b["records"][0] = other["records"][0]  # another ledger's genesis key record
    return "record 0"


def other_origin(b, other):
    b["origin"] = other["origin"]
    return "ledger"


def subject_is_a_key_id(b):
    """The subject is what the reader is told the bundle is about: a signed record
    must name it as such, not merely hold its digits (here: the genesis key id)."""
    key = json.loads(_record(b, 0)["record"])["entry"]["body"]["key"]
    b["subject"]["node"] = f"model:{key}"
    return "subject"


def subject_is_a_dataset_called_a_model(b):
    b["subject"]["node"] = f"model:{_id('clean')}"
    return "subject"


def subject_of_no_kind(b):
    b["subject"]["node"] = f"thing:{MODEL}"
    return "subject"


TAMPERS = [edit_body, edit_sig, edit_proof, edit_blob, drop_blob, edit_checkpoint,
           huge_checkpoint_size, drop_record, list_a_seq_twice, subject_is_a_key_id,
           subject_is_a_dataset_called_a_model, subject_of_no_kind]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ((b"reviewed", b"reviewed\\ud800"), "no canonical form"),  # in a record
        ((b'"node":"model:', b'"node":"\\udc00model:'), "no canonical form"),
        ((b'"size":13', b'"size":1e400'), "no canonical form"),
        ((b'"evidence":[]', b'"evidence":[{"checkpoint":CHECKPOINT,'
                            b'"consistency":[],"items":"x"}]'), "items are not a list"),
    ],
    ids=["surrogate-in-record", "surrogate-in-subject", "number-out-of-range",
         "evidence-items-not-a-list"],
)  # fmt: skip
def test_malformed_json_values_are_reported_not_raised(world, tmp_path, edit, message):
    """Values JSON can spell but no canonical bundle holds: an unpaired surrogate
    escape, a number beyond a double; and evidence whose items are no list."""
    raw = (world / "model.json").read_bytes()
    assert edit[0] in raw
    path = tmp_path / "odd.json"
    checkpoint = json.dumps(json.loads(raw)["checkpoint"]).encode()
    path.write_bytes(raw.replace(edit[0], edit[1].replace(b"CHECKPOINT", checkpoint)))
    proc = mltrail("verify-bundle", path, "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert not report["ok"]
    assert message in json.dumps(report["problems"])


def test_a_flood_of_malformed_items_is_counted_not_listed(world, tmp_path):
    """Each malformed item is a problem, and a zero takes two bytes: 2 MB of
    ``0,`` in `records` made a million problems (~100 bytes of report each,
    as many lines printed); the 2 GiB a bundle may be made a report no memory
    holds. Past 1,000 of one code, problems are counted in one more line; the
    verdict still counts them all."""
    from mltrail.core.bundle_checks import MAX_LISTED

    bundle = json.loads((world / "model.json").read_bytes())
    bundle["records"] += [0] * 5000
    bundle["blobs"] += [0] * 1500
    path = tmp_path / "flood.json"
    path.write_bytes(canonical_bytes(bundle))
    proc = mltrail("verify-bundle", path, "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    problems = report["problems"]
    assert len(problems) < 2 * MAX_LISTED + 20
    codes = [p["code"] for p in problems]
    assert (codes.count("record"), codes.count("blob")) == (1001, 1001)
    assert "4,000 more record problem(s)" in json.dumps(problems)
    assert "500 more blob problem(s)" in json.dumps(problems)
    assert report["verdict"].startswith("bundle NOT intact: 6,5")
    text = mltrail("verify-bundle", path, cwd=tmp_path)
    assert text.returncode == 3
    assert len(text.stdout.splitlines()) < 2 * MAX_LISTED + 20


def test_an_unterminated_string_is_refused_at_once(tmp_path):
    """400 KB of escaped quotes in a string left open (with more brackets in the
    file than a bundle nests) kept verify-bundle busy for a quarter of an hour,
    in the depth check before the parser (each quote started a string match
    that ran to the end and failed); now it is refused at once, not JSON."""
    path = tmp_path / "open.json"
    path.write_bytes(b'{"records":[["' + b'\\"' * 200_000 + b"[" * 20)
    proc = mltrail("verify-bundle", path, "--json", cwd=tmp_path)  # timeout 120 s
    assert proc.returncode == 3, proc.stderr
    [problem] = json.loads(proc.stdout)["problems"]
    assert problem["code"] == "bundle"
    assert "not valid JSON" in problem["message"]


def test_a_reformatted_bundle_says_its_digest_is_not_the_files(world, tmp_path):
    """The digest is of the canonical form: a pretty-printed copy of the same
    content verifies with the same digest, and the report says the file's own
    SHA-256 differs (what a `sha256sum` of the file would show)."""
    raw = (world / "model.json").read_bytes()
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(json.loads(raw), indent=2))
    report = json.loads(ok(mltrail("verify-bundle", path, "--json")).stdout)
    assert report["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    [warning] = [p for p in report["problems"] if p["code"] == "not-canonical"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() in warning["message"]
    clean = json.loads(
        ok(mltrail("verify-bundle", world / "model.json", "--json")).stdout
    )
    assert "not-canonical" not in [p["code"] for p in clean["problems"]]


@pytest.fixture(scope="module")
def other(tmp_path_factory, world):
    base = tmp_path_factory.mktemp("other")
    fill(base / "home", origin="test.mltrail.local/another")
    ok(mltrail("export", f"model:{MODEL}", "-o", base / "b.json", home=base / "home"))
    return json.loads((base / "b.json").read_bytes())


@pytest.mark.parametrize(
    "tamper", [*TAMPERS, swap_keys, other_origin], ids=lambda t: t.__name__
)
def test_every_edit_fails_naming_what_was_edited(world, other, tamper, tmp_path):
    bundle = json.loads((world / "model.json").read_bytes())
    args = (bundle, other) if tamper in (swap_keys, other_origin) else (bundle,)
    named = tamper(*args)
    path = tmp_path / "tampered.json"
    path.write_bytes(canonical_bytes(bundle))
    proc = mltrail("verify-bundle", path, "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert not report["ok"]
    text = json.dumps(report["problems"])
    if named.startswith("record "):
        seq = int(named.split()[1])
        assert seq in [p["seq"] for p in report["problems"]], text
        assert named in text
    else:
        assert named in text or (named == "ledger" and "another ledger" in text), text
    standalone = subprocess.run(
        [sys.executable, EXAMPLE, path], capture_output=True, text=True
    )
    assert standalone.returncode == 1, standalone.stdout
    if named.startswith("record ") or named in ("blob", "checkpoint"):
        assert named in standalone.stderr, standalone.stderr


def test_a_bundle_resigned_by_another_key_fails_when_pinned(world, other, tmp_path):
    """The other ledger holds the same entries under its own key: unpinned it
    verifies (the report says the keys came from the bundle); pinned it fails."""
    path = tmp_path / "resigned.json"
    path.write_bytes(canonical_bytes(other))
    ok(mltrail("verify-bundle", path, cwd=tmp_path))
    for flag in ("--quiet", "--json"):  # the verdict alone says so too
        quiet = ok(mltrail("verify-bundle", path, flag, cwd=tmp_path)).stdout
        verdict = json.loads(quiet)["verdict"] if flag == "--json" else quiet
        assert "keys came from the bundle itself (unpinned" in verdict, verdict
    home = open_home(world / "home")
    key_id = home.ledger.keys().genesis_key
    home.close()
    proc = mltrail("verify-bundle", path, "--trust-key", key_id, "--json", cwd=tmp_path)
    assert proc.returncode == 3
    problems = json.loads(proc.stdout)["problems"]
    assert [p["seq"] for p in problems if p["code"] == "trust-key"] == [0]
    # unpinned, the whole genesis key id is shown to compare with the published
    # one (16 hex digits are 64 bits: a prefix a forger can grind a key for)
    unpinned = ok(mltrail("verify-bundle", world / "model.json", cwd=tmp_path))
    assert f"genesis key {key_id} from the bundle (unpinned)" in unpinned.stdout
    pinned = ok(mltrail("verify-bundle", world / "model.json", "--trust-key", key_id,
                        "--json", cwd=tmp_path))  # fmt: skip
    report = json.loads(pinned.stdout)
    assert "unpinned" not in [p["code"] for p in report["problems"]]
    assert "unpinned" not in report["verdict"]
    assert report["anchors"][0]["external"] is True


def test_a_verifier_key_of_another_ledger_fails(world, tmp_path):
    vkey = ok(mltrail("keys", "export", "--format", "vkey", home=world / "home"))
    text = vkey.stdout.strip().replace("test.mltrail.local/bundles", "x.example/other")
    proc = mltrail(
        "verify-bundle", world / "model.json", "--trust-key", text, cwd=tmp_path
    )
    assert proc.returncode in (2, 3), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_forger_who_adds_the_trusted_public_key_to_own_ledger_fails(world, tmp_path):
    """A public key is public: a forger starts a ledger of their own (same origin),
    adds the trusted key to it as a log key (a key.added needs no private key of
    the key it adds), writes what they like and exports. Every record and the
    checkpoint are signed by the forger's key, none by the trusted one."""
    home = open_home(world / "home")
    state = home.ledger.keys()
    victim = state.genesis_key
    public_key = state.keys[victim].public_key
    home.close()
    init_home(tmp_path / "forged", origin="test.mltrail.local/bundles")
    forged = open_home(tmp_path / "forged")
    ledger = forged.ledger
    body = {"alg": "ed25519", "key": victim, "reason": "key rotation",
            "public_key": base64.b64encode(public_key).decode()}  # fmt: skip
    # what a forger's own copy of mltrail does (append refuses key kinds)
    ledger._append_signed(ledger._sign([Draft("key.added", body)]))
    ledger.append_many([
        Draft("run.started", {"source": "api", "name": "finetune"}, "run-tune"),
        Draft("run.artifact", {"path": "model.safetensors", "exists": True,
                               "type": "file", "sha256": _id("mw"), "size": 4,
                               "model": MODEL}, "run-tune"),
        Draft("run.ended", {"status": "succeeded"}, "run-tune"),
    ])  # fmt: skip
    forged.close()
    out = tmp_path / "forged.json"
    ok(mltrail("export", f"model:{MODEL}", "-o", out, home=tmp_path / "forged"))
    vkey = ok(mltrail("keys", "export", "--format", "vkey", home=world / "home"))
    for pin in (victim, vkey.stdout.strip()):
        proc = mltrail("verify-bundle", out, "--trust-key", pin, "--json", cwd=tmp_path)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert not report["ok"]
        [problem] = [p for p in report["problems"] if p["severity"] == "error"]
        assert problem["code"] == "checkpoint-untrusted", problem
        assert "neither a trusted key" in problem["message"]
    text = mltrail("verify-bundle", out, "--trust-key", victim, cwd=tmp_path)
    assert text.returncode == 3
    assert "bundle NOT intact" in text.stdout
    assert "pinned with --trust-key" not in text.stdout
    # the genuine bundle, pinned the same ways, still verifies
    for pin in (victim, vkey.stdout.strip()):
        ok(mltrail("verify-bundle", world / "model.json", "--trust-key", pin))


def test_a_rotated_ledger_verifies_pinned_to_its_old_or_new_key(tmp_path):
    """Trust passes along key.added records a trusted key signed: pinning the
    genesis key trusts the key it rotated to, and the new key alone suffices."""
    fill(tmp_path / "home")
    old = ok(mltrail("keys", "export", "--format", "vkey", home=tmp_path / "home"))
    ok(mltrail("keys", "rotate", "--reason", "test", home=tmp_path / "home"))
    new = ok(mltrail("keys", "export", "--format", "vkey", home=tmp_path / "home"))
    old, new = old.stdout.strip(), new.stdout.strip()
    assert old != new
    out = tmp_path / "rotated.json"
    ok(mltrail("export", f"model:{MODEL}", "-o", out, home=tmp_path / "home"))
    for pin in (old, new):
        proc = ok(mltrail("verify-bundle", out, "--trust-key", pin, "--json"))
        assert json.loads(proc.stdout)["anchors"][0]["external"] is True


# -- timestamps ------------------------------------------------------------------------


def test_a_bundle_carries_a_tsa_token_of_an_earlier_checkpoint(tmp_path):
    from optional_extras import require_extra

    require_extra("timestamps", "rfc3161_client")
    from tsa_server import TsaServer, make_tsa_ca

    fill(tmp_path / "home")
    ca = make_tsa_ca(tmp_path / "tsa")
    with TsaServer(ca) as tsa:
        ok(mltrail("checkpoint", "--tsa", tsa.url, home=tmp_path / "home"))
    ok(mltrail("append", "--kind", "note", "--body", '{"text": "later"}',
               home=tmp_path / "home"))  # fmt: skip
    out = tmp_path / "stamped.json"
    ok(mltrail("export", f"model:{MODEL}", "-o", out, home=tmp_path / "home"))
    bundle = json.loads(out.read_bytes())
    [group] = bundle["evidence"]
    assert group["consistency"]  # the stamped checkpoint is older than the bundle's
    assert [i["kind"] for i in group["items"]] == ["rfc3161"]

    proc = ok(
        mltrail("verify-bundle", out, "--tsa-ca", ca.ca_pem, "--json", cwd=tmp_path)
    )
    report = json.loads(proc.stdout)
    assert [e["status"] for e in report["evidence"]] == ["verified"]
    [anchor] = [a for a in report["anchors"] if a["kind"] == "rfc3161"]
    stamped = bundle["evidence"][0]["checkpoint"].split("\n")[1]
    assert f"records 0 to {int(stamped) - 1} existed before" in anchor["description"]

    unverified = json.loads(ok(mltrail("verify-bundle", out, "--json")).stdout)
    assert "rfc3161-unverified" in [p["code"] for p in unverified["problems"]]

    other = make_tsa_ca(tmp_path / "other", name="another")
    proc = mltrail("verify-bundle", out, "--tsa-ca", other.ca_pem, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout

    token = base64.b64decode(group["items"][0]["token"])
    group["items"][0]["token"] = base64.b64encode(token[:-40] + bytes(40)).decode()
    path = tmp_path / "bad-token.json"
    path.write_bytes(canonical_bytes(bundle))
    proc = mltrail("verify-bundle", path, "--tsa-ca", ca.ca_pem, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout

    # the TSA's name (CN) as a string of a kind no ASN.1 string has: the library
    # decodes it only when read, and its KeyError went out of verify-bundle
    # (a traceback, exit 1) with or without --tsa-ca
    odd = bytearray(token)
    odd[token.index(b"\x06\x03\x55\x04\x03\x0c") + 5] = 0x9A
    group["items"][0]["token"] = base64.b64encode(bytes(odd)).decode()
    path.write_bytes(canonical_bytes(bundle))
    for args in ((), ("--tsa-ca", ca.ca_pem)):
        proc = mltrail("verify-bundle", path, "--json", *args, cwd=tmp_path)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        problems = json.loads(proc.stdout)["problems"]
        assert "not a valid RFC 3161 reply" in json.dumps(problems)


def test_a_bad_token_beside_a_genuine_one_of_its_checkpoint_is_a_warning(tmp_path):
    """A bundle carries every token its store keeps about a checkpoint; one that
    fails (a reply forged on the way to the TSA, stored when no TSA CA was set)
    beside the genuine token of the same checkpoint failed the bundle (exit 3),
    though the genuine token anchors the same records. It is the warning
    ``rfc3161-ignored`` now, as ``mltrail verify`` says; alone it still fails."""
    from optional_extras import require_extra

    require_extra("timestamps", "rfc3161_client")
    from tsa_server import TsaServer, make_tsa_ca

    fill(tmp_path / "home")
    ca = make_tsa_ca(tmp_path / "tsa")
    with TsaServer(ca) as tsa:
        ok(mltrail("checkpoint", "--tsa", tsa.url, home=tmp_path / "home"))
    out = tmp_path / "stamped.json"
    ok(mltrail("export", f"model:{MODEL}", "-o", out, home=tmp_path / "home"))
    bundle = json.loads(out.read_bytes())
    [group] = bundle["evidence"]
    token = base64.b64decode(group["items"][0]["token"])
    bad = {
        "kind": "rfc3161",
        "token": base64.b64encode(token[:-40] + bytes(40)).decode(),
    }
    group["items"] = [bad, *group["items"]]
    path = tmp_path / "two-tokens.json"
    path.write_bytes(canonical_bytes(bundle))
    proc = mltrail("verify-bundle", path, "--tsa-ca", ca.ca_pem, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    [ignored] = [p for p in report["problems"] if p["code"] == "rfc3161-ignored"]
    assert ignored["severity"] == "warning"
    assert "evidence[0]" in ignored["message"]
    assert "covers its records" in ignored["message"]
    assert [a["kind"] for a in report["anchors"]].count("rfc3161") == 1

    group["items"] = [bad]
    path.write_bytes(canonical_bytes(bundle))
    proc = mltrail("verify-bundle", path, "--tsa-ca", ca.ca_pem, "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout


def test_a_bundle_token_by_another_tsa_or_for_tomorrow_is_named(tmp_path):
    """A regulator holding a bundle and the TSA's CA: the bundle's maker swaps
    in a token by another TSA certificate of that CA, dated 4 minutes earlier
    and naming the usual TSA in its TSTInfo. verify-bundle said "stamped by
    CN=mltrail test TSA", exit 0; the name is not the signing certificate's.
    A genuine token of that other TSA could not be refused at all, and one the
    usual TSA signed for tomorrow passed unremarked."""
    from optional_extras import require_extra

    require_extra("timestamps", "rfc3161_client")
    from tsa_server import (
        TsaServer,
        forge_token,
        make_other_tsa,
        make_tsa_ca,
        stamp_dated,
        stamp_with_openssl,
    )

    fill(tmp_path / "home")
    ca = make_tsa_ca(tmp_path / "tsa")
    with TsaServer(ca) as tsa:
        ok(mltrail("checkpoint", "--tsa", tsa.url, home=tmp_path / "home"))
    out = tmp_path / "stamped.json"
    ok(mltrail("export", f"model:{MODEL}", "-o", out, home=tmp_path / "home"))
    bundle = json.loads(out.read_bytes())
    [group] = bundle["evidence"]
    token = forge_token(ca, tmp_path / "other", group["checkpoint"].encode(), 4)
    group["items"] = [{"kind": "rfc3161", "token": base64.b64encode(token).decode()}]
    forged = tmp_path / "forged.json"
    forged.write_bytes(canonical_bytes(bundle))
    proc = mltrail(
        "verify-bundle", forged, "--tsa-ca", ca.ca_pem, "--json", cwd=tmp_path
    )
    assert proc.returncode == 3, proc.stdout
    report = json.loads(proc.stdout)
    assert [e["status"] for e in report["evidence"]] == ["failed"]
    assert not [a for a in report["anchors"] if a["kind"] == "rfc3161"]
    [bad] = [p for p in report["problems"] if p["code"] == "rfc3161"]
    assert "names its TSA CN=mltrail test TSA" in bad["message"]

    # under its own name the other TSA's token verifies against the CA alone, and
    # fails once the regulator's CA file holds the TSA certificate it expects
    other = make_other_tsa(ca, tmp_path / "other-own", "another TSA")
    token = stamp_with_openssl(other, group["checkpoint"].encode())
    group["items"] = [{"kind": "rfc3161", "token": base64.b64encode(token).decode()}]
    forged.write_bytes(canonical_bytes(bundle))
    ok(mltrail("verify-bundle", forged, "--tsa-ca", ca.ca_pem, cwd=tmp_path))
    pinned = tmp_path / "ca-and-tsa.pem"
    pinned.write_bytes(ca.ca_pem.read_bytes() + (ca.folder / "tsa.pem").read_bytes())
    proc = mltrail("verify-bundle", forged, "--tsa-ca", pinned, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout
    assert "not by the TSA certificate given" in proc.stdout

    # the usual TSA signing a time a day ahead: still an anchor, now named
    token = stamp_dated(ca, group["checkpoint"].encode(), 1500)
    group["items"] = [{"kind": "rfc3161", "token": base64.b64encode(token).decode()}]
    forged.write_bytes(canonical_bytes(bundle))
    proc = ok(mltrail("verify-bundle", forged, "--tsa-ca", pinned, "--json"))
    [warned] = [
        p
        for p in json.loads(proc.stdout)["problems"]
        if p["code"] == "timestamp-future"
    ]
    assert "1 day after this machine's clock" in warned["message"]


def test_a_bundle_names_a_record_dated_after_its_timestamp(tmp_path):
    """A regulator holding only the bundle sees what `mltrail verify` sees: a
    carried record dated a month after the RFC 3161 time that shows it
    existed (a clock ahead, or a review dated forward) is an error,
    ``dated-after-anchor``. Before, the bundle verified."""
    from datetime import UTC, datetime, timedelta

    from mltrail.testing import FixedClock
    from optional_extras import require_extra

    require_extra("timestamps", "rfc3161_client")
    from tsa_server import TsaServer, make_tsa_ca

    home = tmp_path / "home"
    fill(home)
    opened = open_home(home)
    try:
        promoted = next(
            r.seq for r in opened.ledger.records() if r.entry.kind == "model.promoted"
        )
        opened.ledger.clock = FixedClock(datetime.now(UTC) + timedelta(days=30))
        ahead = opened.ledger.append(
            "note", {"text": "reviewed (dated ahead)", "refers_to": promoted}
        )
    finally:
        opened.close()
    ca = make_tsa_ca(tmp_path / "tsa")
    with TsaServer(ca) as tsa:
        ok(mltrail("checkpoint", "--tsa", tsa.url, home=home))
    out = tmp_path / "stamped.json"
    ok(mltrail("export", f"model:{MODEL}", "-o", out, home=home))
    assert ahead.seq in [r["seq"] for r in json.loads(out.read_bytes())["records"]]

    proc = mltrail("verify-bundle", out, "--tsa-ca", ca.ca_pem, "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    problems = json.loads(proc.stdout)["problems"]
    [found] = [p for p in problems if p["code"] == "dated-after-anchor"]
    assert (found["seq"], found["severity"]) == (ahead.seq, "error")
    assert "after evidence[0]" in found["message"]
    verified = json.loads(
        mltrail("verify", "--json", "--tsa-ca", ca.ca_pem, home=home).stdout
    )
    assert (ahead.seq, "dated-after-anchor") in {
        (p["seq"], p["code"]) for p in verified["problems"]
    }


def test_a_bundle_names_a_record_dated_after_this_machines_clock(world, tmp_path):
    """`mltrail verify` warns `future` about a record dated more than the
    tolerance after the verifying machine's clock; a regulator holding only the
    bundle saw nothing of a review dated a month ahead. Now verify-bundle
    gives the same warning, naming the record (exit 0: whose clock is wrong
    cannot be told)."""
    from datetime import UTC, datetime, timedelta

    from mltrail.testing import FixedClock

    home = tmp_path / "home"
    fill(home)
    opened = open_home(home)
    try:
        promoted = next(
            r.seq for r in opened.ledger.records() if r.entry.kind == "model.promoted"
        )
        opened.ledger.clock = FixedClock(datetime.now(UTC) + timedelta(days=30))
        ahead = opened.ledger.append(
            "note", {"text": "reviewed (dated ahead)", "refers_to": promoted}
        )
    finally:
        opened.close()
    ok(mltrail("checkpoint", home=home))
    out = tmp_path / "ahead.json"
    ok(mltrail("export", f"model:{MODEL}", "-o", out, home=home))
    report = json.loads(ok(mltrail("verify-bundle", out, "--json")).stdout)
    [found] = [p for p in report["problems"] if p["code"] == "future"]
    assert (found["seq"], found["severity"]) == (ahead.seq, "warning")
    assert "after this machine's clock" in found["message"]
    clean = json.loads(
        ok(mltrail("verify-bundle", world / "model.json", "--json")).stdout
    )
    assert "future" not in [p["code"] for p in clean["problems"]]


# -- witnesses ------------------------------------------------------------------------


def _in(home, *args, stdin):
    """``mltrail ARGS`` with ``stdin`` as its input."""
    return ok(subprocess.run(
        [sys.executable, "-m", "mltrail", *map(str, args)],
        input=stdin, capture_output=True, text=True, timeout=120,
        env={**os.environ, "MLTRAIL_HOME": str(home)},
    )).stdout  # fmt: skip


def _witness(folder):
    """(key file, verifier key) of a new witness ``witness.example/w1``."""
    key = folder / "w.key"
    vkey = ok(mltrail("witness", "keygen", "--name", "witness.example/w1", "-o", key,
                      home=folder / "state")).stdout.strip()  # fmt: skip
    return key, vkey


def _cosign(home, witness, old=0):
    """The witness cosigns the ledger's newest checkpoint (from ``old``, the size
    it last saw), and the home stores the cosigned note."""
    key, _ = witness
    request = ok(mltrail("witness", "request", "--old", old, home=home)).stdout
    log_key = ok(mltrail("keys", "export", "--format", "vkey", home=home)).stdout
    first = ("--log-key", log_key.strip()) if old == 0 else ()
    cosigned = _in(key.parent / "state", "witness", "cosign", "--key", key,
                   "--name", "witness.example/w1", *first, "-", stdin=request)  # fmt: skip
    _in(home, "checkpoint", "--cosigned", "-", stdin=cosigned)


def test_a_bundle_says_which_records_its_witness_saw(tmp_path):
    """The ledger's owner can rebuild everything after the last checkpoint a
    witness cosigned, so a cosignature vouches only for records below its size.
    A bundle of a run written after the witness saw only the genesis checkpoint
    verified with `--witness-key` and the bare anchor "cosigned by witness W";
    now the anchor says "records 0 to 0" and the run's records are
    `unwitnessed` (a warning, as `mltrail verify` says it)."""
    home = tmp_path / "home"
    ok(mltrail("init", "--origin", "test.mltrail.local/witness", home=home))
    witness = _witness(tmp_path / "w")
    vkey = witness[1]
    log_key = ok(mltrail("keys", "export", "--format", "vkey", home=home)).stdout
    _cosign(home, witness)
    opened = open_home(home)
    try:
        opened.ledger.append_many([
            Draft("run.started", {"source": "api", "name": "late"}, "run-late"),
            Draft("run.ended", {"status": "succeeded"}, "run-late"),
        ])  # fmt: skip
    finally:
        opened.close()
    ok(mltrail("checkpoint", home=home))
    out = tmp_path / "late.json"
    ok(mltrail("export", "run:run-late", "-o", out, home=home))

    proc = ok(mltrail("verify-bundle", out, "--witness-key", vkey, "--trust-key",
                      log_key.strip(), "--json", cwd=tmp_path))  # fmt: skip
    report = json.loads(proc.stdout)
    [anchor] = [a for a in report["anchors"] if a["kind"] == "cosignature"]
    assert "cosigned the checkpoint of size 1" in anchor["description"]
    assert "records 0 to 0 are as that witness saw them" in anchor["description"]
    [warning] = [p for p in report["problems"] if p["code"] == "unwitnessed"]
    assert (warning["seq"], warning["severity"]) == (1, "warning")
    assert "(1, 2)" in warning["message"]
    text = ok(mltrail("verify-bundle", out, "--witness-key", vkey, cwd=tmp_path))
    assert "records 0 to 0" in text.stdout
    assert "newer than the newest checkpoint witness" in text.stdout
    quiet = ok(mltrail("verify-bundle", out, "--witness-key", vkey, "--quiet"))
    assert "(unwitnessed)" in quiet.stdout  # the verdict alone says so too
    assert "(unwitnessed)" in report["verdict"]
    verified = json.loads(
        mltrail("verify", "--json", "--witness-key", vkey, home=home).stdout
    )
    assert "unwitnessed" in [p["code"] for p in verified["problems"]]

    # a cosignature of the bundle's own checkpoint covers every carried record
    _cosign(home, witness, old=1)
    ok(mltrail("export", "run:run-late", "-o", out, home=home))
    report = json.loads(
        ok(mltrail("verify-bundle", out, "--witness-key", vkey, "--json")).stdout
    )
    assert "unwitnessed" not in [p["code"] for p in report["problems"]]
    assert "unwitnessed" not in report["verdict"]
    assert any("size 3" in a["description"] for a in report["anchors"])


def test_a_cosignature_listed_first_does_not_soften_a_tokens_error(
    tmp_path, monkeypatch
):
    """A record dated a month after both a TSA's time and a witness's: the
    token makes it an error, the cosignature a warning, and each record is
    named once. The owner writes the bundle, so lists the cosignature first:
    its warning was kept and the token's error dropped (exit 0). Now the error
    wins whatever the order. And the dates are compared in one walk over the
    records, however often the bundle repeats its evidence."""
    from datetime import UTC, datetime, timedelta

    import mltrail.core.bundle_checks as checks
    from mltrail.cli.evidence_cmds import load_tsa_ca, parse_witness_keys
    from mltrail.core.bundle import verify_bundle_bytes
    from mltrail.testing import FixedClock
    from optional_extras import require_extra

    require_extra("timestamps", "rfc3161_client")
    from tsa_server import TsaServer, make_tsa_ca

    home = tmp_path / "home"
    fill(home)
    witness = _witness(tmp_path / "w")
    opened = open_home(home)
    try:
        promoted = next(
            r.seq for r in opened.ledger.records() if r.entry.kind == "model.promoted"
        )
        opened.ledger.clock = FixedClock(datetime.now(UTC) + timedelta(days=30))
        ahead = opened.ledger.append(
            "note", {"text": "reviewed (dated ahead)", "refers_to": promoted}
        )
    finally:
        opened.close()
    ca = make_tsa_ca(tmp_path / "tsa")
    with TsaServer(ca) as tsa:
        ok(mltrail("checkpoint", "--tsa", tsa.url, home=home))
    _cosign(home, witness)
    out = tmp_path / "both.json"
    ok(mltrail("export", f"model:{MODEL}", "-o", out, home=home))
    bundle = json.loads(out.read_bytes())
    items = [i for group in bundle["evidence"] for i in group["items"]]
    assert sorted(i["kind"] for i in items) == ["cosignature", "rfc3161"]
    bundle["evidence"] = sorted(  # the cosignature's group (or item) first
        bundle["evidence"],
        key=lambda g: [i["kind"] != "cosignature" for i in g["items"]],
    )
    for group in bundle["evidence"]:
        group["items"].sort(key=lambda i: i["kind"] != "cosignature")
    path = tmp_path / "reordered.json"
    path.write_bytes(canonical_bytes(bundle))
    args = ("--tsa-ca", ca.ca_pem, "--witness-key", witness[1], "--json")
    proc = mltrail("verify-bundle", path, *args, cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    [found] = [
        p for p in json.loads(proc.stdout)["problems"]
        if p["code"] == "dated-after-anchor"
    ]  # fmt: skip
    assert (found["seq"], found["severity"]) == (ahead.seq, "error")

    for group in bundle["evidence"]:
        group["items"] *= 50
    seen = []
    real_see = checks.LatestDated.see
    monkeypatch.setattr(
        checks.LatestDated, "see", lambda self, *a: seen.append(a) or real_see(self, *a)
    )
    report = verify_bundle_bytes(
        canonical_bytes(bundle),
        BundlePolicy(
            tsa_roots=load_tsa_ca(ca.ca_pem),
            witness_keys=parse_witness_keys((witness[1],)),
        ),
    )
    assert [p.seq for p in report.problems if p.code == "dated-after-anchor"] == [
        ahead.seq
    ]
    assert len(seen) <= len(bundle["records"])


def test_a_pinned_key_id_is_not_read_from_a_file_beside_the_bundle(
    world, other, tmp_path
):
    """The bundle re-signed by another ledger's key arrives with a file named
    after the genuine key id, holding the other key's id: `--trust-key ID`
    read that file (a file of that name existed) and pinned the other key."""
    path = tmp_path / "resigned.json"
    path.write_bytes(canonical_bytes(other))
    home = open_home(world / "home")
    key_id = home.ledger.keys().genesis_key
    home.close()
    genesis = json.loads(other["records"][0]["record"])["entry"]["body"]
    theirs = compute_key_id(base64.b64decode(genesis["public_key"]))
    (tmp_path / key_id).write_text(theirs + "\n")
    proc = mltrail("verify-bundle", path, "--trust-key", key_id, "--json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout
    problems = json.loads(proc.stdout)["problems"]
    assert [p["seq"] for p in problems if p["code"] == "trust-key"] == [0]
