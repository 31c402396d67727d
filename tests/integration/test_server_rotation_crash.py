"""``mltrail keys rotate --db ... --ledger ...`` killed (SIGKILL) at each step.

The rotation writes the new log key beside the key file, stores ``key.added``
and ``key.revoked`` in PostgreSQL, then puts the new key in place and destroys
the old one. A kill between any two steps must leave a state from which the
real server (tests/server_fixture.py) writes again, and the next command
finishes the rotation by itself; once the rotation is stored, no private key
of a revoked key may be left in the key folder. The kills are placed by
replacing a function in the child with a SIGKILL of itself (as in
test_crash_points.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from optional_extras import require_extra
from postgres_db import throwaway_database
from server_fixture import SRC, running_server

if TYPE_CHECKING:
    from collections.abc import Iterator

require_extra("server", "fastapi", "uvicorn", "psycopg")

A = "/ledgers/team-a"
CLEAN = ["team-a.key", "team-b.key"]

_KILL = "os.kill(os.getpid(), signal.SIGKILL)"
# Each replaces one step of the rotation with a kill before or after it.
KILLS = {
    # inside the append, before anything is stored
    "before-store": "from mltrail.ledger.ledger import Ledger\n"
    f"Ledger.rotate_key = lambda *a, **k: {_KILL}\n",
    # key.added and key.revoked stored, nothing else done
    "stored": "from mltrail.ledger.ledger import Ledger\n"
    "real = Ledger.rotate_key\n"
    f"def rotate(*a, **k):\n    real(*a, **k)\n    {_KILL}\n"
    "Ledger.rotate_key = rotate\n",
    # the new key renamed over <ledger>.key
    "replaced": "real = os.replace\n"
    "def replace(src, dst, **k):\n"
    "    real(src, dst, **k)\n"
    f"    if str(dst).endswith('.key'):\n        {_KILL}\n"
    "os.replace = replace\n",
    # the old key's file about to be destroyed
    "destroying": "from mltrail.ledger import keystore\n"
    f"keystore.destroy_key_file = lambda path: {_KILL}\n",
    # the old key's file destroyed, nothing after it
    "destroyed": "from mltrail.ledger import keystore\n"
    "real = keystore.destroy_key_file\n"
    f"def destroy(path):\n    real(path)\n    {_KILL}\n"
    "keystore.destroy_key_file = destroy\n",
    # the old key about to be moved out (--move-old-key)
    "moving": "from mltrail.ledger import keystore\n"
    f"keystore.move_key_file = lambda source, target: {_KILL}\n",
}


@pytest.fixture
def srv() -> Iterator[Any]:
    """A server of its own for each test: a kill's leftovers never reach the next."""
    with running_server() as running:
        running.signer_for("team-a", "alice")  # registered while the key is good
        yield running


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SRC), env.get("PYTHONPATH", "")) if p
    )
    return env


def _rotate(srv: Any, *extra: str, patch: str = "") -> subprocess.CompletedProcess[str]:
    script = (
        f"import os, signal, sys\n{patch}"
        "from mltrail.cli.main import main\nmain(sys.argv[1:])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, "keys", "rotate", "--db", srv.owner_url,
         "--ledger", "team-a", "--keys", str(srv.keys), "--json", *extra],
        capture_output=True, text=True, env=_env(), timeout=120, check=False,
    )  # fmt: skip


def _writes(srv: Any, where: str) -> None:
    entry = srv.entry("alice", "note", {"text": f"after {where} {uuid.uuid4()}"})
    status, answer = srv.call(
        "POST", f"{A}/entries", srv.token("writer", "alice"), {"entries": [entry]}
    )
    assert status == 201, (where, answer)


def _log_keys(srv: Any) -> tuple[set[str], set[str]]:
    """(valid, revoked) log keys of team-a, as the ledger says."""
    status, answer = srv.call("GET", f"{A}/keys", srv.token("auditor"))
    assert status == 200, answer
    keys = answer["keys"] if isinstance(answer, dict) else answer
    valid = {k["key"] for k in keys if k["revoked_seq"] is None}
    revoked = {k["key"] for k in keys if k["revoked_seq"] is not None}
    return valid, revoked


def _key_id(path: Path) -> str | None:
    """The key id of the key file ``path``; None when it holds none."""
    from mltrail.ledger.keystore import load_signer

    try:
        return load_signer(path).key_id
    except Exception:  # missing, or cut short: no key
        return None


def _no_revoked_key_left(srv: Any, where: str) -> None:
    from mltrail.ledger.keystore import load_signer

    valid, revoked = _log_keys(srv)
    for path in srv.keys.iterdir():
        try:
            key_id = load_signer(path).key_id
        except Exception:  # a file that is no key holds none
            continue
        assert key_id not in revoked, f"{where}: revoked key left in {path.name}"
    assert srv.log_signer("team-a").key_id in valid, where


@pytest.mark.parametrize("point", list(KILLS))
def test_a_server_rotation_killed_at_each_step_is_finished(
    srv: Any, point: str, tmp_path: Path
) -> None:
    """Before: killed after the store, the server loaded the revoked key
    (every write refused) and the next rotation refused the leftover
    ``.key.new``; killed after the old key was destroyed, there was no key
    file at all and the server did not start."""
    srv.stop()
    revoked = srv.log_signer("team-a").key_id
    extra = ("--move-old-key", str(tmp_path / "old.key")) if point == "moving" else ()
    killed = _rotate(srv, *extra, patch=KILLS[point])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    srv.start()
    _writes(srv, f"the kill {point}")
    if extra:  # moved where it was asked to go, not destroyed
        assert srv.log_signer("team-a").key_id != revoked
        assert _key_id(tmp_path / "old.key") == revoked, point
    if point == "before-store":  # nothing stored: the old key is still the key
        left = sorted(p.name for p in srv.keys.iterdir())
        assert left == [*CLEAN[:1], "team-a.key.new", CLEAN[1]], left
        refused = _rotate(srv)
        assert refused.returncode == 2
        assert "never added" in refused.stderr, refused.stderr
        (srv.keys / "team-a.key.new").unlink()
    else:
        assert sorted(p.name for p in srv.keys.iterdir()) == CLEAN, point
    _no_revoked_key_left(srv, point)
    again = _rotate(srv)
    assert again.returncode == 0, again.stderr
    _writes(srv, f"the rotation after {point}")
    assert sorted(p.name for p in srv.keys.iterdir()) == CLEAN
    _no_revoked_key_left(srv, f"after {point}")


@pytest.mark.parametrize("point", ["stored", "replaced", "destroying"])
def test_a_rotation_killed_before_its_move_moves_the_revoked_key(
    srv: Any, point: str, tmp_path: Path
) -> None:
    """``--move-old-key DEST`` killed after the store, after the new key was
    put in place, or after the copy to DEST (the old key's file not yet
    destroyed): the finishing step (here the server's start) moves the revoked
    key to DEST, as asked. Before: the destination was not remembered, and the
    finishing step destroyed the key the admin asked to keep."""
    srv.stop()
    revoked = srv.log_signer("team-a").key_id
    dest = tmp_path / "offline" / "old.key"
    killed = _rotate(srv, "--move-old-key", str(dest), patch=KILLS[point])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    srv.start()
    _writes(srv, f"the kill {point}")
    assert _key_id(dest) == revoked, point
    assert sorted(p.name for p in srv.keys.iterdir()) == CLEAN, point
    _no_revoked_key_left(srv, point)


def test_the_next_rotation_finishes_one_killed_after_the_store(srv: Any) -> None:
    """No server start in between: the next ``keys rotate`` finishes the
    stored rotation's files first, then rotates."""
    srv.stop()
    killed = _rotate(srv, patch=KILLS["stored"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = _rotate(srv)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in srv.keys.iterdir()) == CLEAN
    srv.start()
    _writes(srv, "two rotations")
    _no_revoked_key_left(srv, "two rotations")


def test_a_running_server_writes_after_a_rotation_killed_after_the_store(
    srv: Any,
) -> None:
    """The server keeps running: its next write takes up the stored new key
    (it refused every write with the revoked one before)."""
    _writes(srv, "before")
    killed = _rotate(srv, patch=KILLS["stored"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    _writes(srv, "a kill under a running server")
    _writes(srv, "the write after that")
    assert sorted(p.name for p in srv.keys.iterdir()) == CLEAN
    _no_revoked_key_left(srv, "running server")


def test_an_older_rotation_killed_with_no_key_file_is_taken_up(srv: Any) -> None:
    """An older mltrail destroyed the old key before renaming the new one: a
    kill between left no ``team-a.key``, and the server did not start."""
    srv.stop()
    killed = _rotate(srv, patch=KILLS["stored"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (srv.keys / "team-a.key").unlink()
    srv.start()
    _writes(srv, "no key file")
    assert sorted(p.name for p in srv.keys.iterdir()) == CLEAN
    _no_revoked_key_left(srv, "no key file")


def test_a_new_key_the_ledger_never_added_is_not_taken_up(srv: Any) -> None:
    """A ``.key.new`` beside the key file whose key no rotation added (a
    rotation killed before its store, or a file put there) is never loaded:
    the server signs with the key file's key, and the file stays."""
    from mltrail.ledger.keystore import generate_signer, save_signer

    before = srv.log_signer("team-a").key_id
    srv.stop()
    save_signer(generate_signer(), srv.keys / "team-a.key.new")
    srv.start()
    _writes(srv, "a stray new key")
    assert srv.log_signer("team-a").key_id == before
    assert (srv.keys / "team-a.key.new").exists()


RANDOM_KILLS = 6


def test_rotations_killed_at_random_moments_under_a_running_server(
    srv: Any,
) -> None:
    """Kills at random delays (the child's start-up included) while the server
    keeps running: after each, the server writes and every key left in the
    folder is the ledger's valid key or a ``.new`` it never added (which the
    admin deletes, as the refusal says)."""
    import random
    import time

    from mltrail.ledger.keystore import load_signer

    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    script = "import sys\nfrom mltrail.cli.main import main\nmain(sys.argv[1:])\n"
    for kill in range(RANDOM_KILLS):
        where = f"kill {kill} (seed {seed})"
        proc = subprocess.Popen(
            [sys.executable, "-c", script, "keys", "rotate", "--db", srv.owner_url,
             "--ledger", "team-a", "--keys", str(srv.keys)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
        )  # fmt: skip
        time.sleep(rng.uniform(0.3, 2.0))
        proc.kill()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), f"{where}: {err.decode()}"
        _writes(srv, where)
        new = srv.keys / "team-a.key.new"
        if new.exists():  # killed before the store: a key no record names
            valid, revoked = _log_keys(srv)
            try:
                key_id = load_signer(new).key_id
            except Exception:  # killed while it was written
                key_id = None
            assert key_id not in valid | revoked, where
            new.unlink()
        _no_revoked_key_left(srv, where)
    again = _rotate(srv)
    assert again.returncode == 0, again.stderr
    _writes(srv, "the last rotation")
    assert sorted(p.name for p in srv.keys.iterdir()) == CLEAN


def test_each_step_is_synced_and_the_key_file_always_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new key's rename over the key file is synced (the folder) before
    the old key is destroyed, and the key file's name is never removed. Before:
    the old key file was deleted, then the new one renamed in with no sync of
    the folder (a power loss could keep the deletion and lose the rename)."""
    from mltrail.server.control import init_ledger, rotate_log_key

    keys = tmp_path / "keys"
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, os.unlink

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kw: Any) -> None:
        events.append(("replace", os.path.basename(dst)))
        real_replace(src, dst, **kw)

    def unlink(path: Any, **kw: Any) -> None:
        events.append(("unlink", os.path.basename(path)))
        real_unlink(path, **kw)

    with throwaway_database() as url:
        init_ledger(url, "team-a", "test.example/team-a", keys, role=None)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "unlink", unlink)
        rotate_log_key(url, "team-a", keys)
    assert ("unlink", "team-a.key") not in events, events
    swapped = events.index(("replace", "team-a.key"))
    after = events[swapped + 1 :]
    assert ("fsync", str(keys.resolve())) in after, events
    assert after.index(("fsync", str(keys.resolve()))) < after.index(
        ("unlink", "team-a.key.old")
    ), events
    assert sorted(p.name for p in keys.iterdir()) == ["team-a.key"]


def test_a_refused_rotation_leaves_no_new_key(tmp_path: Path) -> None:
    """A rotation the ledger refuses (here: the key file holds a key the
    ledger never added) deletes the new key it wrote; it stayed as
    ``.key.new`` and blocked every later rotation."""
    from mltrail.errors import MltrailError
    from mltrail.ledger.keystore import generate_signer, save_signer
    from mltrail.server.control import init_ledger, rotate_log_key

    keys = tmp_path / "keys"
    with throwaway_database() as url:
        init_ledger(url, "team-a", "test.example/team-a", keys, role=None)
        (keys / "team-a.key").unlink()
        stranger = generate_signer()
        save_signer(stranger, keys / "team-a.key")
        with pytest.raises(MltrailError):
            rotate_log_key(url, "team-a", keys)
    assert sorted(p.name for p in keys.iterdir()) == ["team-a.key"]


def test_an_old_key_name_linked_to_the_key_file_moves_the_revoked_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``.key.old`` that is a symbolic link to ``team-a.key``, put there by
    whoever can write the key folder while a rotation runs, is not a second
    name of the old key. Before: it passed for one (the link was followed), no
    second name was made, the new key was renamed over the key file, and
    ``--move-old-key`` copied the NEW key (valid, the one the server signs
    with) out of the key folder as the revoked one; the revoked key was lost."""
    from mltrail.ledger.keystore import load_signer
    from mltrail.server import log_key
    from mltrail.server.control import init_ledger, rotate_log_key

    keys = tmp_path / "keys"
    moved = tmp_path / "offline" / "old.key"
    real = log_key.finish_rotation

    def finish(folder: Path, name: str, *args: Any, **kwargs: Any) -> list[str]:
        done = real(folder, name, *args, **kwargs)
        os.symlink(f"{name}.key", folder / f"{name}.key.old")
        return done

    with throwaway_database() as url:
        init_ledger(url, "team-a", "test.example/team-a", keys, role=None)
        old = load_signer(keys / "team-a.key").key_id
        monkeypatch.setattr(log_key, "finish_rotation", finish)
        result = rotate_log_key(url, "team-a", keys, move_old_key_to=moved)
    assert result["revoked"] == old
    assert load_signer(moved).key_id == old
    assert load_signer(keys / "team-a.key").key_id == result["added"]
    assert sorted(p.name for p in keys.iterdir()) == ["team-a.key"]


def test_the_revoked_key_is_overwritten_past_an_old_key_name_linked_to_the_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotation stored but not put in place, then a ``.key.old`` symbolic
    link to ``team-a.key``: the next command finishes the rotation and the
    revoked key's file is overwritten. Before: the link passed for a second
    name, the new key was renamed over the old one's only name and the link
    removed: the revoked key's bytes were left as they were."""
    from mltrail.ledger.keystore import load_signer
    from mltrail.server import log_key
    from mltrail.server.control import init_ledger, rotate_log_key

    class KilledError(Exception):
        pass

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KilledError

    keys = tmp_path / "keys"
    with throwaway_database() as url:
        init_ledger(url, "team-a", "test.example/team-a", keys, role=None)
        old = load_signer(keys / "team-a.key").key_id
        with monkeypatch.context() as patch:
            patch.setattr(log_key, "swap_in_new_key", killed)
            with pytest.raises(KilledError):
                rotate_log_key(url, "team-a", keys)
        os.symlink("team-a.key", keys / "team-a.key.old")
        fd = os.open(keys / "team-a.key", os.O_RDONLY)
        try:
            result = rotate_log_key(url, "team-a", keys)
            left = os.pread(fd, 4096, 0)
        finally:
            os.close(fd)
    assert result["finished"], result
    assert left.strip(b"\0") == b"", "the revoked key's bytes were left"
    assert load_signer(keys / "team-a.key").key_id not in (old, result["revoked"])
    assert sorted(p.name for p in keys.iterdir()) == ["team-a.key"]


def test_a_key_file_linked_to_its_old_name_is_not_destroyed(tmp_path: Path) -> None:
    """``team-a.key`` a symbolic link to ``team-a.key.old``, the only file of
    the valid log key (renamed there by whoever can write the key folder):
    finishing a rotation must not take ``.old`` for a second name of the key
    file. Before: the link was followed, ``.old`` passed for one and was
    overwritten and deleted: the ledger's only valid log key was gone."""
    from mltrail.ledger.keystore import load_signer
    from mltrail.server.control import _served_ledger, _served_row, init_ledger
    from mltrail.server.log_key import finish_rotation

    keys = tmp_path / "keys"
    key, old = keys / "team-a.key", keys / "team-a.key.old"
    with throwaway_database() as url:
        init_ledger(url, "team-a", "test.example/team-a", keys, role=None)
        key.rename(old)
        key.symlink_to(old.name)
        with _served_ledger(url, _served_row(url, "team-a"), None) as served:
            finish_rotation(keys, "team-a", served, None)
            valid = served.keys().valid_keys(served.head().size)
    assert old.exists(), "the only valid log key was destroyed"
    assert load_signer(old).key_id in valid


def test_a_rotation_stops_before_the_store_when_a_valid_key_is_in_the_old_name(
    tmp_path: Path,
) -> None:
    """``team-a.key`` a link to ``team-a.key.old``, the valid key's only file:
    finishing leaves ``.old`` in place (it holds a key valid now), and a rotation
    must refuse before it stores anything. Before: the rotation was stored, then
    stopped at ``.old`` ("in the way"), its new key left as ``.key.new``."""
    from mltrail.errors import ConfigError
    from mltrail.ledger.keystore import load_signer
    from mltrail.server.control import (
        _served_ledger,
        _served_row,
        init_ledger,
        rotate_log_key,
    )

    keys = tmp_path / "keys"
    key, old = keys / "team-a.key", keys / "team-a.key.old"
    with throwaway_database() as url:
        init_ledger(url, "team-a", "test.example/team-a", keys, role=None)
        key_id = load_signer(key).key_id
        key.rename(old)
        key.symlink_to(old.name)
        with pytest.raises(ConfigError, match="before anything is stored"):
            rotate_log_key(url, "team-a", keys, reason="test")
        with _served_ledger(url, _served_row(url, "team-a"), None) as served:
            ring = served.keys()
            size = served.head().size
    assert list(ring.valid_keys(size)) == [key_id], "a rotation was stored"
    assert not (keys / "team-a.key.new").exists()
    assert load_signer(old).key_id == key_id


def test_a_copy_of_the_revoked_key_cut_short_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash (power loss) during the move's copy can leave DEST holding the
    first bytes of the revoked key only (never synced); the rotation's
    ``.key.old`` still holds it all. The next command makes the copy again,
    then destroys ``.key.old``: DEST holds the whole key."""
    from mltrail.ledger.keystore import load_signer
    from mltrail.server import log_key
    from mltrail.server.control import init_ledger, rotate_log_key

    class KilledError(Exception):
        pass

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KilledError

    keys, dest = tmp_path / "keys", tmp_path / "offline" / "old.key"
    with throwaway_database() as url:
        init_ledger(url, "team-a", "test.example/team-a", keys, role=None)
        revoked = load_signer(keys / "team-a.key").key_id
        with monkeypatch.context() as patch:
            patch.setattr(log_key, "dispose_revoked_key", killed)
            with pytest.raises(KilledError):
                rotate_log_key(url, "team-a", keys, move_old_key_to=dest)
        dest.parent.mkdir()
        dest.write_bytes((keys / "team-a.key.old").read_bytes()[:20])
        result = rotate_log_key(url, "team-a", keys)
    assert any("moved team-a.key.old" in line for line in result["finished"]), result
    assert load_signer(dest).key_id == revoked
    assert sorted(p.name for p in keys.iterdir()) == ["team-a.key"]


@pytest.mark.parametrize("whose", ["writable-by-others", "another-users"])
def test_a_move_to_file_a_rotation_did_not_write_moves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, whose: str
) -> None:
    """Whoever can write the key folder could put their own ``NAME.key.move-to``
    in place of the rotation's: the server then deleted a file of theirs
    choosing (any empty file is "a copy cut short") and wrote the revoked key
    where they said. Only the rotation's own file (this user's, mode 0600)
    names a destination; another is refused and the revoked key left."""
    from mltrail.errors import ConfigError
    from mltrail.server import log_key
    from mltrail.server.control import init_ledger, rotate_log_key

    if whose == "another-users" and os.geteuid() != 0:
        pytest.skip("making a file of another user needs root")

    class KilledError(Exception):
        pass

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KilledError

    keys, victim = tmp_path / "keys", tmp_path / "elsewhere" / "empty.lock"
    victim.parent.mkdir()
    victim.write_bytes(b"")
    with throwaway_database() as url:
        init_ledger(url, "team-a", "test.example/team-a", keys, role=None)
        with monkeypatch.context() as patch:
            patch.setattr(log_key, "dispose_revoked_key", killed)
            with pytest.raises(KilledError):
                rotate_log_key(url, "team-a", keys)
        planted = tmp_path / "planted"
        planted.write_bytes(os.fsencode(victim) + b"\n")
        if whose == "another-users":
            os.chown(planted, 65534, 65534)
        else:
            planted.chmod(0o666)
        planted.rename(keys / "team-a.key.move-to")
        with pytest.raises(ConfigError, match=r"team-a\.key\.move-to"):
            rotate_log_key(url, "team-a", keys)
    assert victim.read_bytes() == b""
    assert (keys / "team-a.key.old").is_file()
