"""An auditor reads a ledger home on read-only media: every reading command works
and nothing at all is written into the home.

The same home (runs with lineage, a promoted model, a stale run, checkpoints) is
read four ways, each from a fresh copy, and each command's output must equal its
output on a writable copy:

- by an unprivileged account (``nobody``) on a ``chmod -R a+rX,a-w`` copy;
- by that account on a home that only another account may write (``a+rX``);
- by root on a ``chmod -R a-w`` copy (root passes permission checks, so only
  mltrail's own care keeps it from writing);
- by root through a read-only bind mount, in a private mount namespace.

Nothing may change: names, types, modes, sizes, mtimes, ctimes and SHA-256 of
every file and folder are compared before and after. Commands that record must
fail with one line: the ledger home is read-only (exit 4).

Tests run as root here and in CI; the account switch needs an account that can
run a Python and import mltrail. When it cannot run this interpreter (say one
installed under root's private home folder), the tests give it a runtime it can
read: a system interpreter of the same version, with mltrail and the packages
it needs at run time copied into a folder every account may read. Where even
that is impossible the tests skip saying how to enable them, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from mltrail.ledger.home import open_home
from optional_extras import in_ci

UNPRIVILEGED = "nobody"
ORIGIN = "test.mltrail.local/read-only"

# Each output is compared with the same command's on a writable copy; {model} is
# the recorded model file.
READS = [
    ("verify", "--json"),
    ("log", "--json"),
    ("show", "1", "--json"),
    ("show", "train", "--json"),
    ("runs", "-n", "0", "--json"),
    ("trace", "{model}", "--json"),
    ("lineage", "{model}", "--json"),
    ("model", "history", "--json"),
    ("keys", "list", "--json"),
    ("prove", "1", "--json"),
    ("prove", "--consistency", "2", "20", "--json"),
    ("diff", "train", "retrain", "--json"),
]
WRITES = [
    ("append", "--kind", "note", "--body", '{"text": "not allowed"}'),
    ("checkpoint",),
    ("run", "--", "true"),
    ("runs", "close", "--stale"),
    ("model", "promote", "{model}", "--stage", "staging"),
    ("keys", "rotate"),
]


def _unavailable(reason: str) -> None:
    """Skip with ``reason``; under CI fail instead: CI must run these tests."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this test must run in CI, not skip)")
    pytest.skip(reason)


def _env(home: Path, scratch: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLTRAIL_", "PYTEST_")) and k not in ("RANK", "WORLD_SIZE")
    }
    return {**env, "MLTRAIL_HOME": str(home), "HOME": str(scratch),
            "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip


def _mltrail(args, *, home: Path, cwd: Path, user: str | None = None, prefix=()):
    """Run ``mltrail ARGS`` (as ``user`` when given, after ``prefix``)."""
    switch: dict[str, object] = {}
    python, env = sys.executable, _env(home, cwd)
    if user is not None:
        account = pwd.getpwnam(user)
        switch = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        python, extra = _RUNTIMES.get(user, (sys.executable, {}))
        env.update(extra)
    return subprocess.run(
        [*prefix, python, "-m", "mltrail", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        check=False, **switch,
    )  # fmt: skip


# -- a Python the unprivileged account can run ------------------------------------

_RUNTIMES: dict[str, tuple[str, dict[str, str]]] = {}


def _runtime_closure() -> set[str]:
    """The distributions mltrail needs at run time (no extras), by normalised name."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = list(metadata.requires("mltrail") or [])
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name not in seen:
            seen.add(name)
            todo.extend(metadata.requires(req.name) or [])
    return seen


def _portable_runtime(folder: Path) -> tuple[str, dict[str, str]] | None:
    """A system interpreter of this Python's version, and a world-readable copy of
    mltrail and its run-time packages for it; None when there is no such one."""
    from importlib import metadata

    import mltrail

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    python = next(
        (p for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}")
         if os.access(p, os.X_OK) and not p.startswith(sys.base_prefix)),
        None,
    )  # fmt: skip
    if python is None:
        return None
    site = folder / "site-packages"
    shutil.copytree(Path(mltrail.__file__).parent, site / "mltrail",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    for name in _runtime_closure():
        dist = metadata.distribution(name)
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if ".." in file.parts or not source.is_file():
                continue  # scripts and data outside site-packages
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)
    return python, {"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}


@pytest.fixture(scope="module", autouse=True)
def _unprivileged_runtime():
    """Find (or make) a runtime the unprivileged account can use, for this module."""
    folder = Path(tempfile.mkdtemp(prefix="mltrail-runtime-"))
    folder.chmod(0o755)
    try:
        if os.geteuid() == 0 and _can_run(UNPRIVILEGED, sys.executable, {}) is not None:
            made = _portable_runtime(folder)
            if made is not None and _can_run(UNPRIVILEGED, *made) is None:
                _RUNTIMES[UNPRIVILEGED] = made
        yield
    finally:
        _RUNTIMES.clear()
        shutil.rmtree(folder, ignore_errors=True)


def _can_run(user: str, python: str, extra: dict[str, str]) -> str | None:
    """None when ``user`` can run ``python -m mltrail --version``, else why not."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return f"no account {user!r}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/", **extra}
    try:
        probe = subprocess.run(
            [python, "-m", "mltrail", "--version"], cwd="/", env=env,
            capture_output=True, text=True, timeout=60, check=False,
            user=account.pw_uid, group=account.pw_gid, extra_groups=[],
        )  # fmt: skip
    except OSError as e:
        return str(e)
    if probe.returncode != 0:
        return (probe.stderr.strip().splitlines() or ["?"])[-1]
    return None


# -- the home -------------------------------------------------------------------


@dataclass
class Source:
    """A recorded home, the project its model is in, and the expected outputs."""

    home: Path
    model: Path
    expected: dict[tuple[str, ...], str]
    stale_run: str


def _args(args: tuple[str, ...], model: Path) -> list[str]:
    return [a.replace("{model}", str(model)) for a in args]


def _normalised(text: str, home: Path) -> str:
    return text.replace(str(home), "<home>")


def _record(home: Path, project: Path) -> str:
    """Fill ``home``: three runs with lineage, a promotion, a note, a stale run."""

    def ok(*args: str) -> None:
        proc = _mltrail(args, home=home, cwd=project)
        assert proc.returncode == 0, proc.stderr

    write = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
    (project / "raw.csv").write_text("a,b\n1,2\n")
    ok("init", "--origin", ORIGIN)
    ok("run", "--name", "prep", "--data", "raw=raw.csv", "--output", "clean.csv",
       "--", sys.executable, "-c", write, "clean.csv", "a,b\n1,3\n")  # fmt: skip
    for name, weights in (("train", "w1"), ("retrain", "w2")):
        ok("run", "--name", name, "--data", "train=clean.csv", "--output", "model.bin",
           "--", sys.executable, "-c", write, "model.bin", weights)  # fmt: skip
    ok("model", "promote", "model.bin", "--stage", "production", "--note", "approved",
       "--override", "the fixture has no git repository")  # fmt: skip
    ok("append", "--kind", "note", "--body", '{"text": "reviewed"}')
    return _leave_stale_run(home, project)


def _leave_stale_run(home: Path, project: Path) -> str:
    """Start a run and SIGKILL its recorder: the run stays open, and stale."""
    code = "import time; print('up', flush=True); time.sleep(60)"
    with subprocess.Popen(
        [sys.executable, "-m", "mltrail", "run", "--name", "crashed", "--",
         sys.executable, "-c", code],
        cwd=project, env=_env(home, project), stdout=subprocess.PIPE,
        start_new_session=True,
    ) as recorder:  # fmt: skip
        assert recorder.stdout is not None
        assert recorder.stdout.readline() == b"up\n"
        os.killpg(recorder.pid, signal.SIGKILL)
        recorder.wait(timeout=10)
    proc = _mltrail(("checkpoint",), home=home, cwd=project)  # folds the WAL in
    assert proc.returncode == 0, proc.stderr
    listing = _mltrail(("runs", "--json"), home=home, cwd=project)
    crashed = json.loads(listing.stdout)[-1]
    assert (crashed["name"], crashed["status"]) == ("crashed", "stale")
    return str(crashed["id"])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    base = tmp_path_factory.mktemp("read-only")
    home, project = base / "home", base / "project"
    project.mkdir()
    stale_run = _record(home, project)
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (home / name).unlink(missing_ok=True)  # the copies must not gain one
    reference = base / "reference"  # a writable copy: what the outputs must be
    shutil.copytree(home, reference, symlinks=True)
    model = project / "model.bin"
    expected = {}
    for args in READS:
        proc = _mltrail(_args(args, model), home=reference, cwd=project)
        assert proc.returncode == 0, (args, proc.stderr)
        expected[args] = _normalised(proc.stdout, reference)
    return Source(home, model, expected, stale_run)


# -- what is on disk ------------------------------------------------------------


def _listing(root: Path) -> dict[str, tuple[object, ...]]:
    """Every file and folder under ``root`` (itself included) with what could change."""
    found = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        facts: tuple[object, ...] = (
            stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size,
            st.st_mtime_ns, st.st_ctime_ns,
        )  # fmt: skip
        if stat.S_ISREG(st.st_mode):
            facts += (hashlib.sha256(path.read_bytes()).hexdigest(),)
        found[str(path.relative_to(root))] = facts
    return found


@pytest.fixture
def scratch():
    """A folder every account may enter (pytest's own tmp folders are private)."""
    path = Path(tempfile.mkdtemp(prefix="mltrail-read-only-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)


def _copy(source: Source, scratch: Path, mode: str) -> tuple[Path, Path]:
    """The home copied into ``scratch`` with ``chmod -R mode``; the model beside it."""
    home = scratch / "home"
    shutil.copytree(source.home, home, symlinks=True)
    shutil.copy2(source.model, scratch / "model.bin")
    subprocess.run(["chmod", "-R", mode, str(home)], check=True)
    return home, scratch / "model.bin"


# -- reading as someone ---------------------------------------------------------


@dataclass
class Reader:
    """Runs mltrail commands on one read-only home, as one account, one way."""

    home: Path
    watched: Path  # the folder whose files must not change
    model: Path
    user: str | None = None
    prefix: tuple[str, ...] = ()

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``mltrail ARGS`` ({model} is the recorded model file)."""
        return _mltrail(
            _args(args, self.model), home=self.home, cwd=self.model.parent,
            user=self.user, prefix=self.prefix,
        )  # fmt: skip


def _unprivileged_user() -> str | None:
    """The account to read as: ``nobody`` when running as root, else ourselves
    (None). Skips (fails under CI) when that account cannot run mltrail."""
    if os.geteuid() != 0:
        return None  # already unprivileged: a chmod a-w copy is read-only to us
    try:
        pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        _unavailable(f"no account {UNPRIVILEGED!r} to read the home as; create one")
    python, extra = _RUNTIMES.get(UNPRIVILEGED, (sys.executable, {}))
    problem = _can_run(UNPRIVILEGED, python, extra)
    if problem is not None:
        _unavailable(
            f"the account {UNPRIVILEGED!r} cannot run {sys.executable} -m mltrail "
            f"({problem}): make the interpreter ({os.path.realpath(sys.executable)}), "
            "the virtualenv and the source tree readable and searchable by it "
            "(chmod o+rX on them and every folder above them; an interpreter "
            "installed under root's private home folder is not)"
        )
    return UNPRIVILEGED


def _require_root(why: str) -> None:
    if os.geteuid() != 0:
        _unavailable(f"{why} needs root; run the tests as root (e.g. in a container)")


def _mount_prefix(source_dir: Path, target: Path) -> tuple[str, ...]:
    """A command prefix that runs the rest with ``source_dir`` bind-mounted
    read-only on ``target``, in a private mount namespace (gone when it exits)."""
    script = (
        'mount --bind "$1" "$2" && mount -o remount,ro,bind "$2" && shift 2 && '
        'exec "$@"'
    )
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c", script,
              "sh", str(source_dir), str(target))  # fmt: skip
    try:
        probe = subprocess.run(
            [*prefix, "sh", "-c", f'! touch "{target}/probe" 2>/dev/null'],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except FileNotFoundError as e:
        _unavailable(f"cannot mount read-only: {e.filename} is not installed")
    if probe.returncode != 0:
        _unavailable(
            "cannot bind-mount read-only here (unshare --mount and mount need "
            f"CAP_SYS_ADMIN): {probe.stderr.strip() or 'the mount was writable'}"
        )
    return prefix


WAYS = [
    "unprivileged, a-w copy",
    "unprivileged, another account's home",
    "root, a-w copy",
    "root, read-only bind mount",
]


@pytest.fixture(params=WAYS)
def reader(request, source: Source, scratch: Path) -> Reader:
    """A ``Reader`` on a fresh read-only copy of the source home."""
    way = request.param
    if way == "unprivileged, a-w copy":
        user = _unprivileged_user()
        home, model = _copy(source, scratch, "a+rX,a-w")
        return Reader(home, home, model, user=user)
    if way == "unprivileged, another account's home":
        _require_root("reading a home another account may write")
        home, model = _copy(source, scratch, "a+rX")
        return Reader(home, home, model, user=_unprivileged_user() or UNPRIVILEGED)
    if way == "root, a-w copy":
        _require_root("root reading a chmod a-w copy")
        home, model = _copy(source, scratch, "a-w")
        return Reader(home, home, model)
    _require_root("a read-only bind mount")
    original, model = _copy(source, scratch, "u+w")
    mounted = scratch / "mounted"
    mounted.mkdir()
    prefix = _mount_prefix(original, mounted)
    return Reader(mounted, original, model, prefix=prefix)


# -- the tests ------------------------------------------------------------------


def test_every_reading_command_works_and_writes_nothing(reader, source):
    before = _listing(reader.watched)
    for args in READS:
        proc = reader.run(*args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert _normalised(proc.stdout, reader.home) == source.expected[args], args
    proc = reader.run("data", "hash", "{model}")  # its hash cache is in the home
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == hashlib.sha256(b"w2").hexdigest()
    proc = reader.run("reproduce", "train", "--check", "--json")  # hashes the data
    assert proc.returncode in (0, 1), proc.stderr  # 1: the account cannot read it
    assert not proc.stderr
    assert json.loads(proc.stdout)["ok"] is (proc.returncode == 0)
    assert _listing(reader.watched) == before


def test_a_stale_run_is_shown_stale_not_closed(reader, source):
    before = _listing(reader.watched)
    proc = reader.run("runs", "--status", "stale", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in json.loads(proc.stdout)] == [source.stale_run]
    proc = reader.run("runs")
    assert proc.returncode == 0, proc.stderr
    assert "stale" in proc.stdout
    assert _listing(reader.watched) == before


def test_recording_commands_fail_with_one_clear_line(reader):
    before = _listing(reader.watched)
    for args in WRITES:
        proc = reader.run(*args)
        assert proc.returncode == 4, (args, proc.stdout, proc.stderr)
        error, hint = proc.stderr.splitlines()
        assert error == f"error: the ledger home is read-only: {reader.home}", args
        assert hint.startswith("hint: "), args
    assert _listing(reader.watched) == before


def test_an_auditor_reads_alongside_a_connected_writer(source, scratch):
    """The owner's writer is connected and its last record is only in the log:
    an account that may not write reads it, through the writer's wal-index."""
    _require_root("reading a home another account writes")
    user = _unprivileged_user() or UNPRIVILEGED
    home, model = _copy(source, scratch, "a+rX")
    for key in (home / "keys").glob("*.key"):  # the writer's own: private (ADR 0003)
        key.chmod(0o600)
    writer = open_home(home, env={})
    try:
        writer.ledger.append("note", {"text": "while the auditor reads"})
        assert (home / "ledger.db-shm").exists()
        auditor = Reader(home, home, model, user=user)
        before = _listing(home)
        proc = auditor.run("log", "--json")
        assert proc.returncode == 0, proc.stderr
        last = json.loads(proc.stdout)[-1]["entry"]["body"]
        assert last == {"text": "while the auditor reads"}
        proc = auditor.run("verify")
        assert proc.returncode == 0, proc.stderr
        assert _listing(home) == before
    finally:
        writer.close()


def test_an_auditor_verifies_against_the_pinned_key(reader, source, scratch):
    """The auditor's own copy of the key, not ledger.json, says which ledger it is."""
    exported = _mltrail(
        ("keys", "export", "--format", "vkey"), home=source.home, cwd=scratch
    )
    assert exported.returncode == 0, exported.stderr
    pinned = scratch / "ledger.vkey"
    pinned.write_text(exported.stdout)
    pinned.chmod(0o644)
    before = _listing(reader.watched)
    proc = reader.run("verify", "--trust-key", str(pinned), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert report["covered"] == report["size"]
    assert report["anchors"][0]["external"] is True
    assert "pinned with --trust-key" in report["anchors"][0]["description"]
    other = scratch / "other.vkey"  # a key of no ledger here: not the one trusted
    other.write_text("0" * 64 + "\n")
    other.chmod(0o644)
    proc = reader.run("verify", "--trust-key", str(other), "--json")
    assert proc.returncode == 3, proc.stderr
    assert "not the ledger you trust" in proc.stdout
    assert _listing(reader.watched) == before
