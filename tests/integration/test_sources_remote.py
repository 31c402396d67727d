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
