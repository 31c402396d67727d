"""`mltrail run` and `mltrail runs` as a user types them."""

import json
import os
import subprocess
import sys

import pytest

from cli_runner import mltrail


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    assert mltrail(path, "init").returncode == 0
    return path


def test_a_first_run_creates_the_ledger(tmp_path):
    proc = mltrail(tmp_path / "fresh", "run", "--", "true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "created a new ledger" in proc.stderr
    assert (tmp_path / "fresh" / "ledger.json").exists()


def test_runs_lists_and_filters(home, tmp_path):
    assert (
        mltrail(home, "run", "--name", "ok", "--", "true", cwd=tmp_path).returncode == 0
    )
    assert (
        mltrail(home, "run", "--name", "bad", "--", "false", cwd=tmp_path).returncode
        == 1
    )
    listing = json.loads(mltrail(home, "runs", "--json").stdout)
    assert [(r["name"], r["status"], r["exit_code"]) for r in listing] == [
        ("ok", "succeeded", 0),
        ("bad", "failed", 1),
    ]
    failed = json.loads(mltrail(home, "runs", "--status", "failed", "--json").stdout)
    assert [r["name"] for r in failed] == ["bad"]
    table = mltrail(home, "runs").stdout
    assert listing[0]["id"] in table
    assert "failed" in table
    assert len(json.loads(mltrail(home, "runs", "-n", "1", "--json").stdout)) == 1


def test_an_empty_ledger_says_how_to_start(home):
    proc = mltrail(home, "runs")
    assert "mltrail run --" in proc.stdout


def test_run_json_summary_goes_to_stderr(home, tmp_path):
    proc = mltrail(home, "run", "--json", "--", "echo", "hi", cwd=tmp_path)
    assert proc.stdout == "hi\n"
    summary = json.loads(proc.stderr.splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert summary["records"] >= 6


def test_closing_runs_by_hand(home, tmp_path):
    assert mltrail(home, "run", "--", "true", cwd=tmp_path).returncode == 0
    run_id = json.loads(mltrail(home, "runs", "--json").stdout)[0]["id"]
    proc = mltrail(home, "runs", "close", run_id)
    assert proc.returncode == 2
    assert "already ended" in proc.stderr
    proc = mltrail(home, "runs", "close", "no-such-run")
    assert proc.returncode == 2
    assert "no run no-such-run" in proc.stderr
    proc = mltrail(home, "runs", "close")
    assert proc.returncode == 2
    assert "--stale" in proc.stderr
    proc = mltrail(home, "runs", "close", "--stale", "--json")
    assert json.loads(proc.stdout) == {"closed": []}


def test_run_help_teaches_with_examples(tmp_path):
    proc = mltrail(tmp_path, "run", "--help")
    assert "mltrail run -- python train.py" in proc.stdout
    assert "--data ROLE=PATH" in proc.stdout


def test_run_without_a_command_is_bad_input(home):
    proc = mltrail(home, "run")
    assert proc.returncode == 2


def test_the_account_is_recorded_and_filtered_on_not_what_user_claims(home, tmp_path):
    import pwd

    account = pwd.getpwuid(os.getuid()).pw_name
    claim = "not-" + account
    env = {**os.environ, "MLTRAIL_HOME": str(home), "USER": claim, "LOGNAME": claim}
    env.pop("MLTRAIL_RUN_ID", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "run", "--name", "claimed", "--", "true"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = json.loads(mltrail(home, "runs", "--json").stdout)
    assert (run["user"], run["claimed_user"]) == (account, claim)
    assert f"{account} (claims {claim})" in mltrail(home, "runs").stdout
    assert f"{account} (claims {claim})" in mltrail(home, "show", run["id"]).stdout
    assert json.loads(mltrail(home, "runs", "--user", claim, "--json").stdout) == []
    mine = json.loads(mltrail(home, "runs", "--user", account, "--json").stdout)
    assert [r["id"] for r in mine] == [run["id"]]


# Modules a reading command does not need (ADR 0021): a new top-level import on
# the read path that pulls one of them in makes every read command slower.
_NOT_FOR_READING = (
    "rich",  # printing JSON
    "socket",  # the actor's host
    "rfc8785",  # canonical JSON of floats: nothing is written or decoded
    "tomllib",
    "yaml",
    "nacl",
    "hashlib",  # OpenSSL: nothing is hashed
    "mltrail.core.chain",  # sealing; a head comes from core.head
    "mltrail.core.codec",  # `runs` answers from the index, decoding no record
    "mltrail.core.checkpoint",
    "mltrail.core.report",
    "mltrail.index.ingest",  # the index is caught up already
    "mltrail.ledger.server_trust",
    "dataclasses",  # creating one costs ~0.7 ms at import (ADR 0038)
)


def test_runs_json_imports_nothing_it_does_not_need(home):
    assert mltrail(home, "runs", "--json").returncode == 0  # catches the index up
    code = (
        "import atexit, runpy, sys\n"
        f"names = {_NOT_FOR_READING!r}\n"
        "atexit.register(lambda: print('loaded:', sorted(n for n in names "
        "if n in sys.modules), file=sys.stderr))\n"
        f"sys.argv = ['mltrail', '--home', {str(home)!r}, 'runs', '--json']\n"
        "runpy.run_module('mltrail', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert "loaded: []" in proc.stderr.splitlines()


def _loaded(home, names, *args):
    """Which of ``names`` a fresh ``mltrail --home HOME ARGS`` process loads."""
    code = (
        "import atexit, runpy, sys\n"
        f"names = {names!r}\n"
        "atexit.register(lambda: print('loaded:', sorted(n for n in names "
        "if n in sys.modules), file=sys.stderr))\n"
        f"sys.argv = ['mltrail', '--home', {str(home)!r}, *{list(args)!r}]\n"
        "runpy.run_module('mltrail', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr.splitlines()


def test_show_json_decodes_records_with_floats_without_rfc8785(home, tmp_path):
    """Records whose floats are written alike by repr and RFC 8785 (a fraction, no
    exponent) take the codec's fast path (ADR 0036): `show --json` loads neither
    rfc8785 nor rich."""
    proc = mltrail(home, "run", "--name", "p", "--", "true", "--lr=0.05", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert mltrail(home, "runs", "--json").returncode == 0  # catches the index up
    stdout, stderr = _loaded(home, ("rfc8785", "rich"), "show", "p", "--json")
    shown = json.loads(stdout)
    assert shown["params"][0]["params"] == {"lr": 0.05}
    assert "loaded: []" in stderr


def test_runs_param_reads_the_value_without_the_argv_and_config_parsers(home, tmp_path):
    """`--param` needs `coerce_value` only (`capture.run.values`, ADR 0021)."""
    proc = mltrail(home, "run", "--name", "p", "--", "true", "--lr=0.05", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert mltrail(home, "runs", "--json").returncode == 0  # catches the index up
    names = ("mltrail.capture.run.params", "yaml", "rich")
    stdout, stderr = _loaded(home, names, "runs", "--param", "lr=0.05", "--json")
    assert [r["name"] for r in json.loads(stdout)] == ["p"]
    assert "loaded: []" in stderr
    stdout, _ = _loaded(home, (), "runs", "--param", "lr=0.5", "--json")
    assert json.loads(stdout) == []


# Modules of commands other than the one run: the top-level group and the
# `model` group import a subcommand's module only when it runs (ADR 0021).
_OTHER_COMMANDS = (
    "mltrail.cli.run_cmd",
    "mltrail.cli.runs_cmd",
    "mltrail.cli.lineage_cmd",
    "mltrail.cli.verify_cmd",
    "mltrail.cli.demo",
    "mltrail.cli.model_cmd",
    "mltrail.cli.governance_cmd",
    "mltrail.cli.hash_bar",
)


def test_read_commands_load_only_their_own_command_modules(home):
    assert mltrail(home, "runs", "--json").returncode == 0  # catches the index up
    stdout, stderr = _loaded(home, _OTHER_COMMANDS, "show", "0")  # through click
    assert '"seq": 0' in stdout
    assert stderr[-1] == "loaded: []"
    stdout, stderr = _loaded(home, _OTHER_COMMANDS, "model", "history")
    assert stdout == "no promotions recorded yet\n"
    assert stderr[-1] == "loaded: []"


def test_plain_json_reads_do_not_import_click(home, tmp_path):
    """The plain `--json` forms run without click (`cli.reads`, ADR 0021); other
    forms, help included, still go through it."""
    proc = mltrail(home, "run", "--name", "p", "--", "true", "--lr=0.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(mltrail(home, "runs", "--json").stdout)[0]["id"]
    names = ("click", "mltrail.cli.app", "mltrail.cli.output", *_OTHER_COMMANDS)
    for args in (
        ("show", "p", "--json"),
        ("show", "0", "--full", "--json"),
        ("runs", "--param", "lr=0.5", "-n", "5", "--json"),
        ("runs", "--json", "--since", "2000-01-01", "--name", "p*"),
        ("model", "history", "--at", "2026-01-01", "--json"),
        ("prove", "0", "--json"),
    ):
        stdout, stderr = _loaded(home, names, *args)
        assert stderr[-1] == "loaded: []", args
        assert stdout == mltrail(home, "--debug", *args).stdout  # click's path
    stdout, _ = _loaded(home, names, "show", "p", "--json")
    assert json.loads(stdout)["run"]["id"] == run_id
    for args in (
        ("show", "p", "--json", "--help"),
        ("runs", "--limit=5", "--json"),
        ("prove", "+0", "--json"),  # click's int, not plain digits
        ("prove", "--consistency", "1", "2", "--json"),
    ):
        _, stderr = _loaded(home, ("click",), *args)
        assert stderr[-1] == "loaded: ['click']", args


def test_plain_json_reads_create_no_dataclass(home, tmp_path):
    """The types a read command loads are plain classes (``mltrail.values``, ADR
    0038): neither ``dataclasses`` nor what it imports (inspect, ast, tokenize)
    is loaded, and no dataclass is created at import."""
    proc = mltrail(home, "run", "--name", "p", "--", "true", "--lr=0.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(mltrail(home, "runs", "--json").stdout)[0]["id"]
    names = ("dataclasses", "inspect", "ast", "tokenize")
    for args in (
        ("show", "p", "--json"),
        ("show", "0", "--full", "--json"),
        ("runs", "--param", "lr=0.5", "--json"),
        ("trace", run_id, "--json"),
        ("model", "history", "--json"),
        ("prove", "0", "--json"),
    ):
        _, stderr = _loaded(home, names, *args)
        assert stderr[-1] == "loaded: []", args


def test_model_help_lists_every_subcommand(home):
    proc = mltrail(home, "model", "--help")
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("Commands:")[1].split()
    names = [w for w in listed if w.islower() and w.isalpha()]
    for name in ("approve", "delta", "demote", "describe", "fingerprint", "gate",
                 "history", "lock", "promote"):  # fmt: skip
        assert name in names
    assert mltrail(home, "model", "fingerprint", "--help").returncode == 0
    assert mltrail(home, "model", "nosuch").returncode == 2


# The text forms a person reads: piped, they print through `cli.text_out`'s plain
# printer from `cli.reads`, without click or rich (ADR 0041).
_TEXT_FORMS = (
    ("show", "p"),
    ("runs",),
    ("runs", "--param", "lr=0.5", "-n", "5", "--name", "p*"),
    ("trace", "{run}"),
    ("model", "history"),
    ("model", "history", "--at", "2026-01-01"),
)


def test_plain_text_reads_import_neither_click_nor_rich(home, tmp_path):
    proc = mltrail(home, "run", "--name", "p", "--", "true", "--lr=0.5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(mltrail(home, "runs", "--json").stdout)[0]["id"]
    names = ("click", "rich", "mltrail.cli.app", "mltrail.cli.output",
             "dataclasses", *_OTHER_COMMANDS)  # fmt: skip
    for form in _TEXT_FORMS:
        args = [a.format(run=run_id) for a in form]
        stdout, stderr = _loaded(home, names, *args)
        assert stderr[-1] == "loaded: []", args
        assert stdout == mltrail(home, "--debug", *args).stdout  # click's path
    stdout, _ = _loaded(home, (), "show", "p")
    assert stdout.startswith("─" * 10)
    assert f"run {run_id}  p " in stdout
    assert "\nstatus   succeeded (exit 0)\n" in stdout
    assert "\x1b" not in stdout  # no colour off a terminal
    for args in (
        ("show", "p", "--help"),
        ("runs", "--limit=5"),
        ("runs", "-n", "5", "-n", "6"),  # click's "last wins"
        ("show", "--", "p"),
        ("prove", "0"),  # text `prove`: click
    ):
        _, stderr = _loaded(home, ("click",), *args)
        assert stderr[-1] == "loaded: ['click']", args


@pytest.mark.parametrize(
    "args",
    [
        ("show", "nosuch"),
        ("show", "p", "--full"),
        ("trace", "nosuch"),
        ("runs", "--since", "someday"),
        ("runs", "--param", "novalue"),
        ("runs", "--status", "failed"),
        ("model", "history", "--at", "yesterday-ish"),
        ("model", "history", "--stage", "production"),
        ("runs", "-n", "x"),
        ("show",),
        ("trace", "a", "b"),
        ("runs", "--week"),
        ("model", "history", "--bogus"),
    ],
    ids=" ".join,
)
def test_plain_text_reads_answer_as_click_does(home, tmp_path, args):
    """Stdout, stderr and exit code of the plain path are those of click's
    (`--home=H` is not a plain form), errors and usage errors included."""
    proc = mltrail(home, "run", "--name", "p", "--", "true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plain = mltrail(home, "--home", str(home), *args)
    through_click = mltrail(home, f"--home={home}", *args)
    assert (plain.returncode, plain.stdout, plain.stderr) == (
        through_click.returncode,
        through_click.stdout,
        through_click.stderr,
    )


def test_text_on_a_terminal_is_styled_without_click_or_rich(home, tmp_path):
    """A terminal gets colour as rich writes it, without click or rich (what
    fits its width); so does a pipe where rich is told to style it
    (FORCE_COLOR); NO_COLOR drops the colours; a table wider than the terminal
    is rich's."""
    from terminal import run_on_terminal

    proc = mltrail(home, "run", "--name", "p", "--", "true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    names = ("click", "rich", "mltrail.cli.app")
    for args in (("show", "p"), ("runs",), ("model", "history")):
        code = (
            "import atexit, runpy, sys\n"
            f"names = {names!r}\n"
            "atexit.register(lambda: print('loaded:', sorted(n for n in names "
            "if n in sys.modules)))\n"
            f"sys.argv = ['mltrail', *{list(args)!r}]\n"
            "runpy.run_module('mltrail', run_name='__main__')\n"
        )
        status, out = run_on_terminal([sys.executable, "-c", code], env)
        assert status == 0, out
        assert out.endswith(b"loaded: []\r\n"), (args, out)
        if args != ("model", "history"):
            assert b"\x1b[1m" in out, args  # bold: the header, the rule's title
    status, out = run_on_terminal([sys.executable, "-m", "mltrail", "runs"], env)
    assert b"\x1b[32msucceeded\x1b[0m" in out  # green, as rich writes it
    forced = mltrail(home, "runs", env={"FORCE_COLOR": "1"})
    assert "\x1b[32msucceeded" in forced.stdout
    plain = mltrail(home, "runs", env={"NO_COLOR": "1", "FORCE_COLOR": "1"})
    assert "\x1b[32m" not in plain.stdout
    assert "\x1b[1mrun" in plain.stdout
    # styled at 160 columns (not a terminal): a name too long for the table
    proc = mltrail(home, "run", "--name", "n" * 200, "--", "true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-c", code.replace("'model', 'history'", "'runs'")],
        capture_output=True, text=True, timeout=120, check=False,
        env={**env, "FORCE_COLOR": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("loaded: ['rich']\n")  # narrowed by rich
    assert "n" * 200 not in proc.stdout
    assert "n…" in proc.stdout
