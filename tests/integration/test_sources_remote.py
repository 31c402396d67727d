"""A source behind a URL: a real http.server on loopback, read through fsspec."""

from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cli_in_process import DUP, in_process_cli
from optional_extras import require_extra


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def served(tmp_path):
    require_extra("remote", "aiohttp", "fsspec")
    root = tmp_path / "site"
    (root / "bureau").mkdir(parents=True)
    for i in range(5):
        (root / "bureau" / f"part-{i}.csv").write_text(f"id,score\n{i},{i * 10}\n")
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def cli(cwd, home, *args):
    return subprocess.run(
        [sys.executable, "-m", "mltrail", "--home", str(home), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_url_source_is_fingerprinted_and_checked(served, tmp_path):
    root, base = served
    home = tmp_path / "home"
    assert cli(tmp_path, home, "init").returncode == 0
    added = cli(tmp_path, home, "sources", "add", "bureau", f"{base}/bureau/", "--json")
    assert added.returncode == 0, added.stderr
    body = json.loads(added.stdout)
    assert body["type"] == "url"
    assert body["files"] == 5
    local = json.loads(
        cli(tmp_path, home, "data", "hash", str(root / "bureau"), "--json").stdout
    )
    assert body["fingerprint"] == local[0]["dataset"]  # same bytes, same id
    assert cli(tmp_path, home, "sources", "check").returncode == 0
    (root / "bureau" / "part-3.csv").write_text("id,score\n3,31\n")
    (root / "bureau" / "part-5.csv").write_text("id,score\n5,50\n")
    checked = cli(tmp_path, home, "sources", "check", "--json")
    assert checked.returncode == 1
    [result] = json.loads(checked.stdout)
    assert result["changes"]["added"] == 1
    assert result["changes"]["changed"] == 1
    assert sorted(result["changes"]["sample"]) == ["+part-5.csv", "~part-3.csv"]


def test_a_url_sources_credentials_are_not_stored(served, tmp_path):
    """``sources add`` appended the location as given: a URL's password, a
    presigned URL's signature and credential, a SAS ``sig`` were in the ledger
    (where no purge reaches them) and in what ``sources`` printed (ADR 0013,
    amendment 2026-12-08). They are commitments now, and the check reads the
    URL without them."""
    root, base = served
    home = tmp_path / "home"
    host = base.removeprefix("http://")
    password, signature, sas = "Pw0rd7sEcrEt91", "a9F3kLq0ZxW2vB8nM4", "SaS5igN8tUrE3xQ"
    basic = f"http://alice:{password}@{host}/bureau/"
    signed = (
        f"{base}/bureau/part-1.csv?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261208"
        f"&X-Amz-Signature={signature}&X-Amz-Expires=900"
    )
    shared = f"{base}/bureau/part-2.csv?sv=2022-11-02&sig={sas}"
    assert cli(tmp_path, home, "init").returncode == 0
    outputs = b""
    for name, url in (("basic", basic), ("signed", signed), ("shared", shared)):
        added = cli(tmp_path, home, "sources", "add", name, url, "--json")
        assert added.returncode == 0, added.stderr
        outputs += (added.stdout + added.stderr).encode()
        location = json.loads(added.stdout)["location"]
        assert "<redacted hmac-sha256:" in location  # a commitment, checkable
    assert json.loads(added.stdout)["files"] == 1
    assert location.startswith(f"{base}/bureau/part-2.csv?sv=2022-11-02&sig=<redacted")
    listed = cli(tmp_path, home, "sources", "list", "--json")
    assert "alice:<redacted hmac-sha256:" in listed.stdout  # user and host stay
    checked = cli(tmp_path, home, "sources", "check", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr  # still read
    (root / "bureau" / "part-5.csv").write_text("id,score\n5,50\n")
    changed = cli(tmp_path, home, "sources", "check", "basic", "--json")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert json.loads(changed.stdout)[0]["changes"]["added"] == 1
    outputs += (listed.stdout + checked.stdout + changed.stdout).encode()
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    for value in (password, signature, sas, "AKIAIOSFODNN7EXAMPLE"):
        assert value.encode() not in stored, value
        assert value.encode() not in outputs, value
    found = subprocess.run(
        [sys.executable, "-m", "mltrail", "--home", str(home), "secrets", "check"],
        input=password, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stdout + found.stderr  # the auditor confirms


class Guarded(Quiet):
    """Serves ``private/`` only with ``alice``'s password (HTTP Basic)."""

    def do_GET(self):
        wanted = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
        if self.path.startswith("/private") and self.headers["Authorization"] != wanted:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="data"')
            self.end_headers()
            return
        super().do_GET()

    do_HEAD = do_GET  # noqa: N815


PASSWORD = "Pw0rd7sEcrEt91"
TOKEN = "ghp_aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH3jK5"


def test_a_url_sources_withheld_credential_is_read_from_netrc(tmp_path):
    """A source whose URL held its password is stored without it, and read back
    without it (amendment 2026-12-08); but the HTTP client did not read
    ``~/.netrc``, so a check of such a source could only say "access denied",
    with no word of the credential the user must give. A token in the URL's
    path, which cannot be given apart from it, was stored masked and read as
    ``…/[MASKED:secret]/…``: "no such remote file" (ADR 0013, amendment
    2026-12-08, second)."""
    require_extra("remote", "aiohttp", "fsspec")
    root = tmp_path / "site"
    for folder in ("private", TOKEN):
        (root / folder).mkdir(parents=True)
        (root / folder / "part-0.csv").write_text("id,score\n0,0\n")
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Guarded, directory=str(root))
    )
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{httpd.server_address[1]}"
        user_home = tmp_path / "user"
        user_home.mkdir()
        env = {**os.environ, "HOME": str(user_home)}
        env.pop("NETRC", None)
        home = tmp_path / "home"

        def run(*args):
            return subprocess.run(
                [sys.executable, "-m", "mltrail", "--home", str(home), *args],
                cwd=tmp_path, capture_output=True, text=True, timeout=120,
                check=False, env=env,
            )  # fmt: skip

        assert run("init").returncode == 0
        url = f"http://alice:{PASSWORD}@{host}/private/part-0.csv"
        added = run("sources", "add", "basic", url)
        assert added.returncode == 0, added.stderr
        assert f"`sources check` reads http://{host}/private/" in added.stderr
        masked = run("sources", "add", "tok", f"http://{host}/{TOKEN}/part-0.csv")
        assert masked.returncode == 0, masked.stderr
        assert "cannot be read again" in masked.stderr  # said when added
        netrc = user_home / ".netrc"
        netrc.write_text(f"machine 127.0.0.1\nlogin alice\npassword {PASSWORD}\n")
        netrc.chmod(0o600)
        checked = run("sources", "check", "basic", "--json")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        netrc.unlink()
        missing = run("sources", "check", "--json")
        assert missing.returncode == 1
        errors = {r["name"]: r["error"] for r in json.loads(missing.stdout)}
        assert "not stored" in errors["basic"]
        assert "~/.netrc" in errors["basic"]
        assert "cannot be read again" in errors["tok"]
        helped = run("sources", "check", "--help").stdout
        assert "~/.netrc" in helped
        stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
        for value in (PASSWORD, TOKEN):
            assert value.encode() not in stored
            assert value not in added.stdout + added.stderr + masked.stdout
            assert value not in masked.stderr + missing.stdout
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


class Flaky(Quiet):
    """Answers its server's ``refusing`` status while one is set: 401 (a
    credential missing), 503 (a store that is down)."""

    def do_GET(self):
        status = getattr(self.server, "refusing", None)
        if status:
            self.send_error(status)
            return
        super().do_GET()

    do_HEAD = do_GET  # noqa: N815


def test_a_failed_check_is_no_fingerprint_and_raises_no_flag(
    tmp_path, capsys, monkeypatch
):
    """A check that could not read its source (401) recorded an empty
    fingerprint, which the next check compared against: the source was
    "changed" when the store came back with the same bytes, its files were
    compared with the registration's, and a model already reviewed for a change
    seen before was flagged again (``sources list`` failed on the empty
    fingerprint; a 503 stopped the whole check). A failed check is a failure,
    said with its time; the comparison is with the last check that read the
    source (ADR 0010, amendment 2026-12-08)."""
    require_extra("remote", "aiohttp", "fsspec")
    root = tmp_path / "site"
    (root / "bureau").mkdir(parents=True)
    for i in range(3):
        (root / "bureau" / f"part-{i}.csv").write_text(f"id,score\n{i},{i * 10}\n")
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Flaky, directory=str(root))
    )
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        cli = in_process_cli(capsys, monkeypatch, tmp_path)
        monkeypatch.chdir(tmp_path)
        (tmp_path / "dup.py").write_text(DUP)
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        cli("init")
        cli("sources", "add", "bureau", f"{base}/bureau/")
        cli("run", "-q", "--name", "train", "--data", f"train={root / 'bureau'}",
            "--output", "model.bin", "--", sys.executable, "dup.py",
            str(root / "bureau"), "model.bin", "m")  # fmt: skip
        (root / "bureau" / "part-1.csv").write_text("id,score\n1,11\n")
        [first] = json.loads(cli("sources", "check", "--json", code=1))
        assert first["changed"] is True
        assert len(first["flagged"]) == 1
        cli("flags", "clear", "model.bin", "--note", "re-validated")
        httpd.refusing = 401
        [failed] = json.loads(cli("sources", "check", "--json", code=1))
        assert failed["error"]
        assert "access denied" in failed["error"]
        assert failed["changed"] is False
        assert failed["flagged"] == []
        [listed] = json.loads(cli("sources", "list", "--json"))
        assert listed["fingerprint"] == first["fingerprint"]  # the last one read
        assert listed["failing_since"]
        assert "access denied" in listed["error"]
        table = cli("sources", "list")
        assert "failing since" in table
        assert first["fingerprint"][:16] in table
        httpd.refusing = 503  # was no result at all: the whole check stopped
        [again] = json.loads(cli("sources", "check", "--json", code=1))
        assert "503" in again["error"]
        assert again["previous"] == first["fingerprint"]
        [still] = json.loads(cli("sources", "list", "--json"))
        assert still["failing_since"] == listed["failing_since"]  # the first failure
        assert "503" in still["error"]  # the latest
        assert json.loads(cli("flags", "--json")) == []
        shown = cli("flags")
        assert "no models awaiting re-audit" in shown
        assert "bureau" in shown
        assert "could not be checked since" in shown
        httpd.refusing = None
        [back] = json.loads(cli("sources", "check", "--json"))  # same bytes
        assert back["changed"] is False
        assert back["flagged"] == []
        assert back["previous"] == first["fingerprint"]
        assert json.loads(cli("flags", "--json")) == []
        [listed] = json.loads(cli("sources", "list", "--json"))
        assert listed["failing_since"] is None
        assert listed["error"] is None
        assert "could not be checked" not in cli("flags")
        (root / "bureau" / "part-2.csv").write_text("id,score\n2,21\n")
        [changed] = json.loads(cli("sources", "check", "--json", code=1))
        assert changed["changed"] is True
        assert changed["previous"] == first["fingerprint"]
        assert changed["changes"]["changed"] == 1
        assert len(changed["flagged"]) == 1
        [flag] = json.loads(cli("flags", "--json"))
        assert flag["source"] == "bureau"
        assert flag["path"].endswith("model.bin")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
