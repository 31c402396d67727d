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
