"""``mltrail export intoto``: SLSA provenance of a real run, checked by securesystemslib
and in-toto's own DSSE verifiers with the ledger's public key, and every edit caught.

A git repository, a data file and a training script are made in tmp_path; the run is
recorded by ``mltrail run`` as a subprocess.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import subprocess
import sys

import pytest

from optional_extras import require_extra

securesystemslib, in_toto = require_extra("intoto", "securesystemslib", "in_toto")

from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: E402
    Ed25519PublicKey,
)
from in_toto.models.metadata import Envelope as InTotoEnvelope  # noqa: E402
from securesystemslib.dsse import Envelope  # noqa: E402
from securesystemslib.exceptions import VerificationError  # noqa: E402
from securesystemslib.signer import SSlibKey  # noqa: E402

from mltrail.errors import IntegrityError  # noqa: E402
from mltrail.integrations.dsse import open_envelope  # noqa: E402

TRAIN = """\
import pathlib, sys
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/model.bin").write_bytes(b"weights" * 100)
pathlib.Path("out/metrics.json").write_text('{"acc": 0.9}')
pathlib.Path("card.md").write_text("model card")
"""


def mltrail(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "MLTRAIL_RUN_ID"}
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=180,
    )  # fmt: skip


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A recorded run in a git repository: (folder, envelope, raw public key, key id)."""
    base = tmp_path_factory.mktemp("intoto")
    mp = pytest.MonkeyPatch()
    config = base / "gitconfig"
    config.write_text("[init]\n\tdefaultBranch = main\n")
    for name, value in {
        "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CEILING_DIRECTORIES": str(base), "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com", "MLTRAIL_HOME": str(base / "home"),
    }.items():  # fmt: skip
        mp.setenv(name, value)
    repo = base / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "train.csv").write_text("x,y\n1,2\n")
    (repo / "train.py").write_text(TRAIN)
    (repo / ".gitignore").write_text("out/\ncard.md\ndata/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "train")
    ok(mltrail("init", cwd=base))
    ok(mltrail("run", "-q", "--name", "tune", "--data", "train=data/train.csv",
               "--output", "out", "--output", "card.md", "--",
               sys.executable, "train.py", "--lr", "0.01", "--epochs", "3", cwd=repo))  # fmt: skip
    ok(mltrail("export", "intoto", "tune", "-o", base / "p.json", cwd=repo))
    envelope = json.loads((base / "p.json").read_text())
    key_id = ok(mltrail("keys", "export", "--format", "id", cwd=repo)).stdout.strip()
    pem = ok(mltrail("keys", "export", cwd=repo)).stdout
    # securesystemslib's from_dict rewrites the dict it is given: hand it copies
    yield repo, envelope, pem, key_id
    mp.undo()


def _sslib_key(pem: str, key_id: str) -> SSlibKey:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    public = load_pem_public_key(pem.encode())
    assert isinstance(public, Ed25519PublicKey)
    return SSlibKey.from_crypto(public, keyid=key_id)


def _raw(pem: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    return load_pem_public_key(pem.encode()).public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )


def test_securesystemslib_and_in_toto_verify_the_envelope(project):
    _, envelope, pem, key_id = project
    key = _sslib_key(pem, key_id)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert envelope["signatures"][0]["keyid"] == key_id
    assert set(Envelope.from_dict(copy.deepcopy(envelope)).verify([key], 1)) == {key_id}
    key_dict = {"keyid": key_id, **key.to_dict()}
    InTotoEnvelope.from_dict(copy.deepcopy(envelope)).verify_signature(key_dict)
    assert open_envelope(envelope, {key_id: _raw(pem)}) == base64.b64decode(
        envelope["payload"]
    )


def test_statement_holds_the_runs_provenance(project):
    repo, envelope, _, _ = project
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    for name in ("out/model.bin", "out/metrics.json", "card.md"):
        assert subjects[name] == hashlib.sha256((repo / name).read_bytes()).hexdigest()
    assert len(subjects) == 3
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"]["hyperparameters"] == {"lr": 0.01, "epochs": 3}
    assert build["externalParameters"]["command"][1:] == [
        "train.py", "--lr", "0.01", "--epochs", "3"
    ]  # fmt: skip
    deps = {d["name"]: d for d in build["resolvedDependencies"]}
    data = deps["data/train.csv"]
    assert data["digest"]["sha256"] == hashlib.sha256(b"x,y\n1,2\n").hexdigest()
    assert data["annotations"]["role"] == "train"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert deps["code"]["digest"] == {"gitCommit": head}
    assert deps["code"]["uri"].endswith("@refs/heads/main")
    details = statement["predicate"]["runDetails"]
    assert details["builder"]["id"].startswith("https://")
    assert details["metadata"]["startedOn"] <= details["metadata"]["finishedOn"]
    assert details["byproducts"][0]["annotations"]["status"] == "succeeded"


def _tampered(envelope, **changes):
    return {**envelope, **changes}


def _payload_edit(envelope):
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    return _tampered(
        envelope, payload=base64.b64encode(json.dumps(statement).encode()).decode()
    )


def _type_edit(envelope):
    return _tampered(envelope, payloadType="application/json")


def _sig_edit(envelope):
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[0] ^= 1
    item = {**envelope["signatures"][0], "sig": base64.b64encode(bytes(sig)).decode()}
    return _tampered(envelope, signatures=[item])


@pytest.mark.parametrize("edit", [_payload_edit, _type_edit, _sig_edit])
def test_every_edit_fails_verification(project, edit):
    _, envelope, pem, key_id = project
    bad = edit(envelope)
    with pytest.raises(VerificationError):
        Envelope.from_dict(copy.deepcopy(bad)).verify([_sslib_key(pem, key_id)], 1)
    with pytest.raises(IntegrityError):
        open_envelope(bad, {key_id: _raw(pem)})


def test_another_key_does_not_verify(project):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _, envelope, _, key_id = project
    other = SSlibKey.from_crypto(
        Ed25519PrivateKey.generate().public_key(), keyid=key_id
    )
    with pytest.raises(VerificationError):
        Envelope.from_dict(copy.deepcopy(envelope)).verify([other], 1)


def test_cli_errors_are_one_line(project, tmp_path):
    repo, _, _, _ = project
    proc = mltrail("export", "intoto", "no-such-run", cwd=repo)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no run 'no-such-run'")
    assert "Traceback" not in proc.stderr
    summary = json.loads(ok(mltrail("export", "intoto", "tune", "-o", tmp_path / "p.json",
                                    "--json", cwd=repo)).stdout)  # fmt: skip
    assert summary["subjects"] == 3
    assert summary["keyid"] == project[3]


def test_bundle_export_still_takes_its_first_word(project, tmp_path):
    repo = project[0]
    ok(mltrail("export", "tune", "-o", tmp_path / "b.json", cwd=repo))
    ok(mltrail("export", "bundle", "tune", "-o", tmp_path / "c.json", cwd=repo))
    assert (tmp_path / "b.json").read_bytes() == (tmp_path / "c.json").read_bytes()
    ok(mltrail("verify-bundle", tmp_path / "b.json", cwd=repo))


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ("hash: md5\n  md5: {stale}\n", "a .dvc file left stale after an edit"),
        ("md5: {crlf}\n", "DVC 2's md5 of the text with CRLF made LF"),
    ],
)
def test_dvcs_claimed_md5_is_never_signed_as_the_datas_digest(
    tmp_path, monkeypatch, record, why
):
    """A dependency's ``digest`` names the bytes the run read. DVC's md5 is what
    a ``.dvc`` file says, never checked by mltrail: a stale one, or DVC 2's md5
    (of the text with its CRLF made LF), was signed as the file's ``md5`` beside
    its real SHA-256, and a verifier matching on md5 accepted other bytes."""
    monkeypatch.setenv("MLTRAIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    data = b"x,y\r\n1,2\r\n"
    (tmp_path / "train.csv").write_bytes(data)
    claimed = record.format(
        stale=hashlib.md5(b"x,y\r\n9,9\r\n").hexdigest(),
        crlf=hashlib.md5(data.replace(b"\r\n", b"\n")).hexdigest(),
    )
    (tmp_path / "train.csv.dvc").write_text(
        f"outs:\n- path: train.csv\n  {claimed}  size: {len(data)}\n"
    )
    write = "import pathlib; pathlib.Path('model.bin').write_bytes(b'm' * 9)"
    ok(mltrail("init", cwd=tmp_path))
    ok(mltrail("run", "-q", "--name", "dvc", "--data", "train=train.csv", "--output",
               "model.bin", "--", sys.executable, "-c", write, cwd=tmp_path))  # fmt: skip
    ok(mltrail("export", "intoto", "dvc", "-o", tmp_path / "p.json", cwd=tmp_path))
    envelope = json.loads((tmp_path / "p.json").read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    (train,) = [d for d in deps if d["name"] == "train.csv"]
    real_md5 = hashlib.md5(data).hexdigest()
    assert train["digest"].get("md5", real_md5) == real_md5, why
    assert train["digest"]["sha256"] == hashlib.sha256(data).hexdigest()
    # DVC's record is still told, as what DVC's file says
    dvc = train["annotations"]["dvc"]
    assert dvc["md5"] != real_md5
    assert dvc["source"] == "train.csv.dvc"
