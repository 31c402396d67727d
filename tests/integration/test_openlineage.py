"""``mltrail export openlineage`` on real runs: the events validate against the
OpenLineage JSON Schema and rebuild with openlineage-python's own classes, and
``--url`` posts them to an HTTP receiver this test starts on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from optional_extras import require_extra

(openlineage,) = require_extra("openlineage", "openlineage.client")

import jsonschema  # noqa: E402

from mltrail.ledger.home import open_home  # noqa: E402

VECTOR = Path(__file__).parents[1] / "vectors" / "openlineage" / "OpenLineage.json"


def schema_path() -> Path:
    """The OpenLineage.json inside the installed package if it ships one, else ours."""
    package = Path(openlineage.__file__).parents[1]
    shipped = sorted(package.rglob("OpenLineage.json"))
    return shipped[0] if shipped else VECTOR


def mltrail(*args, cwd):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLTRAIL_RUN_ID", "OPENLINEAGE_API_KEY")
    }
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=180,
    )  # fmt: skip


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Two recorded runs (one succeeds, one fails) and the events of both."""
    base = tmp_path_factory.mktemp("openlineage")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLTRAIL_HOME", str(base / "home"))
    mp.setenv("GIT_CEILING_DIRECTORIES", str(base))
    (base / "data").mkdir()
    (base / "data" / "train.csv").write_text("x,y\n1,2\n")
    ok(mltrail("init", cwd=base))
    write = "import pathlib; pathlib.Path('model.bin').write_bytes(b'm' * 9)"
    ok(mltrail("run", "-q", "--name", "good", "--data", "train=data/train.csv",
               "--output", "model.bin", "--", sys.executable, "-c", write, cwd=base))  # fmt: skip
    bad = mltrail("run", "-q", "--name", "bad", "--data", "train=data/train.csv", "--",
                  sys.executable, "-c", "raise SystemExit(3)", cwd=base)  # fmt: skip
    assert bad.returncode == 3
    ok(mltrail("export", "openlineage", "-o", base / "events.jsonl", cwd=base))
    lines = (base / "events.jsonl").read_text().splitlines()
    yield base, [json.loads(line) for line in lines]
    mp.undo()


def test_events_validate_against_the_openlineage_schema(project):
    _, events = project
    schema = json.loads(schema_path().read_text())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.FormatChecker()
    )
    assert len(events) == 4
    for event in events:
        errors = [e.message for e in validator.iter_errors(event)]
        assert not errors, errors
    broken = {**events[0], "run": {"facets": {}}}
    assert list(validator.iter_errors(broken))


def test_events_rebuild_with_openlineage_pythons_classes(project):
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.serde import Serde

    _, events = project
    for event in events:
        rebuilt = RunEvent(
            eventType=RunState(event["eventType"]),
            eventTime=event["eventTime"],
            run=Run(runId=event["run"]["runId"]),
            job=Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
            inputs=[InputDataset(d["namespace"], d["name"]) for d in event["inputs"]],
            outputs=[
                OutputDataset(d["namespace"], d["name"]) for d in event["outputs"]
            ],
            producer=event["producer"],
        )
        again = Serde.to_dict(rebuilt)
        assert again["schemaURL"] == event["schemaURL"]
        for key in ("eventType", "eventTime", "producer"):
            assert again[key] == event[key]
        assert again["run"]["runId"] == event["run"]["runId"]


def test_each_run_starts_and_ends_with_its_datasets(project):
    base, events = project
    by_job: dict[str, list[dict]] = {}
    for event in events:
        by_job.setdefault(event["job"]["name"], []).append(event)
    assert [e["eventType"] for e in by_job["good"]] == ["START", "COMPLETE"]
    assert [e["eventType"] for e in by_job["bad"]] == ["START", "FAIL"]
    start, end = by_job["good"]
    assert start["run"]["runId"] == end["run"]["runId"]
    assert start["eventTime"] <= end["eventTime"]
    (train,) = end["inputs"]
    assert (train["namespace"], train["name"]) == (
        "file",
        str(base / "data" / "train.csv"),
    )
    (model,) = end["outputs"]
    assert model["name"] == str(base / "model.bin")
    home = open_home(base / "home", writable=False)
    try:
        for dataset, kind in ((train, "run.data"), (model, "run.artifact")):
            facet = dataset["facets"]["mltrail"]
            record = home.ledger.record(facet["seq"])
            assert record.entry.kind == kind
            key = "dataset" if kind == "run.data" else "sha256"
            assert record.entry.body[key] == facet[key]
            assert dataset["facets"]["version"]["datasetVersion"] == facet[key]
            assert facet["seq"] in end["run"]["facets"]["mltrail"]["seqs"]
    finally:
        home.close()


def test_run_and_time_filters(project):
    base, _ = project
    out = ok(mltrail("export", "openlineage", "--run", "bad", cwd=base)).stdout
    assert [json.loads(x)["job"]["name"] for x in out.splitlines()] == ["bad", "bad"]
    assert (
        ok(mltrail("export", "openlineage", "--until", "2000-01-01", cwd=base)).stdout
        == ""
    )
    assert (
        len(
            ok(
                mltrail("export", "openlineage", "--since", "1d", cwd=base)
            ).stdout.splitlines()
        )
        == 4
    )
    proc = mltrail("export", "openlineage", "--run", "nope", cwd=base)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no run 'nope'")


class Receiver(BaseHTTPRequestHandler):
    """Keeps every POSTed body; answers with the class's status."""

    status = 201
    bodies: ClassVar[list[tuple[dict, str | None]]] = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        type(self).bodies.append((body, self.headers.get("Authorization")))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.bodies = []
    Receiver.status = 201
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/lineage"
    server.shutdown()
    server.server_close()


def test_url_posts_every_event(project, receiver, monkeypatch):
    base, events = project
    monkeypatch.setenv("MLTRAIL_TEST_KEY", "x")
    env = {**os.environ, "OPENLINEAGE_API_KEY": "secret-token"}
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "export", "openlineage", "--url", receiver, "--json"],
        capture_output=True, text=True, env=env, cwd=base, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["events"] == 4
    assert [b for b, _ in Receiver.bodies] == events
    assert {auth for _, auth in Receiver.bodies} == {"Bearer secret-token"}
    assert "secret-token" not in proc.stdout + proc.stderr


def test_a_refusing_or_missing_endpoint_is_exit_4(project, receiver):
    base, _ = project
    Receiver.status = 400
    proc = mltrail("export", "openlineage", "--url", receiver, cwd=base)
    assert proc.returncode == 4
    assert proc.stderr.startswith(
        "error: the OpenLineage endpoint refused event 1 of 4"
    )
    assert "Traceback" not in proc.stderr
    with ThreadingHTTPServer(("127.0.0.1", 0), Receiver) as closed:
        port = closed.server_address[1]
    proc = mltrail(
        "export", "openlineage", "--url", f"http://u:pw@127.0.0.1:{port}/x", cwd=base
    )
    assert proc.returncode == 4
    assert "cannot reach" in proc.stderr
    assert "pw" not in proc.stderr
    proc = mltrail("export", "openlineage", "--url", "ftp://x", cwd=base)
    assert proc.returncode == 2


class Redirector(BaseHTTPRequestHandler):
    """Answers every request with a redirect to the class's ``to``."""

    status = 302
    to = ""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(type(self).status)
        self.send_header("Location", type(self).to)
        self.end_headers()

    def log_message(self, *args):
        pass


class Elsewhere(BaseHTTPRequestHandler):
    """Another host: keeps the method, body and Authorization of what reaches it."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self):
        type(self).seen.append((self.command, self.headers.get("Authorization")))
        self.send_response(200)
        self.end_headers()

    def do_POST(self):
        self.do_GET()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status", [302, 307])
def test_a_redirecting_endpoint_gets_no_event_and_no_key_sent_on(project, status):
    """A lineage endpoint answering with a redirect to another host: urllib
    turned the POST into a GET without its body, sent it there with the
    ``Authorization: Bearer`` header, and counted the event as posted (exit 0,
    every event lost, the key handed to a host nobody named)."""
    base, _ = project
    Elsewhere.seen = []
    other = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    Redirector.status = status
    Redirector.to = f"http://127.0.0.1:{other.server_address[1]}/collect"
    first = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    for server in (other, first):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "OPENLINEAGE_API_KEY": "secret-token"}
        env.pop("MLTRAIL_RUN_ID", None)
        url = f"http://127.0.0.1:{first.server_address[1]}/api/v1/lineage"
        proc = subprocess.run(
            [sys.executable, "-m", "mltrail", "export", "openlineage", "--url", url],
            capture_output=True, text=True, env=env, cwd=base, timeout=180,
        )  # fmt: skip
    finally:
        for server in (first, other):
            server.shutdown()
            server.server_close()
    assert Elsewhere.seen == []
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert proc.stderr.startswith(
        f"error: the OpenLineage endpoint {url} redirected event 1 of 4 to "
        f"{Redirector.to} (HTTP {status})"
    ), proc.stderr
    assert "secret-token" not in proc.stdout + proc.stderr


def test_a_redirect_to_an_unreadable_location_is_refused_not_a_crash(project):
    """urllib reads a redirect's ``Location`` before asking the handler whether
    to follow it: one that is no URL (``http://[``) raised a ValueError out of
    the post, a traceback (exit 1) instead of the redirect refused (exit 4)."""
    base, _ = project
    Redirector.status, Redirector.to = 301, "http://[::1/\x1b[31mred"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if k != "MLTRAIL_RUN_ID"}
        url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/lineage"
        proc = subprocess.run(
            [sys.executable, "-m", "mltrail", "export", "openlineage", "--url", url],
            capture_output=True, text=True, env=env, cwd=base, timeout=180,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert proc.stderr.startswith(
        f"error: the OpenLineage endpoint {url} redirected event 1 of 4 to http://[::1/"
    ), proc.stderr
    assert "\x1b" not in proc.stderr
