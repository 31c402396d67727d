"""A source behind a URL: a real http.server on loopback, read through fsspec."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

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
