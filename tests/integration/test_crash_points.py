"""Crash consistency of each operation that writes a home, with real SIGKILLs.

Each test runs the operation in a loop in a child process (or as the CLI) and
kills it with SIGKILL after a random short delay, a bounded number of times.
After every kill the home must verify (errors none; only the warnings a crash
is documented to leave), everything the child acknowledged (printed after the
call returned) must be there, and the next write must work. A few kills are
placed at one exact point by replacing a function in the child with a SIGKILL
of itself, where random delays would rarely land.

The seed of each test is printed in its failure messages; the number of kills
is fixed, so a test's cost is bounded (each is a few seconds on two cores).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mltrail.ledger.home import Home, init_home, open_home

ORIGIN = "example.org/crash-points"

# What a crash may leave, by design: a purge recorded but not yet erased
# (ADR 0014), purged blobs, and the warning that every anchor is in the home.
CRASH_WARNINGS = {"anchors", "blob-purged", "purge-pending", "witness"}


def _env(home_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    env["MLTRAIL_HOME"] = str(home_dir)
    return env


def _spawn(
    home_dir: Path, argv: list[str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """``argv`` under Python, in a session of its own, its output unbuffered."""
    return subprocess.Popen(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(home_dir),
        cwd=cwd,
        bufsize=0,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen[bytes], delay: float) -> tuple[list[str], str]:
    """SIGKILL ``proc`` after ``delay`` s, then its group; (complete lines, stderr)."""
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=60)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # what it started (a wrapped command)
    text = stdout.decode()
    lines = [line for line in text.splitlines(keepends=True) if line.endswith("\n")]
    return [line.rstrip("\n") for line in lines], stderr.decode(errors="replace")


def _ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line == "ready\n", f"child did not start: {line!r}"


def _verified(home_dir: Path, where: str, **kwargs: object) -> set[str]:
    """Verify the home read-only; no error allowed; the warning codes."""
    home = open_home(home_dir, writable=False, env={})
    try:
        report = home.verify(**kwargs)  # type: ignore[arg-type]
    finally:
        home.close()
    errors = [str(p) for p in report.problems if p.severity.value == "error"]
    assert not errors, f"{where}: {errors}"
    assert report.ok, f"{where}: {report.problems}"
    warnings = {p.code for p in report.problems}
    assert warnings <= CRASH_WARNINGS, f"{where}: {report.problems}"
    return warnings


def _append_works(home_dir: Path, where: str) -> int:
    home = open_home(home_dir, env={})
    try:
        return home.ledger.append("note", {"text": f"after {where}"}).seq
    finally:
        home.close()


def _open(home_dir: Path) -> Home:
    return open_home(home_dir, writable=False, env={})


@pytest.fixture
def home_dir(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    init_home(path, origin=ORIGIN, env={})
    return path


# -- keys rotate -----------------------------------------------------------------

ROTATOR = r"""
import os, sys
from mltrail.ledger.home import open_home
from mltrail.ledger.rotation import rotate_home_key
home = open_home(os.environ["MLTRAIL_HOME"], env={})
sys.stdout.write("ready\n")
while True:
    done = rotate_home_key(home, reason="crash test")
    sys.stdout.write(done.added + "\n")
"""

ROTATE_KILLS = 20


def test_a_rotation_killed_at_random_moments_leaves_a_writable_home(
    home_dir: Path,
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    for kill in range(ROTATE_KILLS):
        where = f"kill {kill} (seed {seed})"
        proc = _spawn(home_dir, ["-c", ROTATOR])
        _ready(proc)
        added, _ = _kill(proc, rng.uniform(0, 0.15))
        _verified(home_dir, where)
        home = _open(home_dir)
        try:
            ring = home.ledger.keys()
        finally:
            home.close()
        for key_id in added:  # every rotation that returned is in the ledger
            assert key_id in ring.keys, f"{where}: rotation to {key_id} lost"
        _append_works(home_dir, where)


def test_a_rotation_killed_before_ledger_json_names_the_new_key(
    home_dir: Path,
) -> None:
    """Killed after ``key.added``/``key.revoked`` were stored, before ledger.json
    was rewritten: ledger.json named the revoked key and every append, run and
    rotation was refused ("would be signed by key ... after it was revoked")."""
    script = (
        "import os, signal, sys\n"
        "from mltrail.config import Settings\n"
        "Settings.save = lambda self, home: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from mltrail.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    old = json.loads((home_dir / "ledger.json").read_text())["signing_key"]
    proc = _spawn(home_dir, ["-c", script, "keys", "rotate", "--reason", "yearly"])
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((home_dir / "ledger.json").read_text())["signing_key"] == old
    _verified(home_dir, "after the kill")

    seq = _append_works(home_dir, "after the kill")
    home = _open(home_dir)
    try:
        record = home.ledger.record(seq)
        ring = home.ledger.keys()
    finally:
        home.close()
    assert record.entry.sig is not None
    assert ring.valid_at(record.entry.sig.key, seq)
    settings = json.loads((home_dir / "ledger.json").read_text())
    assert settings["signing_key"] == f"keys/{record.entry.sig.key}.key"
    _verified(home_dir, "after the next append")
    rotated = subprocess.run(
        [sys.executable, "-m", "mltrail", "keys", "rotate", "--reason", "again"],
        capture_output=True, text=True, env=_env(home_dir), timeout=120, check=False,
    )  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    assert not (home_dir / old).exists()  # the next rotation swept the revoked key


def test_a_forged_revocation_beside_a_key_file_is_no_rotation(
    home_dir: Path, tmp_path: Path
) -> None:
    """A writable open took up any other log key when the key ring revoked the
    key ledger.json names and exactly one valid log key had its file under
    keys/: a ledger swapped in that revokes the home's key (signed by the
    forger's own key), plus ``keys/<forger>.key``, made the home sign with the
    forger's key after only a warning. Only the records a rotation writes (the
    new key added by the named key, the named key revoked in its favour) are
    taken up now; anything else is refused as before."""
    from mltrail.core.codec import format_time
    from mltrail.core.entry import Entry, sign_entry
    from mltrail.core.signing import encode_b64

    home = open_home(home_dir, env={})
    try:
        assert home.ledger.signer is not None
        victim = home.ledger.signer.key_id
        victim_public = home.ledger.signer.public_key
    finally:
        home.close()
    forged_dir = tmp_path / "forged"
    init_home(forged_dir, origin=ORIGIN, env={})
    forged = open_home(forged_dir, env={})
    try:
        forger = forged.ledger.signer
        assert forger is not None
        now = format_time(forged.ledger.clock.now())
        actor = {"user": "mallory"}
        added = Entry(
            "key.added",
            now,
            actor,
            {
                "alg": "ed25519",
                "key": victim,
                "public_key": encode_b64(victim_public),
                "reason": "imported",
            },
        )
        revoked = Entry(
            "key.revoked",
            now,
            actor,
            {"key": victim, "reason": "compromised", "replaced_by": forger.key_id},
        )
        forged.ledger._append_signed(
            [sign_entry(added, forger), sign_entry(revoked, forger)]
        )
    finally:
        forged.close()
    forged_key = f"keys/{forger.key_id}.key"
    for name in ("ledger.db", forged_key):
        (home_dir / name).write_bytes((forged_dir / name).read_bytes())
    (home_dir / forged_key).chmod(0o600)
    for name in ("ledger.db-wal", "ledger.db-shm"):
        (home_dir / name).unlink(missing_ok=True)
    settings = json.loads((home_dir / "ledger.json").read_text())
    witness = settings.get("witness")
    if witness and (forged_dir / witness).exists():  # the forger rewrites it too
        (home_dir / witness).write_bytes((forged_dir / witness).read_bytes())

    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "append", "--kind", "note",
         "--body", '{"text": "signed by whom?"}'],
        capture_output=True, text=True, env=_env(home_dir), timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    assert "revoked" in proc.stderr
    assert json.loads((home_dir / "ledger.json").read_text()) == settings
    home = open_home(home_dir, writable=False, env={})
    try:
        assert home.ledger.head().size == 3, "nothing was appended"
    finally:
        home.close()


def test_a_run_open_across_an_interrupted_rotation_records_its_end(
    home_dir: Path,
) -> None:
    """A long run's end, signed by the key it opened with, is retried with the
    key ledger.json names (ADR 0020); a rotation killed before naming it must
    not lose that end."""
    home = open_home(home_dir, env={})
    try:
        home.ledger.append("note", {"text": "before"})
        script = (
            "import os, signal, sys\n"
            "from mltrail.config import Settings\n"
            "Settings.save = lambda self, h: os.kill(os.getpid(), signal.SIGKILL)\n"
            "from mltrail.ledger.home import open_home\n"
            "from mltrail.ledger.rotation import rotate_home_key\n"
            "rotate_home_key(open_home(os.environ['MLTRAIL_HOME'], env={}), "
            "reason='x')\n"
        )
        proc = _spawn(home_dir, ["-c", script])
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        from mltrail.ledger.persist import write_durably

        record = write_durably(
            home, lambda: home.ledger.append("note", {"text": "the run's end"})
        )
    finally:
        home.close()
    assert record.entry.body["text"] == "the run's end"
    _verified(home_dir, "after the end")


# -- export, report and manifest outputs ------------------------------------------

# The kernel kills the child (SIGXFSZ, default action) at its first write past
# LIMIT bytes of any file: a real kill in the middle of writing the output. The
# limit is set once the CLI is imported (no byte-code is written meanwhile) and
# lies above SQLite's 32 KiB shared-memory file of the ledger.
WRITE_LIMIT = 100_000
KILLED_MID_WRITE = (
    "import resource, signal, sys\n"
    "from mltrail.cli.main import main\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n"
    f"resource.setrlimit(resource.RLIMIT_FSIZE, ({WRITE_LIMIT}, {WRITE_LIMIT}))\n"
    "main(sys.argv[1:])\n"
)
# The same limit with SIGXFSZ ignored (Python's default): the write fails with
# EFBIG, as on a full disk, and the command exits 2.
FAILED_MID_WRITE = KILLED_MID_WRITE.replace("signal.SIG_DFL", "signal.SIG_IGN")


def _cli(home_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**_env(home_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def big_outputs(home_dir: Path, tmp_path: Path) -> tuple[Path, list[list[str]]]:
    """A project folder, and commands that write an output of several times
    ``WRITE_LIMIT`` bytes to the file named last."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    for n in range(3000):  # a manifest of about 3000 lines of 130 bytes
        (project / "data" / f"part-{n:05}.csv").write_text(f"{n}\n")
    printed = "import os; print(os.urandom(150_000).hex())"  # a 300 kB stdout blob
    done = _cli(home_dir, "run", "--name", "big", "--", sys.executable, "-c", printed,
                cwd=project)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return project, [
        ["export", "big", "-o"],
        ["data", "hash", "data", "--manifest"],
    ]


@pytest.mark.parametrize("mode", ["killed", "disk full"])
def test_an_output_cut_mid_write_is_never_left_under_its_name(
    home_dir: Path, big_outputs: tuple[Path, list[list[str]]], mode: str
) -> None:
    """``export -o`` and ``data hash --manifest`` wrote the file in place: killed
    (or out of space) mid-write, they left its first 100,000 bytes under the
    final name, a truncated bundle or manifest that looks like the real one."""
    project, commands = big_outputs
    script = KILLED_MID_WRITE if mode == "killed" else FAILED_MID_WRITE
    for command in commands:
        whole = _cli(home_dir, *command, "whole.out", cwd=project)
        assert whole.returncode == 0, whole.stderr
        expected = (project / "whole.out").read_bytes()
        assert len(expected) > 2 * WRITE_LIMIT
        # a new file, and a file already there (replaced only by a whole one)
        (project / "old.out").write_bytes(b"the previous output\n")
        for name in ("new.out", "old.out"):
            cut = subprocess.run(
                [sys.executable, "-c", script, *command, name], capture_output=True,
                text=True, env=_env(home_dir), cwd=project, timeout=120, check=False,
            )  # fmt: skip
            wanted = -signal.SIGXFSZ if mode == "killed" else 2
            assert cut.returncode == wanted, (command, cut.stderr)
            left = project / name
            if name == "new.out":
                assert not left.exists(), (command, left.stat().st_size)
            else:
                assert left.read_bytes() == b"the previous output\n", command
        (project / "whole.out").unlink()


# -- append and append_many, with the witness outside the home, and PostgreSQL ---

APPENDER = r"""
import os, sys, time
from mltrail.ledger.home import open_home
from mltrail.ledger.ledger import Draft
home = open_home(os.environ["MLTRAIL_HOME"])
out = sys.stdout
out.write("ready\n")
i = 0
while True:
    if i % 2:
        records = home.ledger.append_many(
            [Draft("note", {"text": f"{i}-{j}"}) for j in range(i % 7 + 1)]
        )
    else:
        records = [home.ledger.append("note", {"text": f"{i}-0"})]
    out.write("".join(f"{r.seq} {r.entry.body['text']}\n" for r in records))
    if i % 5 == 4:
        home.checkpoint()  # moves the witness
    i += 1
    if i == 40:
        time.sleep(60)  # bounds the ledger's growth (and verify's cost); killed
"""

APPEND_KILLS = 20


def _kill_appenders(home_dir: Path, env: dict[str, str], kills: int) -> int:
    """Kill an appending child ``kills`` times; check after each; how many acked."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    acknowledged: dict[int, str] = {}
    for kill in range(kills):
        where = f"kill {kill} (seed {seed})"
        proc = subprocess.Popen(
            [sys.executable, "-c", APPENDER], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, bufsize=0, start_new_session=True,
        )  # fmt: skip
        _ready(proc)
        lines, stderr = _kill(proc, rng.uniform(0, 0.25))
        assert proc.returncode == -signal.SIGKILL, f"{where}: {stderr}"
        for line in lines:
            seq, text = line.split()
            acknowledged[int(seq)] = text
        home = open_home(home_dir, writable=False, env=env)
        try:
            report = home.verify()
            stored = {r.seq: r.entry.body.get("text") for r in home.ledger.records()}
        finally:
            home.close()
        assert report.ok, f"{where}: {[str(p) for p in report.problems]}"
        assert {p.code for p in report.problems} <= CRASH_WARNINGS, where
        assert sorted(stored) == list(range(len(stored))), f"{where}: a gap"
        for seq, text in acknowledged.items():
            assert stored.get(seq) == text, f"{where}: seq {seq} lost or changed"
        # every batch is whole: its records are all there, or none
        batches: dict[str, list[int]] = {}
        for seq, text in stored.items():
            if text and text.endswith("-0"):
                batches[text[:-2]] = [seq]
            elif text and "-" in text:
                batches[text.rsplit("-", 1)[0]].append(seq)
        for number, seqs in batches.items():
            n = int(number)
            want = i if (i := n % 7 + 1) and n % 2 else 1
            assert len(seqs) == want, f"{where}: batch {number} cut: {seqs}"
    home = open_home(home_dir, env=env)
    try:
        home.ledger.append("note", {"text": "the next append"})
        assert home.verify().ok
    finally:
        home.close()
    return len(acknowledged)


@pytest.mark.slow
def test_appends_and_batches_killed_with_an_outside_witness(tmp_path: Path) -> None:
    witness = tmp_path / "elsewhere" / "witness"
    env = {**_env(tmp_path / "home"), "MLTRAIL_WITNESS": str(witness)}
    init_home(tmp_path / "home", origin=ORIGIN, env=env)
    assert _kill_appenders(tmp_path / "home", env, APPEND_KILLS) > 0
    assert witness.exists()


@pytest.mark.slow
def test_appends_and_batches_killed_on_postgresql(tmp_path: Path) -> None:
    from optional_extras import require_extra
    from postgres_db import throwaway_database

    require_extra("postgres", "psycopg")
    with throwaway_database() as url:
        env = _env(tmp_path / "home")
        init_home(tmp_path / "home", origin=ORIGIN, env=env, store=url)
        assert _kill_appenders(tmp_path / "home", env, APPEND_KILLS) > 0


# -- mltrail run ---------------------------------------------------------------------

RUN_KILLS = 20


def _runs_agree_with_records(home_dir: Path, where: str) -> dict[str, str]:
    """``runs --json`` and ``show --json`` against the run records; run -> status."""
    home = _open(home_dir)
    try:
        ended = {
            r.entry.run: r.entry.body["status"]
            for r in home.ledger.records_of_kinds(["run.ended"])
        }
        started = {r.entry.run for r in home.ledger.records_of_kinds(["run.started"])}
    finally:
        home.close()
    listed = subprocess.run(
        [sys.executable, "-m", "mltrail", "runs", "-n", "0", "--json"],
        capture_output=True, text=True, env=_env(home_dir), timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, f"{where}: {listed.stderr}"
    statuses = {run["id"]: run["status"] for run in json.loads(listed.stdout)}
    assert set(statuses) == started, f"{where}: runs lists other runs than started"
    for run_id, status in statuses.items():
        if run_id in ended:
            assert status == ended[run_id], f"{where}: {run_id} {status}"
        else:  # its recorder was killed: never shown as ended
            assert status in ("running", "stale"), f"{where}: {run_id} {status}"
    return statuses


@pytest.mark.slow
def test_mltrail_run_killed_at_random_moments(home_dir: Path, tmp_path: Path) -> None:
    """The recorder is killed before, during and after the wrapped command (and
    before or after ``run.ended``); the next run closes a killed run as aborted."""
    project = tmp_path / "project"
    project.mkdir()
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    command = [sys.executable, "-c", "import time; time.sleep(0.3)"]
    acknowledged = []
    for kill in range(RUN_KILLS):
        where = f"kill {kill} (seed {seed})"
        proc = _spawn(home_dir, ["-m", "mltrail", "run", "-q", "--", *command], project)
        _, stderr = _kill(proc, rng.uniform(0.2, 1.6))
        if proc.returncode == 0:  # it finished: its end must be recorded
            acknowledged.append(stderr)
        else:
            assert proc.returncode == -signal.SIGKILL, f"{where}: {stderr}"
        _verified(home_dir, where)
    statuses = _runs_agree_with_records(home_dir, "after the kills")
    # the next run closes every run whose recorder died, as aborted
    done = subprocess.run(
        [sys.executable, "-m", "mltrail", "run", "-q", "--", *command], cwd=project,
        capture_output=True, text=True, env=_env(home_dir), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _verified(home_dir, "after the next run")
    after = _runs_agree_with_records(home_dir, "after the next run")
    assert len(after) == len(statuses) + 1
    for run_id, status in statuses.items():
        assert after[run_id] == ("aborted" if status == "stale" else status), run_id
    assert sum(s == "succeeded" for s in after.values()) >= len(acknowledged) + 1


# -- blob put and purge --------------------------------------------------------------

PURGER = r"""
import os, sys
from mltrail.ledger.home import open_home
home = open_home(os.environ["MLTRAIL_HOME"], env={})
sys.stdout.write("ready\n")
for i in range(int(sys.argv[1])):
    ref = home.ledger.put_blob(os.urandom(64) + b"x" * 20_000)
    home.ledger.append("note", {"text": f"n{i}", "attachments": [ref]})
    home.purge_blob(ref["blob"], reason="crash test")
    sys.stdout.write(ref["blob"] + "\n")
"""

PURGE_KILLS = 20


@pytest.mark.slow
def test_blob_puts_and_purges_killed_at_random_moments(home_dir: Path) -> None:
    """A purge killed between its record and the erasure is ``purge-pending``
    (ADR 0014) and finished by the next writable open; nothing else is left."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    purged: list[str] = []
    pending_seen = 0
    for kill in range(PURGE_KILLS):
        where = f"kill {kill} (seed {seed})"
        proc = _spawn(home_dir, ["-c", PURGER, "12"])
        _ready(proc)
        lines, _ = _kill(proc, rng.uniform(0, 0.4))
        purged += lines
        warnings = _verified(home_dir, where)
        pending_seen += "purge-pending" in warnings
        _append_works(home_dir, where)  # finishes an interrupted purge first
        assert "purge-pending" not in _verified(home_dir, where), where
    home = _open(home_dir)
    try:
        report = home.verify()
        notes = list(home.ledger.records_of_kinds(["note"]))
        gone = {p.digest for p in report.purged}
    finally:
        home.close()
    assert set(purged) <= gone  # every purge that returned is recorded and erased
    for note in notes:  # a blob put is there, or purged by a signed record
        for ref in note.entry.body.get("attachments", []):
            assert ref["blob"] in gone or _blob_there(home_dir, ref["blob"])


def _blob_there(home_dir: Path, digest: str) -> bool:
    home = _open(home_dir)
    try:
        return home.ledger.store.get_blob(digest) is not None
    finally:
        home.close()


# -- the derived index -----------------------------------------------------------------

INDEXER = r"""
import os, sys
from mltrail.index import open_index
from mltrail.ledger.home import open_home
home = open_home(os.environ["MLTRAIL_HOME"], env={})
sys.stdout.write("ready\n")
for i in range(40):
    for j in range(3):
        home.ledger.append("note", {"text": f"n{i}-{j}"})
    index = open_index(home)
    if i % 3 == 2:
        index.rebuild()
    index.close()
"""

INDEX_KILLS = 20


@pytest.mark.slow
def test_index_catch_up_and_rebuild_killed_at_random_moments(
    home_dir: Path, tmp_path: Path
) -> None:
    from mltrail.index import open_index
    from mltrail.index.check import index_differences

    project = tmp_path / "project"
    project.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "mltrail", "run", "-q", "--", "true"], cwd=project,
        capture_output=True, text=True, env=_env(home_dir), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    for kill in range(INDEX_KILLS):
        where = f"kill {kill} (seed {seed})"
        proc = _spawn(home_dir, ["-c", INDEXER])
        _ready(proc)
        _kill(proc, rng.uniform(0, 0.5))
        _verified(home_dir, where)
        home = open_home(home_dir, env={})
        try:
            index = open_index(home)  # catches up from where the kill left it
            try:
                assert index.last_seq == home.ledger.head().size - 1, where
                assert index_differences(index) == [], where
            finally:
                index.close()
        finally:
            home.close()
    _runs_agree_with_records(home_dir, "after the kills")


# -- the data hash cache -----------------------------------------------------------------

HASHER = r"""
import os, sys
from mltrail.cli.main import main
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    try:
        main(["data", "hash", sys.argv[1]])
    except SystemExit:
        pass
    sys.stdout.write("done\n")
    sys.stdout.flush()
"""

HASH_KILLS = 20


def test_data_hash_killed_at_random_moments_never_caches_a_wrong_hash(
    home_dir: Path, tmp_path: Path
) -> None:
    """Between kills some files change (same size, new bytes): every hash printed,
    before a kill or after, is the file's SHA-256 at that time."""
    import hashlib

    data = tmp_path / "data"
    data.mkdir()
    files = [data / f"f{n:03}.bin" for n in range(150)]
    for path in files:
        path.write_bytes(os.urandom(4096))
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)

    def check(lines: list[str], where: str) -> int:
        complete = 0
        for line in lines:
            if line == "done":
                complete += 1
                continue
            digest, name = line.split("  ", 1)
            real = hashlib.sha256(Path(name).read_bytes()).hexdigest()
            assert digest == real, f"{where}: {name} cached with a stale hash"
        return complete

    complete = 0
    for kill in range(HASH_KILLS):
        where = f"kill {kill} (seed {seed})"
        for path in rng.sample(files, 5):  # same size, new bytes, a new mtime
            path.write_bytes(os.urandom(4096))
        proc = _spawn(home_dir, ["-c", HASHER, str(data)])
        _ready(proc)
        lines, _ = _kill(proc, rng.uniform(0, 0.6))
        complete += check([ln for ln in lines if ln != "ready"], where)
    proc = _spawn(home_dir, ["-m", "mltrail", "data", "hash", str(data)])
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert check(stdout.decode().splitlines(), "after the kills") == 0
    assert len(stdout.decode().splitlines()) == len(files)
    assert complete > 0, "no hash finished between kills: they came too early"


# -- seal to a folder ------------------------------------------------------------------------

SEALER = r"""
import os, sys
from mltrail.ledger.home import open_home
from mltrail.cli.main import main
home = open_home(os.environ["MLTRAIL_HOME"], env={})
for i in range(15):
    home.ledger.append("note", {"text": f"n{i}"})
home.close()
sys.stdout.write("ready\n")
sys.stdout.flush()
main(["seal", "--to", sys.argv[1], "--retain", "7y"])
"""

SEAL_KILLS = 15


@pytest.mark.slow
def test_seals_to_a_folder_killed_at_random_moments(
    home_dir: Path, tmp_path: Path
) -> None:
    """A seal killed anywhere is finished by the next; the ledger verifies against
    whatever was sealed after every kill."""
    seals = tmp_path / "worm"
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)

    def verify_against_seals(where: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "mltrail", "verify", "--seals", str(seals), "--json"],
            capture_output=True, text=True, env=_env(home_dir), timeout=120,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{where}: {done.stdout[-2000:]} {done.stderr}"
        problems = json.loads(done.stdout)["problems"]
        errors = [p for p in problems if p["severity"] == "error"]
        assert errors == [], f"{where}: {errors}"

    for kill in range(SEAL_KILLS):
        where = f"kill {kill} (seed {seed})"
        proc = _spawn(home_dir, ["-c", SEALER, str(seals)])
        _ready(proc)
        _kill(proc, rng.uniform(0, 0.6))
        _verified(home_dir, where)
        if seals.exists():
            verify_against_seals(where)
    done = subprocess.run(
        [sys.executable, "-m", "mltrail", "seal", "--to", str(seals), "--retain", "7y"],
        capture_output=True, text=True, env=_env(home_dir), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    verify_against_seals("after the last seal")
    _append_works(home_dir, "after the last seal")


# -- export and report, killed at random -------------------------------------------------

EXPORTER = r"""
import sys
from mltrail.cli.main import main
sys.stdout.write("ready\n")
sys.stdout.flush()
while True:
    for args in (["export", "m", "-o", "b.json"], ["report", "model.bin", "-o", "r.md"]):
        try:
            main(args)
        except SystemExit:
            pass
"""

EXPORT_KILLS = 20


@pytest.mark.slow
def test_export_and_report_killed_at_random_moments(
    home_dir: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    made = "open('model.bin', 'wb').write(b'w' * 1000)"
    for args in (
        ["run", "-q", "--name", "m", "--output", "model.bin", "--",
         sys.executable, "-c", made],
        ["export", "m", "-o", "b.ref"],
        ["report", "model.bin", "--format", "md", "-o", "r.ref"],
    ):  # fmt: skip
        done = _cli(home_dir, *args, cwd=project)
        assert done.returncode == 0, done.stderr
    whole = {
        "b.json": (project / "b.ref").read_bytes(),
        "r.md": (project / "r.ref").read_bytes(),
    }
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    for kill in range(EXPORT_KILLS):
        for name in whole:
            (project / name).unlink(missing_ok=True)
        proc = _spawn(home_dir, ["-c", EXPORTER], project)
        _ready(proc)
        _kill(proc, rng.uniform(0, 1.2))
        for name, data in whole.items():
            left = project / name
            assert not left.exists() or left.read_bytes() == data, (kill, seed, name)
        _verified(home_dir, f"kill {kill} (seed {seed})")


def test_a_new_key_file_is_durable_before_the_rotation_is_stored(
    home_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new key's name must reach the disk (its folder synced) before the
    rotation is committed: after a power loss the ledger could otherwise hold a
    rotation whose only valid key is gone, and never be appended to again."""
    from mltrail.ledger import rotation

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the synced files")
    home = open_home(home_dir, env={})
    stored_at: list[int] = []
    rotate = home.ledger.rotate_key

    def rotate_key(*args: object, **kwargs: object) -> object:
        stored_at.append(len(synced))
        return rotate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(home.ledger, "rotate_key", rotate_key)
    try:
        done = rotation.rotate_home_key(home, reason="durable")
    finally:
        home.close()
    keys = str((home_dir / "keys").resolve())
    assert f"{keys}/{done.added}.key" in synced[: stored_at[0]]
    assert keys in synced[: stored_at[0]], synced


# -- verify while another process appends ------------------------------------------------


@pytest.mark.parametrize("when", ["before", "after"])
def test_verify_is_not_fooled_by_an_append_while_it_reads(
    home_dir: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Verify read the checkpoints, then walked every record: a batch committed
    in between (any writer, or a PostgreSQL commit finished after its client was
    killed) had records but no checkpoint in what verify read, and verify said
    TAMPERED (``uncovered``, exit 3). "before": a checkpoint newer than the head
    verify walks must not read as records cut from the end either."""
    reader = _open(home_dir)
    writer = open_home(home_dir, env={})
    try:
        writer.ledger.append("note", {"text": "first"})
        store = reader.ledger.store
        read = store.checkpoints

        def checkpoints_meanwhile() -> object:
            if when == "before":
                writer.ledger.append("note", {"text": "meanwhile"})
                return read()
            rows = read()
            writer.ledger.append("note", {"text": "meanwhile"})
            return rows

        monkeypatch.setattr(store, "checkpoints", checkpoints_meanwhile)
        report = reader.verify()  # a record is appended at each read of them
        monkeypatch.undo()
        assert report.ok, [str(p) for p in report.problems]
        again = reader.verify()
        assert again.ok, [str(p) for p in again.problems]
        assert again.size > report.size  # the next verify sees what was added
    finally:
        reader.close()
        writer.close()


WRITING = r"""
import os, sys, time
from mltrail.ledger.home import open_home
home = open_home(os.environ["MLTRAIL_HOME"], env={})
sys.stdout.write("ready\n")
for i in range(100_000):
    home.ledger.append("note", {"text": f"n{i}"})
    time.sleep(0.002)
"""


def test_verify_while_a_process_appends_says_intact(home_dir: Path) -> None:
    proc = _spawn(home_dir, ["-c", WRITING])
    try:
        _ready(proc)
        for attempt in range(8):
            _verified(home_dir, f"verify {attempt} while appending")
    finally:
        _kill(proc, 0)
    _verified(home_dir, "after the writer was killed")
