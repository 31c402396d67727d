"""What a client trusts of a server (ADR 0028, amendment 2026-12-06), against
real `mltrail server` subprocesses over PostgreSQL (tests/server_fixture.py).

The trust state is kept per server ledger URL and origin: two servers that
both serve a ledger called team-a never share a pin; a URL that answers for
another origin than the one pinned there is refused (exit 3); a trust file of
the first format (keyed by the ledger name) is taken over without losing its
checkpoint. A log key the server's admin rotates (`mltrail keys rotate --db
... --ledger ...`) is pinned by each client once the log proves it; a revoked
key signing a newer checkpoint, or a key the log does not prove, is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optional_extras import require_extra
from server_fixture import running_server

require_extra("client", "httpx2")


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


def _env(home: Path, server, role: str, name: str, ledger: str = "team-a"):
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    return keep | {
        "MLTRAIL_HOME": str(home),
        "MLTRAIL_URL": f"http://127.0.0.1:{server.port}/ledgers/{ledger}",
        "MLTRAIL_TOKEN": server.token(role, name, ledger=ledger),
    }


def cli(env, *args: str, code: int = 0, cwd: Path | None = None):
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *args], env=env, capture_output=True,
        text=True, timeout=120, check=False, cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc


def _trust_files(home: Path) -> list[Path]:
    return sorted((home / "server-trust").glob("*@*.json"))


def _checkpoint_size(text: str) -> int:
    from mltrail.core.checkpoint import parse_signed_checkpoint

    return parse_signed_checkpoint(text).checkpoint.size


def test_two_servers_serving_team_a_keep_separate_pins(server, tmp_path):
    """Both test servers serve team-a under one origin with different log keys:
    one home talks to both, and each keeps its own pin and checkpoint (keyed by
    the ledger name alone, the second was refused as not signed by the pin)."""
    home = tmp_path / "home"
    first = _env(home, server, "auditor", "carol")
    cli(first, "runs")
    with running_server() as other:
        second = _env(home, other, "auditor", "carol")
        cli(second, "runs")
        cli(first, "runs")
        cli(second, "verify")
        files = _trust_files(home)
        assert len(files) == 2
        pins = [json.loads(f.read_text()) for f in files]
        assert {p["origin"] for p in pins} == {"test.example/team-a"}
        assert {p["servers"][0].rsplit(":", 1)[1] for p in pins} == {
            f"{server.port}/ledgers/team-a",
            f"{other.port}/ledgers/team-a",
        }
        assert pins[0]["log_keys"] != pins[1]["log_keys"]
        caches = sorted(p.name for p in (home / "server-cache").glob("*.index.db"))
        assert caches == sorted(f.stem + ".index.db" for f in files)


def test_a_url_answering_for_another_origin_is_refused(server, tmp_path):
    """The URL of team-b pinned (as a server later pointed elsewhere would
    leave it) with team-a's origin: team-b's answer is refused, exit 3."""
    from mltrail.ledger.server_trust import server_id

    home = tmp_path / "home"
    cli(_env(home, server, "auditor", "carol"), "runs")
    (pinned,) = _trust_files(home)
    data = json.loads(pinned.read_text())
    team_b = _env(home, server, "auditor", "carol", ledger="team-b")
    data["servers"] = [server_id(team_b["MLTRAIL_URL"])]
    pinned.write_text(json.dumps(data))
    refused = cli(team_b, "runs", code=3)
    assert "answers for origin 'test.example/team-b'" in refused.stderr
    assert "pinned origin 'test.example/team-a' there" in refused.stderr


def test_a_trust_file_keyed_by_name_is_taken_over_with_its_checkpoint(server, tmp_path):
    home = tmp_path / "home"
    env = _env(home, server, "auditor", "carol")
    cli(env, "runs")
    (pinned,) = _trust_files(home)
    data = json.loads(pinned.read_text())
    legacy = home / "server-trust/team-a.json"
    old = {k: data[k] for k in ("ledger", "origin", "genesis_key", "log_keys")}
    legacy.write_text(json.dumps(old | {"checkpoint": data["checkpoint"]}))
    pinned.unlink()
    writer = _env(tmp_path / "bea", server, "writer", "bea")
    cli(writer, "init")
    cli(writer, "keys", "register")  # the log grows: the kept checkpoint extends
    cli(env, "runs")
    (migrated,) = _trust_files(home)
    taken = json.loads(migrated.read_text())
    assert taken["log_keys"] == data["log_keys"]
    assert _checkpoint_size(taken["checkpoint"]) > _checkpoint_size(data["checkpoint"])
    assert not legacy.exists()
    assert (home / "server-trust/team-a.json.migrated").exists()

    # a name-keyed file of another origin: refused, unless --trust-key says whom
    home2 = tmp_path / "home2"
    cli(_env(home2, server, "auditor", "carol"), "runs")
    (other,) = _trust_files(home2)
    foreign = json.loads(other.read_text()) | {"origin": "test.example/elsewhere"}
    (home2 / "server-trust/team-a.json").write_text(json.dumps(foreign))
    other.unlink()
    refused = cli(_env(home2, server, "auditor", "carol"), "runs", code=3)
    assert "with origin 'test.example/elsewhere'" in refused.stderr
    key = json.loads(migrated.read_text())["log_keys"]
    pinned_env = _env(home2, server, "auditor", "carol")
    pinned_env["MLTRAIL_TRUST_KEY"] = next(iter(key))
    cli(pinned_env, "runs")
    assert (home2 / "server-trust/team-a.json").exists()  # never dropped


def test_a_rotated_log_key_is_pinned_once_the_log_proves_it(tmp_path):
    """The admin rotates team-a's log key (server stopped, then restarted):
    clients pin the new key by themselves, say so once, and keep appending;
    the revoked key signing a newer checkpoint, or a key the log never added,
    is refused."""
    from mltrail.core.checkpoint import CheckpointSigner, parse_signed_checkpoint
    from mltrail.errors import IntegrityError
    from mltrail.ledger.keystore import generate_signer, load_signer
    from mltrail.ledger.server_trust import ServerTrust
    from mltrail.storage.http import HttpStore

    with running_server() as srv:
        writer = _env(tmp_path / "alice", srv, "writer", "alice")
        auditor = _env(tmp_path / "carol", srv, "auditor", "carol")
        project = tmp_path / "project"
        project.mkdir()
        cli(writer, "init")
        cli(writer, "keys", "register")
        cli(writer, "run", "--name", "before", "--", sys.executable, "-c", "pass",
            cwd=project)  # fmt: skip
        cli(auditor, "runs")
        old_key = srv.log_signer("team-a").key_id
        srv.stop()
        moved = tmp_path / "offline/old-team-a.key"
        rotated = json.loads(
            cli(
                {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")},
                "keys", "rotate", "--db", srv.owner_url, "--ledger", "team-a",
                "--keys", str(srv.keys), "--move-old-key", str(moved), "--json",
            ).stdout
        )  # fmt: skip
        assert rotated["revoked"] == old_key
        new_key = rotated["added"]
        assert srv.log_signer("team-a").key_id == new_key
        srv.start()

        seen = cli(auditor, "runs")
        assert f"pinned {new_key[:16]}..." in seen.stderr
        assert f"revoked {old_key[:16]}..." in seen.stderr
        assert "was rotated" not in cli(auditor, "runs").stderr  # said once
        after = cli(writer, "run", "--name", "after", "--", sys.executable, "-c",
                    "pass", cwd=project)  # fmt: skip
        assert f"pinned {new_key[:16]}..." in after.stderr
        runs = json.loads(cli(writer, "runs", "--json").stdout)
        assert sorted(r["name"] for r in runs) == ["after", "before"]
        (pinned,) = _trust_files(tmp_path / "carol")
        trust = json.loads(pinned.read_text())
        assert set(trust["log_keys"]) == {old_key, new_key}
        added = rotated["seq"]
        assert trust["key_seqs"][new_key] == [added, None]
        assert trust["key_seqs"][old_key] == [-1, added + 1]
        report = json.loads(cli(auditor, "verify", "--json").stdout)
        assert report["ok"], report
        # the pin and the kept checkpoint lie outside the server, in the home
        client_anchors = [a["description"] for a in report["anchors"]
                          if "client" in a["description"]]  # fmt: skip
        assert len(client_anchors) == 2, report["anchors"]
        assert all("inside this home" in a for a in client_anchors)

        url = auditor["MLTRAIL_URL"]
        with HttpStore(url, auditor["MLTRAIL_TOKEN"]) as store:
            held = ServerTrust.open(tmp_path / "carol", store)
            latest = parse_signed_checkpoint(held.checkpoint).checkpoint
            revoked = CheckpointSigner(latest.origin, load_signer(moved))
            with pytest.raises(IntegrityError, match=r"revoked at seq"):
                held.accept(revoked.sign(latest.size, latest.root))
            stranger = CheckpointSigner(latest.origin, generate_signer())
            with pytest.raises(IntegrityError, match=r"nor by a key the log proves"):
                held.accept(stranger.sign(latest.size, latest.root))
            assert set(json.loads(pinned.read_text())["log_keys"]) == {
                old_key,
                new_key,
            }


def test_rotating_a_server_key_needs_a_postgresql_url_and_a_served_ledger(
    server, tmp_path
):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    env["MLTRAIL_HOME"] = str(tmp_path / "admin")
    alone = cli(env, "keys", "rotate", "--ledger", "team-a", code=2)
    assert "needs --db postgresql://... and --ledger" in alone.stderr
    sqlite = cli(env, "keys", "rotate", "--db", "sqlite:///x.db", "--ledger", "a",
                 code=2)  # fmt: skip
    assert "needs --db postgresql://" in sqlite.stderr
    unknown = cli(env, "keys", "rotate", "--db", server.owner_url, "--ledger",
                  "team-z", "--keys", str(server.keys), code=2)  # fmt: skip
    assert "serves no ledger team-z" in unknown.stderr
    assert sorted(p.name for p in server.keys.iterdir()) == ["team-a.key", "team-b.key"]


def test_a_running_server_signs_with_the_key_its_admin_rotated_in(tmp_path):
    """No restart: the server loads the new key file before its next write, and
    a client that slept through two rotations follows the chain of them."""
    with running_server() as srv:
        writer = _env(tmp_path / "alice", srv, "writer", "alice")
        auditor = _env(tmp_path / "carol", srv, "auditor", "carol")
        cli(writer, "init")
        cli(writer, "keys", "register")
        cli(auditor, "runs")
        admin = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
        rotate = ("keys", "rotate", "--db", srv.owner_url, "--ledger", "team-a",
                  "--keys", str(srv.keys), "--json")  # fmt: skip
        first = json.loads(cli(admin, *rotate).stdout)
        cli(writer, "keys", "list")  # the writer pins the first new key
        second = json.loads(cli(admin, *rotate).stdout)
        assert second["revoked"] == first["added"]
        note = cli(writer, "run", "--name", "after", "--", sys.executable, "-c",
                   "pass", cwd=tmp_path)  # fmt: skip
        assert f"pinned {second['added'][:16]}..." in note.stderr
        seen = cli(auditor, "runs").stderr
        assert (
            f"pinned {first['added'][:16]}... (key.added at seq {first['seq']})" in seen
        )
        assert f"{second['added'][:16]}... (key.added at seq {second['seq']})" in seen
        (pinned,) = _trust_files(tmp_path / "carol")
        seqs = json.loads(pinned.read_text())["key_seqs"]
        assert seqs[first["added"]] == [first["seq"], second["seq"] + 1]
        assert seqs[second["added"]] == [second["seq"], None]
        assert json.loads(cli(auditor, "verify", "--json").stdout)["ok"]
