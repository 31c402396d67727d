"""RFC 3161 timestamps on checkpoints, against a real TSA on 127.0.0.1.

The TSA is ``openssl ts -reply`` behind HTTP (tests/tsa_server.py) with a root
CA and a TSA certificate made here. Everything runs through the real CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

import pytest

from optional_extras import require_extra
from tsa_server import (
    TsaServer,
    closed_port_url,
    forge_token,
    make_other_tsa,
    make_tsa_ca,
    stamp_dated,
    stamp_with_openssl,
)

require_extra("timestamps", "rfc3161_client")


def mltrail(home, *args, env=None, stdin=None):
    full = {**os.environ, "MLTRAIL_HOME": str(home), **(env or {})}
    for name in (
        "MLTRAIL_WITNESS",
        "MLTRAIL_TSA_URL",
        "MLTRAIL_TSA_CA",
        "MLTRAIL_RUN_ID",
    ):
        if name not in (env or {}):
            full.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        text=True,
        env=full,
        input=stdin,
        timeout=120,
    )


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def verify_json(home, *args):
    proc = mltrail(home, "verify", "--json", *args)
    return proc.returncode, json.loads(proc.stdout)


def codes(report, severity=None):
    return [p["code"] for p in report["problems"] if severity in (None, p["severity"])]


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_tsa_ca(tmp_path_factory.mktemp("tsa"))


@pytest.fixture(scope="module")
def tsa(ca):
    with TsaServer(ca) as server:
        yield server


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    ok(mltrail(path, "init", "--origin", "test.mltrail.local/tsa"))
    ok(mltrail(path, "append", "--kind", "note", "--body", '{"text": "a"}'))
    return path


def _note(home, text):
    ok(mltrail(home, "append", "--kind", "note", "--body", json.dumps({"text": text})))


def test_stamp_then_verify_with_the_ca(home, tsa, ca):
    proc = ok(mltrail(home, "checkpoint", "--tsa", tsa.url, "--json"))
    out = json.loads(proc.stdout)
    assert out["timestamp"]["new"] is True
    assert out["timestamp"]["size"] == out["size"] == 2
    assert "existed before" in proc.stderr
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0, report["problems"]
    stamps = [a for a in report["anchors"] if a["kind"] == "timestamp"]
    assert len(stamps) == 1
    assert stamps[0]["external"] is True
    assert "records 0 to 1 existed before" in stamps[0]["description"]
    assert "anchors" not in codes(report)  # the TSA is an anchor outside the home


def test_stamping_twice_keeps_the_first_token(home, tsa):
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    before = tsa.requests
    proc = ok(mltrail(home, "timestamp", "--tsa", tsa.url, "--json"))
    assert json.loads(proc.stdout)[0]["new"] is False
    assert tsa.requests == before


def test_without_a_ca_the_time_is_unverified(home, tsa):
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    code, report = verify_json(home)
    assert code == 0
    assert codes(report, "warning").count("timestamp-unverified") == 1
    assert not [a for a in report["anchors"] if a["kind"] == "timestamp"]


def test_a_ca_named_by_the_environment_is_used(home, tsa, ca):
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    proc = mltrail(home, "verify", "--json", env={"MLTRAIL_TSA_CA": str(ca.ca_pem)})
    report = json.loads(proc.stdout)
    assert [a["kind"] for a in report["anchors"]].count("timestamp") == 1


def test_another_ca_fails(home, tsa, tmp_path):
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    other = make_tsa_ca(tmp_path / "other", name="another")
    code, report = verify_json(home, "--tsa-ca", str(other.ca_pem))
    assert code == 3
    bad = [p for p in report["problems"] if p["code"] == "timestamp"]
    assert len(bad) == 1
    assert "does not verify against the trusted TSA CA" in bad[0]["message"]
    assert bad[0]["seq"] == 1


def _evidence(home):
    conn = sqlite3.connect(home / "ledger.db")
    try:
        return conn.execute(
            "SELECT id, kind, size, checkpoint, data, added FROM checkpoint_evidence"
        ).fetchall()
    finally:
        conn.close()


def _newest_checkpoint(home):
    conn = sqlite3.connect(home / "ledger.db")
    try:
        [checkpoint] = conn.execute(
            "SELECT note FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return checkpoint


def _insert(home, kind, size, checkpoint, data):
    conn = sqlite3.connect(home / "ledger.db")
    try:
        conn.execute(
            "INSERT INTO checkpoint_evidence (kind, size, checkpoint, data, added) "
            "VALUES (?, ?, ?, ?, '2026-01-01T00:00:00Z')",
            (kind, size, checkpoint, data),
        )
        conn.commit()
    finally:
        conn.close()


def test_a_token_of_another_checkpoint_fails(home, tsa, ca):
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    _note(home, "b")
    newest = ok(mltrail(home, "checkpoint")).stdout
    token = _evidence(home)[0][4]
    _insert(home, "rfc3161", 3, newest, token)  # the size-2 token, filed under size 3
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 3
    bad = [p for p in report["problems"] if p["code"] == "timestamp"]
    assert [p["seq"] for p in bad] == [2]
    assert "stamps another message" in bad[0]["message"]


def test_a_tampered_token_fails(home, tsa, ca):
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    conn = sqlite3.connect(home / "ledger.db")
    try:
        conn.execute("DROP TRIGGER checkpoint_evidence_no_UPDATE")
        data = bytearray(
            conn.execute("SELECT data FROM checkpoint_evidence").fetchone()[0]
        )
        data[-20] ^= 0x01  # inside the CMS signature
        conn.execute("UPDATE checkpoint_evidence SET data = ?", (bytes(data),))
        conn.commit()
    finally:
        conn.close()
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 3
    assert codes(report, "error") == ["timestamp"]
    assert not [a for a in report["anchors"] if a["kind"] == "timestamp"]


def test_evidence_rows_are_append_only(home, tsa):
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    conn = sqlite3.connect(home / "ledger.db")
    try:
        for sql in (
            "DELETE FROM checkpoint_evidence",
            "UPDATE checkpoint_evidence SET size = 9",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(sql)
    finally:
        conn.close()


def test_tsa_down_during_a_run_then_stamped_later(home, tsa, ca, tmp_path):
    down = {"MLTRAIL_TSA_URL": closed_port_url()}
    proc = mltrail(
        home, "run", "--", sys.executable, "-c", "print('trained')", env=down
    )
    assert proc.returncode == 0, proc.stderr
    assert "was not timestamped" in proc.stderr
    assert "mltrail timestamp --pending" in proc.stderr
    code, report = verify_json(home)
    assert code == 0
    assert "timestamp-pending" in codes(report, "warning")
    # the run's outcome is recorded in full
    log = json.loads(ok(mltrail(home, "log", "--json")).stdout)
    assert log[-1]["entry"]["kind"] == "run.ended"
    assert log[-1]["entry"]["body"]["status"] == "succeeded"
    # later, the TSA is back
    proc = ok(mltrail(home, "timestamp", "--pending", "--tsa", tsa.url, "--json"))
    stamped = json.loads(proc.stdout)
    assert [s["size"] for s in stamped] == [len(log)]
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0, report["problems"]
    assert "timestamp-pending" not in codes(report)
    assert [a["kind"] for a in report["anchors"]].count("timestamp") == 1
    again = ok(mltrail(home, "timestamp", "--pending", "--tsa", tsa.url))
    assert "no checkpoint waits" in again.stdout


def test_a_configured_tsa_stamps_every_run_end(home, tsa, ca):
    env = {"MLTRAIL_TSA_URL": tsa.url}
    for _ in range(2):
        ok(mltrail(home, "run", "--", sys.executable, "-c", "pass", env=env))
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0
    assert [a["kind"] for a in report["anchors"]].count("timestamp") == 2


def test_the_setting_in_ledger_json_stamps_runs_of_the_python_api(home, tsa, ca):
    settings = json.loads((home / "ledger.json").read_text())
    (home / "ledger.json").write_text(json.dumps({**settings, "tsa_url": tsa.url}))
    script = "import mltrail\nwith mltrail.start_run(name='api'):\n    pass\n"
    ok(mltrail(home, "log"))  # ledger.json still reads
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "MLTRAIL_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0
    assert [a["kind"] for a in report["anchors"]].count("timestamp") == 1


def test_a_stamped_checkpoint_catches_records_cut_afterwards(home, tsa, ca):
    _note(home, "b")
    _note(home, "c")
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))  # size 4, stamped
    shutil.rmtree(home / "witness")  # the attacker removes the local witness too
    conn = sqlite3.connect(home / "ledger.db")
    try:  # roll back to size 2: records, nodes and checkpoints of the cut go
        for table in ("records", "merkle_nodes", "checkpoints"):
            conn.execute(f"DROP TRIGGER {table}_no_DELETE")
        conn.execute("DELETE FROM records WHERE seq >= 2")
        conn.execute("DELETE FROM checkpoints WHERE size > 2")
        conn.execute("DELETE FROM merkle_nodes WHERE (idx + 1) << level > 2")
        conn.commit()
    finally:
        conn.close()
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 3
    truncated = [p for p in report["problems"] if p["code"] == "truncated"]
    assert len(truncated) == 1
    assert "evidence #1" in truncated[0]["message"]
    assert not [a for a in report["anchors"] if a["kind"] == "timestamp"]


def test_a_bad_tsa_url_is_an_input_error(home):
    proc = mltrail(home, "checkpoint", "--tsa", "ftp://example.invalid/tsr")
    assert proc.returncode == 2
    assert "not an http:// or https:// URL" in proc.stderr


def test_a_tsa_that_is_down_fails_the_command_not_the_ledger(home):
    proc = mltrail(home, "timestamp", "--tsa", closed_port_url())
    assert proc.returncode == 4
    assert "could not be reached" in proc.stderr
    assert verify_json(home)[0] == 0


# -- an insider who holds the home and its key against the timestamps ---------


def test_a_token_filed_under_a_larger_size_backdates_nothing(home, tsa, ca):
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))  # size 2, stamped
    stamped = _evidence(home)[0]
    for text in ("b", "c", "d"):
        _note(home, text)
    ok(mltrail(home, "checkpoint"))
    # the stamped checkpoint and its token filed again, as if of size 5
    _insert(home, "rfc3161", 5, stamped[3], stamped[4])
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 3
    stamps = [a["description"] for a in report["anchors"] if a["kind"] == "timestamp"]
    assert stamps
    assert all("records 0 to 1 existed before" in d for d in stamps), stamps
    bad = [p for p in report["problems"] if p["code"] == "timestamp"]
    assert len(bad) == 1
    assert "is filed under size 5: it stamps records 0 to 1 only" in bad[0]["message"]
    assert bad[0]["seq"] == 1


def test_a_token_naming_the_trusted_tsa_but_signed_by_another_fails(
    home, tsa, ca, tmp_path
):
    """Another TSA certificate under the same CA signs the checkpoint with a time
    4 minutes before its records were written (within the date check's leeway)
    and the trusted TSA's name in its TSTInfo: verify made it the anchor "stamped
    by CN=mltrail test TSA", exit 0. The name is the signer's word; RFC 3161
    requires it to be one of the signing certificate's names."""
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    checkpoint = _evidence(home)[0][3]
    token = forge_token(ca, tmp_path / "other-tsa", checkpoint.encode(), 4)
    _insert(home, "rfc3161", 2, checkpoint, token)
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    # beside the genuine token of its checkpoint it proves nothing: ignored (a
    # warning since the ADR 0015 amendment on rows that fail for good)
    assert code == 0, report["problems"]
    [bad] = [p for p in report["problems"] if p["code"] == "timestamp-ignored"]
    assert "names its TSA CN=mltrail test TSA" in bad["message"]
    assert f"signed by the TSA certificate of CN={'x' * 16}" in bad["message"]
    [anchor] = [a["description"] for a in report["anchors"] if a["kind"] == "timestamp"]
    # the genuine token's anchor names the certificate that signed it
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    pem = (ca.folder / "tsa.pem").read_bytes()
    fingerprint = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256())
    assert f"CN=mltrail test TSA (TSA certificate sha256:{fingerprint.hex()})" in anchor


def test_a_token_whose_tstinfo_was_edited_under_its_signature_fails(home, tsa, ca):
    """The CMS signature covers the signed attributes, whose messageDigest is the
    hash of the TSTInfo: a genTime moved back a year inside the TSTInfo, the
    signature and its attributes untouched, must not verify (it does not: kept
    as a regression test of the library's check)."""
    from datetime import timedelta

    from mltrail.core.timestamp import parse_timestamp

    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    _, _, size, checkpoint, token, _ = _evidence(home)[0]
    gen_time = parse_timestamp(token).time
    earlier = gen_time - timedelta(days=365)
    old, new = (t.strftime("%Y%m%d%H%M%SZ").encode() for t in (gen_time, earlier))
    assert token.count(old) == 1
    _insert(home, "rfc3161", size, checkpoint, token.replace(old, new))
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0, report["problems"]  # the genuine token beside it anchors
    [bad] = [p for p in report["problems"] if p["code"] == "timestamp-ignored"]
    assert "timestamp #2" in bad["message"]
    assert "does not verify" in bad["message"]
    stamps = [a["description"] for a in report["anchors"] if a["kind"] == "timestamp"]
    assert len(stamps) == 1  # the genuine token only


def test_a_tsa_certificate_beside_the_ca_pins_the_tsa(home, tsa, ca, tmp_path):
    """The auditor holds the TSA's certificate with its CA: a token another TSA
    of that CA signed (under its own name, a genuine `openssl ts` token) counted
    all the same, and the CA file holding the TSA's certificate changed nothing."""
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    checkpoint = _evidence(home)[0][3]
    other = make_other_tsa(ca, tmp_path / "other-tsa", "another TSA")
    _insert(
        home, "rfc3161", 2, checkpoint, stamp_with_openssl(other, checkpoint.encode())
    )
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0, report["problems"]  # the CA vouches for both TSAs
    stamps = [a["description"] for a in report["anchors"] if a["kind"] == "timestamp"]
    assert len(stamps) == 2
    assert any(
        "stamped by CN=another TSA (TSA certificate sha256:" in d for d in stamps
    )

    pinned = tmp_path / "ca-and-tsa.pem"
    pinned.write_bytes(ca.ca_pem.read_bytes() + (ca.folder / "tsa.pem").read_bytes())
    code, report = verify_json(home, "--tsa-ca", str(pinned))
    assert code == 0, report["problems"]  # the pinned TSA's token anchors
    [bad] = [p for p in report["problems"] if p["code"] == "timestamp-ignored"]
    assert "signed by the TSA certificate of CN=another TSA" in bad["message"]
    assert "not by the TSA certificate given" in bad["message"]
    [anchor] = [a["description"] for a in report["anchors"] if a["kind"] == "timestamp"]
    assert "stamped by CN=mltrail test TSA (TSA certificate sha256:" in anchor


def test_a_reply_that_fails_the_configured_tsa_ca_is_not_kept(home, tsa, ca, tmp_path):
    """The TSA URL answers with a token the TSA CA the home names does not vouch
    for (a reply forged on the way to an http:// TSA, with the request's nonce
    and imprint; or the wrong TSA): it was stored, printed as "stamped", and as
    evidence rows are append-only every `verify --tsa-ca` failed from then on."""
    other = make_tsa_ca(tmp_path / "other", name="another")
    env = {"MLTRAIL_TSA_CA": str(ca.ca_pem)}
    with TsaServer(other) as wrong:
        proc = mltrail(home, "checkpoint", "--tsa", wrong.url, env=env)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "not kept" in proc.stderr
    assert "does not verify against the trusted TSA CA" in proc.stderr
    assert _evidence(home) == []
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0, report["problems"]
    # such a token already stored (before this change) is no stamp: a genuine
    # one is asked for, where `timestamp` said "already stamped"
    checkpoint = _newest_checkpoint(home)
    _insert(
        home, "rfc3161", 2, checkpoint, stamp_with_openssl(other, checkpoint.encode())
    )
    proc = ok(mltrail(home, "timestamp", "--tsa", tsa.url, "--json", env=env))
    assert json.loads(proc.stdout)[0]["new"] is True


def test_a_forged_token_stored_before_a_genuine_one_is_ignored(home, tsa, ca, tmp_path):
    """With no TSA CA set, stamping keeps any reply with the request's nonce and
    imprint: one forged on the way to an http:// TSA was stored, and as
    evidence rows are never removed every later `verify --tsa-ca` failed for
    good, even after the checkpoint was stamped again by the genuine TSA. With a
    verified token of the same checkpoint it proves nothing and is a warning."""
    other = make_tsa_ca(tmp_path / "other", name="another")
    with TsaServer(other) as wrong:
        ok(mltrail(home, "checkpoint", "--tsa", wrong.url))  # no CA set: kept
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 3, report["problems"]  # nothing genuine stamps it: an error
    assert codes(report, "error") == ["timestamp"]
    env = {"MLTRAIL_TSA_CA": str(ca.ca_pem)}
    proc = ok(mltrail(home, "timestamp", "--tsa", tsa.url, "--json", env=env))
    assert json.loads(proc.stdout)[0]["new"] is True
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0, report["problems"]
    [ignored] = [p for p in report["problems"] if p["code"] == "timestamp-ignored"]
    assert ignored["severity"] == "warning"
    assert "does not verify against the trusted TSA CA" in ignored["message"]
    assert "covers its records" in ignored["message"]
    assert [a["kind"] for a in report["anchors"]].count("timestamp") == 1


def test_a_token_signed_for_a_time_yet_to_come_is_named(home, ca, tmp_path):
    """The trusted TSA signs a genTime a day ahead (its clock runs ahead, or its
    key signs any time asked): verify made it an anchor and said nothing, and the
    report listed the checkpoint as stamped tomorrow."""
    ok(mltrail(home, "checkpoint"))
    checkpoint = _newest_checkpoint(home)
    _insert(home, "rfc3161", 2, checkpoint, stamp_dated(ca, checkpoint.encode(), 1500))
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0, report["problems"]
    [warned] = [p for p in report["problems"] if p["code"] == "timestamp-future"]
    assert warned["severity"] == "warning"
    assert "1 day after this machine's clock" in warned["message"], warned
    assert "CN=mltrail test TSA" in warned["message"]


def test_a_token_of_a_coarse_tsa_proves_existence_before_gentime_plus_accuracy(
    home, tmp_path
):
    """A TSA whose tokens say ``accuracy`` 10 minutes: its true time lies
    anywhere in genTime ± 10 minutes, so the records existed before genTime + 10
    minutes, no earlier. verify's anchor said "existed before <genTime>"."""
    from datetime import datetime, timedelta

    coarse = make_tsa_ca(tmp_path / "coarse", accuracy="secs:600")
    with TsaServer(coarse) as server:
        proc = ok(mltrail(home, "checkpoint", "--tsa", server.url, "--json"))
    gen_time = json.loads(proc.stdout)["timestamp"]["time"]
    latest = datetime.strptime(gen_time, "%Y-%m-%dT%H:%M:%SZ") + timedelta(minutes=10)
    code, report = verify_json(home, "--tsa-ca", str(coarse.ca_pem))
    assert code == 0, report["problems"]
    [anchor] = [a["description"] for a in report["anchors"] if a["kind"] == "timestamp"]
    assert f"existed before {latest:%Y-%m-%dT%H:%M:%SZ}" in anchor, anchor


def test_an_anchor_never_reads_earlier_than_its_token_proves(home, tmp_path):
    """A real `openssl ts` TSA whose genTime has milliseconds and whose accuracy
    is 1.5 seconds: the token proves existence before genTime (with its
    fraction) + 1.5 s, but the anchor printed genTime's whole second + 1 s
    (rfc3161-client drops the fraction, and the time is printed to the second):
    records claimed to exist up to 2.5 s earlier than the token shows."""
    import re
    from datetime import UTC, datetime, timedelta

    import rfc3161_client

    fine = make_tsa_ca(tmp_path / "fine", accuracy="secs:1,millisecs:500")
    fine.config.write_text(fine.config.read_text() + "clock_precision_digits = 3\n")
    with TsaServer(fine) as server:
        ok(mltrail(home, "checkpoint", "--tsa", server.url))
    token = _evidence(home)[0][4]
    tst = bytes(rfc3161_client.decode_timestamp_response(token).tst_info.as_bytes())
    [(whole, fraction)] = re.findall(rb"\x18.(\d{14})(?:\.(\d+))?Z", tst)
    gen_time = datetime.strptime(whole.decode(), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    proven = gen_time + timedelta(seconds=float(b"0." + (fraction or b"0")) + 1.5)
    code, report = verify_json(home, "--tsa-ca", str(fine.ca_pem))
    assert code == 0, report["problems"]
    [anchor] = [a["description"] for a in report["anchors"] if a["kind"] == "timestamp"]
    [said] = re.findall(r"existed before (\S+Z)", anchor)
    said = datetime.strptime(said, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert proven <= said < proven + timedelta(seconds=2), (anchor, proven)


def test_a_nameless_token_of_a_pinned_tsa_is_stamped_and_verified(home, tmp_path):
    """Honest setups the checks above must leave alone: a TSA whose tokens carry
    no TSA name (RFC 3161 makes it optional; `openssl ts` with tsa_name = no),
    stamped with the home's TSA CA set to a chain file that holds the TSA's own
    certificate (which pins it), then verified: the anchor names the signing
    certificate, as for a named token."""
    nameless = make_tsa_ca(tmp_path / "nameless")
    config = nameless.config.read_text().replace("tsa_name = yes", "tsa_name = no")
    nameless.config.write_text(config)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(
        nameless.ca_pem.read_bytes() + (nameless.folder / "tsa.pem").read_bytes()
    )
    env = {"MLTRAIL_TSA_CA": str(chain)}
    with TsaServer(nameless) as server:
        ok(mltrail(home, "checkpoint", "--tsa", server.url, env=env))
    code, report = verify_json(home, "--tsa-ca", str(chain))
    assert code == 0, report["problems"]
    [anchor] = [a["description"] for a in report["anchors"] if a["kind"] == "timestamp"]
    assert "stamped by CN=mltrail test TSA (TSA certificate sha256:" in anchor


def test_a_tsa_name_cannot_print_a_line_of_its_own(home, ca, tmp_path):
    """Whoever answers the TSA URL (a reply forged on the way to an http:// TSA)
    writes the TSA name. One with a newline in it printed a line of its own on
    stderr: "stamped: size 1 existed before 2020-01-01..." under
    `checkpoint --tsa`, and, with a TSA CA set, in the error refusing it."""
    forged = "size 1 existed before 2020-01-01T00:00:00Z"
    liar = make_tsa_ca(tmp_path / "liar", name=f"x\nstamped: {forged}")
    with TsaServer(liar) as server:
        refused = mltrail(
            home,
            "checkpoint",
            "--tsa",
            server.url,
            env={"MLTRAIL_TSA_CA": str(ca.ca_pem)},
        )
        kept = mltrail(home, "checkpoint", "--tsa", server.url)
    assert refused.returncode != 0, refused.stderr
    assert "not kept" in refused.stderr
    assert kept.returncode == 0, kept.stderr
    for proc in (refused, kept):
        assert forged in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if forged in line]
        assert all("CN=x" in line for line in lines), proc.stderr  # one line


def test_a_token_claiming_an_accuracy_of_ages_is_malformed(home, tsa, ca):
    """An accuracy of 2**127 seconds or more was read as none by rfc3161-client
    (it holds seconds in 128 bits), so a token whose TSA says its time is
    meaningless became the exact anchor "existed before <genTime>", where a
    claimed accuracy over a year is refused as malformed."""
    from tsa_server import with_accuracy

    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    _, _, size, checkpoint, token, _ = _evidence(home)[0]
    _insert(home, "rfc3161", size, checkpoint, with_accuracy(ca, token, 2**127))
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0, report["problems"]  # the genuine token beside it anchors
    [bad] = [p for p in report["problems"] if p["code"] == "timestamp-ignored"]
    assert "timestamp #2" in bad["message"]
    assert f"accuracy of {2**127} seconds is out of range" in bad["message"]
    stamps = [a["description"] for a in report["anchors"] if a["kind"] == "timestamp"]
    assert len(stamps) == 1  # the genuine token only


def test_the_report_lists_a_timestamp_with_its_stamped_size(home, tsa, ca, tmp_path):
    """The report's listing takes a token's size from the checkpoint it stamps
    (ADR 0015): an evidence row whose size column was edited does not show its
    edited size, and a token filed with a checkpoint it does not stamp is
    listed as unverified, with no size."""
    require_extra("report", "jinja2")
    project = tmp_path / "project"
    project.mkdir()
    write = "import pathlib; pathlib.Path('model').mkdir(); "
    write += "pathlib.Path('model/weights.bin').write_bytes(b'w')"
    run = [sys.executable, "-c", write]
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "run", "--output", "model", "--", *run],
        env={**os.environ, "MLTRAIL_HOME": str(home)},
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    stamped = ok(mltrail(home, "checkpoint", "--tsa", tsa.url, "--json")).stdout
    size = json.loads(stamped)["size"]
    _note(home, "later")
    newest = ok(mltrail(home, "checkpoint")).stdout
    conn = sqlite3.connect(home / "ledger.db")
    try:  # the insider edits the row's size, and files the token again elsewhere
        conn.execute("DROP TRIGGER checkpoint_evidence_no_UPDATE")
        conn.execute("UPDATE checkpoint_evidence SET size = 77")
        conn.commit()
    finally:
        conn.close()
    token = _evidence(home)[0][4]
    _insert(home, "rfc3161", 88, newest, token)
    model = str(project / "model" / "weights.bin")
    for fmt in ("md", "html"):
        out = tmp_path / f"report.{fmt}"
        args = ("report", model, "-o", str(out), "--tsa-ca", str(ca.ca_pem))
        proc = mltrail(home, *args)
        # written, then exit 3: the refiled row is an error of verify's
        assert proc.returncode == 3, proc.stderr
        text = out.read_text().replace("\\", "")  # Markdown's escapes
        listing = re.findall(r"RFC 3161 token #[^\n<]*", text)
        assert len(listing) == 2, text
        assert f"token #1 on the checkpoint of size {size} (size from the" in listing[0]
        assert f"(checked against the TSA CA {ca.ca_pem})" in listing[0]
        assert "token #2: unverified, its size cannot be derived" in listing[1]
        assert not [line for line in listing if "size 77" in line or "size 88" in line]
        assert "is filed under size 77" in text  # verify's warning names it
    proc = mltrail(home, "report", model, "--json", "--tsa-ca", str(ca.ca_pem))
    assert proc.returncode == 3, proc.stderr
    stamps = json.loads(proc.stdout)["record_keeping"]["timestamps"]
    assert [(s["id"], s["size"], s["token"]) for s in stamps] == [
        (1, size, "verified"),
        (2, None, "failed"),
    ]


def test_the_report_says_a_tsa_ca_named_in_ledger_json_lies_inside_the_home(
    home, tsa, ca, tmp_path
):
    """Whoever writes the home can name a CA of their own in ledger.json and
    stamp any time under it: the report's listing said only "checked against
    the TSA CA"; it names the CA and says it lies inside the home, and says
    neither for a CA the auditor passes with --tsa-ca."""
    project = tmp_path / "project"
    project.mkdir()
    write = "import pathlib; pathlib.Path('w.bin').write_bytes(b'w')"
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "run", "--output", "w.bin", "--",
         sys.executable, "-c", write],
        env={**os.environ, "MLTRAIL_HOME": str(home)}, cwd=project,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    settings = json.loads((home / "ledger.json").read_text())
    settings["tsa_ca"] = str(ca.ca_pem)
    (home / "ledger.json").write_text(json.dumps(settings))
    model = str(project / "w.bin")
    text = ok(mltrail(home, "report", model)).stdout.replace("\\", "")
    [line] = re.findall(r"RFC 3161 token #[^\n]*", text)
    assert f"checked against the TSA CA {ca.ca_pem}, named in ledger.json" in line
    assert "which lies inside the home" in line
    stamps = json.loads(ok(mltrail(home, "report", model, "--json")).stdout)[
        "record_keeping"
    ]["timestamps"]
    assert [(s["token"], s["ca_external"]) for s in stamps] == [("verified", False)]
    text = ok(mltrail(home, "report", model, "--tsa-ca", str(ca.ca_pem))).stdout
    [line] = re.findall(r"RFC 3161 token #[^\n]*", text.replace("\\", ""))
    assert f"(checked against the TSA CA {ca.ca_pem})" in line
    assert "inside the home" not in line


def _append_dated_ahead(home, days):
    from datetime import UTC, datetime, timedelta

    from mltrail.ledger.home import open_home
    from mltrail.testing import FixedClock

    opened = open_home(home, env={})
    try:
        opened.ledger.clock = FixedClock(datetime.now(UTC) + timedelta(days=days))
        opened.ledger.append("note", {"text": f"dated {days} days ahead"})
    finally:
        opened.close()


def test_a_record_dated_after_its_timestamp_is_named(home, tsa, ca):
    """The TSA proves records 0 to 2 existed now; seq 2 says it was written in a
    month (a clock ahead, or a run dated forward): verify names it, and once a
    clock reset records the clock was ahead, warns instead."""
    _append_dated_ahead(home, 30)
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 3
    [bad] = [p for p in report["problems"] if p["code"] == "dated-after-anchor"]
    assert (bad["seq"], bad["severity"]) == (2, "error")
    assert "after timestamp #1" in bad["message"]
    assert "records 0 to 2 existed" in bad["message"]
    ok(mltrail(home, "clock", "reset", "--reason", "the clock was a month ahead"))
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0, report["problems"]
    [warned] = [p for p in report["problems"] if p["code"] == "dated-after-anchor"]
    assert (warned["seq"], warned["severity"]) == (2, "warning")
    assert "the clock reset at seq 3" in warned["message"]


def test_a_record_dated_within_the_tolerance_of_its_timestamp_passes(home, tsa, ca):
    _append_dated_ahead(home, 0.002)  # about 3 minutes ahead
    ok(mltrail(home, "checkpoint", "--tsa", tsa.url))
    code, report = verify_json(home, "--tsa-ca", str(ca.ca_pem))
    assert code == 0, report["problems"]
    assert "dated-after-anchor" not in codes(report)
