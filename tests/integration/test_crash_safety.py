"""Crash safety and concurrency of a real home, with real processes.

Writers are separate Python processes appending notes to one home and printing
each returned seq only after ``append`` returned (the append is durable by
then). They are SIGKILLed at random moments; every seq a writer printed must
then be in the ledger with the text it appended, and the ledger must verify.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mltrail.core.checkpoint import SignedCheckpoint, parse_signed_checkpoint
from mltrail.ledger.home import Home, init_home, open_home

ORIGIN = "example.org/crash-test"
ROUNDS = 25
MAX_KILL_DELAY = 0.3
MAX_PER_ROUND = 500  # keeps verification after each round cheap on fast machines

WRITER = r"""
import sys
import time
from mltrail.ledger.home import open_home

home_dir, tag = sys.argv[1], sys.argv[2]
limit, every, cap = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
home = open_home(home_dir, env={})
out = sys.stdout
out.write("ready\n")
out.flush()
i = 0
while limit == 0 or i < limit:
    text = f"{tag}-{i}"
    record = home.ledger.append("note", {"text": text, "refers_to": i})
    out.write(f"{record.seq} {text}\n")
    out.flush()
    i += 1
    if every and i % every == 0:
        home.checkpoint()
    if i == cap:
        time.sleep(60)  # bound the ledger's growth; wait to be killed
home.close()
out.write("done\n")
out.flush()
"""


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}


def _start(
    home_dir: Path, tag: str, *, limit: int = 0, every: int = 0, cap: int = 0
) -> subprocess.Popen[bytes]:
    args = [str(home_dir), tag, str(limit), str(every), str(cap)]
    return _spawn(WRITER, *args)


def _spawn(script: str, *args: str) -> subprocess.Popen[bytes]:
    """A Python process running ``script``, its output read unbuffered.

    ``_line`` and ``_output`` read the same pipe: a buffered reader's
    ``readline`` reads whatever the pipe holds, and ``communicate`` reads the
    pipe itself, not that buffer, so lines printed before the first was read
    (the writer is quick, the test late on a loaded machine) would be lost.
    """
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_child_env(),
        bufsize=0,
    )


def _line(proc: subprocess.Popen[bytes]) -> str:
    """The next line ``proc`` printed (one byte at a time: nothing read past it)."""
    assert proc.stdout is not None
    return proc.stdout.readline().decode()


def _output(proc: subprocess.Popen[bytes], timeout: float) -> tuple[str, str]:
    """Everything ``proc`` printed after the lines ``_line`` read, once it ended."""
    stdout, stderr = proc.communicate(timeout=timeout)
    return stdout.decode(), stderr.decode(errors="replace")


def _printed(stdout: str) -> list[tuple[int, str]]:
    """(seq, text) of every complete line a writer printed after an append."""
    out = []
    for line in stdout.splitlines(keepends=True):
        if not line.endswith("\n") or line in ("ready\n", "done\n"):
            continue  # a line cut by the kill was never acknowledged
        seq, text = line.split()
        out.append((int(seq), text))
    return out


def _open(home_dir: Path) -> Home:
    return open_home(home_dir, writable=False, env={})


def _stored_texts(home: Home) -> dict[int, str]:
    return {r.seq: r.entry.body.get("text", "") for r in home.ledger.records()}


@pytest.fixture
def home_dir(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    init_home(path, origin=ORIGIN, env={})
    return path


def test_writers_killed_at_random_moments_lose_nothing_acknowledged(
    home_dir: Path,
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    acknowledged: dict[int, str] = {}
    size = 1  # the genesis record
    for round_no in range(ROUNDS):
        where = f"round {round_no} (seed {seed})"
        every = rng.choice([0, 7, 25])
        proc = _start(home_dir, f"r{round_no}", every=every, cap=MAX_PER_ROUND)
        # Mostly kill while appending; now and then while still starting up.
        if rng.random() < 0.85:
            ready = _line(proc)
            assert ready == "ready\n", (
                f"{where}: writer did not start: {_output(proc, 30)[1]}"
            )
        time.sleep(rng.uniform(0, MAX_KILL_DELAY))
        proc.send_signal(signal.SIGKILL)
        stdout, stderr = _output(proc, 30)
        assert proc.returncode == -signal.SIGKILL, f"{where}: {stderr}"
        printed = _printed(stdout)
        seqs = [seq for seq, _ in printed]
        assert seqs == list(range(size, size + len(seqs))), f"{where}: unexpected seqs"
        acknowledged.update(printed)

        home = _open(home_dir)
        try:
            report = home.verify()
            assert report.ok, f"{where}: {[str(p) for p in report.problems]}"
            new = {r.seq: r.entry.body["text"] for r in home.ledger.records(size)}
        finally:
            home.close()
        # Records the writer appended but was killed before acknowledging may remain.
        assert sorted(new) == list(range(size, size + len(new))), (
            f"{where}: gap in seqs"
        )
        assert len(new) >= len(printed), f"{where}: acknowledged records lost"
        for seq, text in printed:
            assert new[seq] == text, f"{where}: seq {seq} lost or changed"
        assert all(t.startswith(f"r{round_no}-") for t in new.values()), where
        size += len(new)

    assert acknowledged, "no writer acknowledged anything: kills came too early"
    home = _open(home_dir)
    try:
        stored = _stored_texts(home)
    finally:
        home.close()
    assert len(stored) == size
    for seq, text in acknowledged.items():
        assert stored[seq] == text, f"seq {seq} lost or changed (seed {seed})"


def test_lines_printed_before_the_first_is_read_are_kept() -> None:
    """The writer may print its first acknowledgements before the test reads
    "ready" (a loaded machine): they must reach ``_printed`` all the same.

    Reading "ready" through a buffered pipe lost them (``communicate`` reads the
    pipe, not the buffer): the next round then saw the writer's first seq past
    the ledger's size, "unexpected seqs", though no record was missing.
    """
    script = (
        "import os, time\n"
        "os.write(1, b'ready\\n1 r0-0\\n2 r0-1\\n')  # one write: one read gets all\n"
        "time.sleep(60)\n"
    )
    proc = _spawn(script)
    assert _line(proc) == "ready\n"
    proc.send_signal(signal.SIGKILL)
    stdout, _ = _output(proc, 30)
    assert _printed(stdout) == [(1, "r0-0"), (2, "r0-1")]


def test_killed_writer_leaves_home_appendable(home_dir: Path) -> None:
    proc = _start(home_dir, "first", every=3)
    assert _line(proc) == "ready\n"
    assert _line(proc) == "1 first-0\n"
    proc.send_signal(signal.SIGKILL)
    stdout, _ = _output(proc, 30)
    first = [(1, "first-0"), *_printed(stdout)]
    home = _open(home_dir)
    try:
        size = home.ledger.head().size
    finally:
        home.close()
    assert size >= len(first) + 1

    proc = _start(home_dir, "second", limit=5, every=2)
    stdout, stderr = _output(proc, 60)
    assert proc.returncode == 0, stderr
    second = _printed(stdout)
    assert [seq for seq, _ in second] == list(range(size, size + 5))
    home = _open(home_dir)
    try:
        assert home.verify().ok
        stored = _stored_texts(home)
    finally:
        home.close()
    for seq, text in first + second:
        assert stored[seq] == text


def test_concurrent_writers_never_fork_the_chain(home_dir: Path) -> None:
    writers, per_writer = 4, 200
    procs = [_start(home_dir, f"w{n}", limit=per_writer) for n in range(writers)]
    results = []
    for proc in procs:
        stdout, stderr = _output(proc, 120)
        assert proc.returncode == 0, stderr
        assert stdout.endswith("done\n")
        results.append(_printed(stdout))

    home = _open(home_dir)
    try:
        report = home.verify()
        stored = _stored_texts(home)
        records = list(home.ledger.records())
    finally:
        home.close()
    assert report.ok, [str(p) for p in report.problems]
    total = 1 + writers * per_writer
    assert report.size == total
    assert sorted(stored) == list(range(total))
    for n, printed in enumerate(results):
        assert [t for _, t in printed] == [f"w{n}-{i}" for i in range(per_writer)]
        seqs = [s for s, _ in printed]
        assert seqs == sorted(seqs)
        for seq, text in printed:
            assert stored[seq] == text
    all_seqs = sorted(s for printed in results for s, _ in printed)
    assert all_seqs == list(range(1, total))
    for before, after in itertools.pairwise(records):
        assert after.prev == before.compute_hash().hex()


def test_concurrent_checkpoints_are_not_a_rollback(
    home_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer A signs a checkpoint; before A moves the witness, B appends and checkpoints.

    The witness then holds B's newer checkpoint, which extends A's: nothing was
    rolled back, so A's checkpoint must succeed and the witness stay at B's.
    """
    a = open_home(home_dir, env={})
    b = open_home(home_dir, env={})
    try:
        a.ledger.append("note", {"text": "by a"})
        sign_only = a.ledger.checkpoint

        def raced(*, adopt: bool = False) -> SignedCheckpoint:
            signed = sign_only(adopt=adopt)
            b.ledger.append("note", {"text": "by b"})
            b.checkpoint()
            return signed

        monkeypatch.setattr(a.ledger, "checkpoint", raced)
        a.checkpoint()
        witnessed = parse_signed_checkpoint(a.witness.read() or "").checkpoint
        assert witnessed.size == 3
        assert a.verify().ok
    finally:
        a.close()
        b.close()
