"""A writer who wants to deceive a reader through what the CLI displays.

Runs are recorded through the real CLI with hostile strings in every place a
writer controls: the run name, a parameter, the command line, a note, a data
file's name, the git branch and commit message, the user name and what the
script printed. The read commands are then run as a person runs them (a
pseudo-terminal as stdout and stderr) and piped: what reaches the terminal must
show those strings, not act on them (no escape sequence, carriage return,
backspace, bidi override or zero-width character gets through; rich markup in a
value prints as written). ``--json`` keeps every value exactly as recorded.
ADR 0040.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optional_extras import in_ci, require_extra
from terminal import run_on_terminal

ERASE = "\x1b[2K\r"
NAME = f"evil{ERASE}good-run\u202e"
TWIN = "good-run\u200b"
PARAM = "0.1\x1b[1A\x1b[2Kverified: intact"
MARKUP = "[bold red]TAMPERED[/][link=https://evil.example]x[/link]"
NOTE = (
    "fine\x1b]8;;https://evil.example\x07click\x1b]8;;\x07"
    "\x1b]52;c;ZWNobyBoaQ==\x07\x1b]0;title\x07\x08\x08ok"
)
BRANCH = "main\u2066(red)\u2069"
COMMIT = f"init{ERASE}verified: intact"
FILE = f"x{ERASE}ok\u202e.csv"
SCRIPT = (
    "import sys\n"
    "print('epoch 1\\x1b[2K\\rverified: intact\\x1b]0;pwned\\x07')\n"
    "print('[bold red]TAMPERED[/]', file=sys.stderr)\n"
)

# What a terminal would act on: none may reach it from a recorded value.
ACTIVE = [
    b"\x1b[2K",
    b"\x1b[1A",
    b"\x1b]",
    b"\x07",
    b"\x08",
    "\u202e".encode(),
    "\u200b".encode(),
    "\u2066".encode(),
]


def _env(home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "MLTRAIL_HOME": str(home),
        "GIT_CEILING_DIRECTORIES": str(home.parent),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS", "RANK", "WORLD_SIZE"):
        env.pop(name, None)
    return env


def _cli(home: Path, *args: str, cwd: Path | None = None) -> bytes:
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        cwd=cwd, env=_env(home), capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout + proc.stderr


def _tty(home: Path, *args: str) -> bytes:
    code, out = run_on_terminal([sys.executable, "-m", "mltrail", *args], _env(home))
    assert code == 0, out.decode(errors="replace")
    return out


def _inert(out: bytes) -> None:
    found = [seq for seq in ACTIVE if seq in out]
    assert found == [], out.decode(errors="replace")
    # a lone carriage return (a pty turns "\n" into "\r\n")
    assert b"\r" not in out.replace(b"\r\n", b"\n"), out.decode(errors="replace")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    base = tmp_path_factory.mktemp("render")
    project, home = base / "project", base / "home"
    (project / "data").mkdir(parents=True)
    (project / "data" / FILE).write_text("a,b\n1,2\n")
    (project / "train.py").write_text(SCRIPT)
    for args in (["init", "-q", "-b", BRANCH], ["add", "."], ["commit", "-qm", COMMIT]):
        subprocess.run(["git", *args], cwd=project, env=_env(home), check=True)
    _cli(home, "init")
    _cli(home, "run", "--name", NAME, "--data", "train=data", "--",
         sys.executable, "train.py", "--lr", PARAM, "--tag", MARKUP,
         cwd=project)  # fmt: skip
    _cli(home, "run", "--name", TWIN, "--", sys.executable, "train.py",
         "--lr", "0.2", cwd=project)  # fmt: skip
    runs = json.loads(_cli(home, "runs", "--json"))
    ids = {r["name"]: r["id"] for r in runs}
    _cli(home, "append", "--kind", "note", "--run", ids[NAME],
         "--body", json.dumps({"text": NOTE}))  # fmt: skip
    return home, ids[NAME], ids[TWIN]


def test_json_keeps_values_exactly_as_recorded(recorded):
    home, evil, _ = recorded
    runs = json.loads(_cli(home, "runs", "--json"))
    assert {r["name"] for r in runs} == {NAME, TWIN}
    shown = json.loads(_cli(home, "show", evil, "--json"))
    text = json.dumps(shown, ensure_ascii=False)
    assert json.dumps(PARAM, ensure_ascii=False) in text
    assert json.dumps(NOTE, ensure_ascii=False) in text
    # bidi overrides and zero-width characters are JSON escapes, not raw
    raw = _cli(home, "runs", "--json")
    assert b"good-run\\u202e" in raw
    assert b"good-run\\u200b" in raw
    _inert(raw)


@pytest.mark.parametrize(
    "command",
    [["runs"], ["show", "{evil}"], ["log"], ["diff", "{evil}", "{twin}"],
     ["logs", "{evil}"]],
    ids=lambda c: c[0],
)  # fmt: skip
def test_a_terminal_sees_recorded_strings_as_text(recorded, command):
    home, evil, twin = recorded
    args = [a.format(evil=evil, twin=twin) for a in command]
    out = _tty(home, *args)
    _inert(out)
    if args[0] in ("runs", "show", "log", "diff"):
        assert b"evil\\x1b[2K" in out  # the run's name, escaped
    if args[0] == "diff":
        assert b"good-run\\u200b" in out  # not mistaken for "good-run"
    if args[0] == "logs":
        assert b"epoch 1\\x1b[2K\\x0dverified: intact\\x1b]0;pwned\\x07" in out


def test_show_prints_markup_and_escapes_of_every_field(recorded):
    home, evil, _ = recorded
    out = _tty(home, "show", evil)
    _inert(out)
    assert MARKUP.encode() in out  # printed as written, not as style or link
    assert b"0.1\\x1b[1A\\x1b[2Kverified: intact" in out  # the command line
    assert b"\\x1b]8;;https://evil.example\\x07click" in out  # the note
    assert b"\\x1b]52;c;" in out
    assert b"main\\u2066(red)\\u2069" in out  # the git branch


def test_piped_text_output_is_escaped_too(recorded):
    home, evil, _ = recorded
    for args in (["runs"], ["show", evil], ["log"]):
        out = _cli(home, *args)
        _inert(out)
        assert b"evil\\x1b[2K\\x0dgood-run\\u202e" in out


def test_logs_piped_or_raw_keep_the_bytes_the_run_printed(recorded):
    home, evil, _ = recorded
    stored = b"epoch 1\x1b[2K\rverified: intact\x1b]0;pwned\x07\n"
    assert _cli(home, "logs", evil, "--stdout") == stored
    assert stored in _tty(home, "logs", evil, "--stdout", "--raw").replace(
        b"\r\n", b"\n"
    )
    shown = _tty(home, "logs", evil, "--stdout")
    _inert(shown)


def test_a_literal_escape_is_not_shown_as_the_character(tmp_path):
    """A run named with the text ``\\x1b[31m`` (a backslash, x, 1, b, ...) is not
    shown as the one named with ESC: its backslash is shown doubled. A plain
    Windows path is shown as it is, and --json keeps every name as recorded."""
    home = tmp_path / "home"
    _cli(home, "init")
    real, literal, path = "red\x1b[31m", "red\\x1b[31m", "C:\\Users\\me"
    for name in (real, literal, path):
        _cli(home, "run", "--name", name, "--", sys.executable, "-c", "pass")
    runs = json.loads(_cli(home, "runs", "--json"))
    ids = {r["name"]: r["id"] for r in runs}
    assert set(ids) == {real, literal, path}
    for args in (["runs"], ["log"], ["show", ids[literal]]):
        out = _tty(home, *args)
        _inert(out)
        assert b"red\\\\x1b[31m" in out  # the literal text: red\\x1b[31m
        if args[0] != "show":
            assert b"red\\x1b[31m" in out  # ESC: red\x1b[31m
            assert b"C:\\Users\\me" in out


def test_piped_text_escapes_a_recorded_value_exactly_once(tmp_path):
    """The text forms printed without rich (ADR 0041) escape each recorded value
    once, as the terminal does (ADR 0040): ESC as ``\\x1b``, a literal
    ``\\x1b`` text with its backslash doubled, never doubled twice."""
    home = tmp_path / "home"
    _cli(home, "init")
    real, literal = "red\x1b[31m", "red\\x1b[31m"
    for name in (real, literal):
        _cli(home, "run", "--name", name, "--", sys.executable, "-c", "pass")
    ids = {r["name"]: r["id"] for r in json.loads(_cli(home, "runs", "--json"))}
    shown_runs = _cli(home, "runs")
    assert b"red\\x1b[31m" in shown_runs  # ESC
    assert b"red\\\\x1b[31m" in shown_runs  # the literal text
    assert b"red\\\\\\\\x1b" not in shown_runs  # escaped twice
    for name, expected in ((real, b"red\\x1b[31m"), (literal, b"red\\\\x1b[31m")):
        shown = _cli(home, "show", ids[name])
        _inert(shown)
        assert expected in shown
        assert b"\\\\\\\\x1b" not in shown
        assert b"\\\\\\x1b" not in shown


def test_an_error_quoting_a_value_shows_it_as_text(tmp_path):
    home = tmp_path / "home"
    _cli(home, "init")
    code, out = run_on_terminal(
        [sys.executable, "-m", "mltrail", "show", f"nope{ERASE}\x1b]0;t\x07"],
        _env(home),
    )
    assert code != 0
    _inert(out)
    assert b"nope\\x1b[2K" in out


# -- the model report ------------------------------------------------------------

# Would mark the page if it ran: the DOM Chromium dumps shows whether it did.
RUNS_SCRIPT = (
    "<script>document.documentElement.dataset.pwned='script'</script>"
    '"><img src=x onerror="document.documentElement.dataset.pwned=\'img\'">'
)
REPORT_VALUE = f"{RUNS_SCRIPT}{ERASE}\u202eok"


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    require_extra("report", "jinja2")
    base = tmp_path_factory.mktemp("report")
    project, home = base / "project", base / "home"
    (project / "data").mkdir(parents=True)
    (project / "data" / FILE).write_text("a,b\n1,2\n")
    (project / "train.py").write_text(
        "import pathlib\n"
        "pathlib.Path('model').mkdir(exist_ok=True)\n"
        "pathlib.Path('model/weights.bin').write_bytes(b'w' * 64)\n"
    )
    _cli(home, "init")
    _cli(home, "run", "--name", REPORT_VALUE, "--data", "train=data",
         "--output", "model", "--", sys.executable, "train.py",
         "--tag", REPORT_VALUE, cwd=project)  # fmt: skip
    _cli(home, "model", "describe", "model/weights.bin", "--purpose", REPORT_VALUE,
         "--limitations", REPORT_VALUE, cwd=project)  # fmt: skip
    _cli(home, "model", "promote", "model/weights.bin", "--stage", "staging",
         "--note", REPORT_VALUE, "--override", REPORT_VALUE,
         cwd=project)  # fmt: skip
    pages = {}
    for kind in ("html", "md"):
        page = base / f"report.{kind}"
        _cli(home, "report", "model/weights.bin", "-o", str(page), cwd=project)
        pages[kind] = page
    return pages


def test_report_shows_hostile_values_as_inert_text(reported):
    html = reported["html"].read_text(encoding="utf-8")
    md = reported["md"].read_text(encoding="utf-8")
    for text in (html, md):
        assert "\x1b" not in text
        assert "\u202e" not in text
        assert "\\x1b" in text.replace("\\\\", "\\")  # Markdown escapes "\"
    assert "<script>document" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;document" in html
    assert "\\u202eok" in html


def test_chromium_runs_no_recorded_script_in_the_report(reported, tmp_path):
    browser = _chromium()
    if browser is None:
        message = "chromium not installed: apt-get install -y chromium (.ci/run does)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
         "--virtual-time-budget=2000", "--dump-dom", reported["html"].as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="verdict"' in dom.stdout
    assert "data-pwned" not in dom.stdout
    assert "&lt;script&gt;document" in dom.stdout  # the payload, as text


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def test_verify_bundle_prints_a_forged_subject_on_its_own_line(recorded, tmp_path):
    """A bundle is untrusted input: a subject holding a newline, a fake verdict
    and SGR 8 (conceal, which hid the real "NOT intact" verdict after it) shows
    as one escaped line."""
    home, evil, _ = recorded
    bundle = tmp_path / "bundle.json"
    _cli(home, "export", evil, "-o", str(bundle))
    data = json.loads(bundle.read_text())
    fake = "\nbundle intact: 9 record(s) of bank.example/loans, key pinned\x1b[8m"
    data["subject"]["node"] += fake
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(data))
    code, out = run_on_terminal(
        [sys.executable, "-m", "mltrail", "verify-bundle", str(forged)], _env(home)
    )
    assert code == 3, out.decode(errors="replace")
    assert b"\x1b[8m" not in out
    lines = out.decode().replace("\r\n", "\n").splitlines()
    assert not any(line.startswith("bundle intact") for line in lines), lines
    assert any(
        line.startswith(f"subject run:{evil}\\x0abundle intact") for line in lines
    ), lines


def test_a_name_cannot_print_a_line_of_its_own(tmp_path):
    home = tmp_path / "home"
    _cli(home, "init")
    name = "ok\n" + " " * 40 + "verified: intact"
    _cli(home, "run", "--name", name, "--", sys.executable, "-c", "pass", cwd=tmp_path)
    run = json.loads(_cli(home, "runs", "--json"))[0]["id"]
    for args in (["runs"], ["log"], ["show", run]):
        text = _tty(home, *args).decode().replace("\r\n", "\n")
        lines = [line.strip() for line in text.splitlines()]
        assert not any(line.startswith("verified") for line in lines), text
        if args[0] != "log":  # log's summary already joins lines with spaces
            assert "ok\\x0a" in text


def test_lookalike_run_names_are_shown_apart(tmp_path):
    """``train-7`` and ``tr\\u0430in-7`` (a Cyrillic ``a``) look the same;
    ``runs`` and ``show`` print the look-alike as an escape, on a terminal and
    piped, while ``--json`` keeps both names exactly (ADR 0040)."""
    home = tmp_path / "home"
    _cli(home, "init")
    real, twin = "train-7", "tr\u0430in-7"
    for name in (real, twin):
        _cli(home, "run", "--name", name, "--", sys.executable, "-c", "pass")
    ids = {r["name"]: r["id"] for r in json.loads(_cli(home, "runs", "--json"))}
    assert set(ids) == {real, twin}
    shown_twin = b"tr\\u0430in-7"
    for out in (_cli(home, "runs"), _tty(home, "runs")):
        assert shown_twin in out
        assert b"train-7" in out
        assert twin.encode() not in out
    for out in (_cli(home, "show", ids[twin]), _tty(home, "show", ids[twin])):
        assert shown_twin in out
        assert twin.encode() not in out
    assert b"\\u0430" not in _cli(home, "show", ids[real])
    compared = _cli(home, "diff", ids[real], ids[twin], "--all")
    assert b"+ tr\\u0430in-7 (" in compared  # the heading
    assert b"name: tr\\u0430in-7" in compared  # the changed value
    assert json.loads(_cli(home, "show", ids[twin], "--json"))["run"]["name"] == twin


def test_a_lookalike_data_role_is_shown_apart_in_diff(tmp_path):
    """A data set's role is a recorded name too: ``diff`` prints the Cyrillic
    ``a`` of ``tr\u0430in`` as an escape, and an escape sequence as text."""
    home, data = tmp_path / "home", tmp_path / "data"
    data.mkdir()
    _cli(home, "init")
    role = "tr\u0430in\x1b[31m"
    ids = []
    for content in ("a,b\n", "a,c\n"):
        (data / "x.csv").write_text(content)
        _cli(home, "run", "--data", f"{role}=data", "--", sys.executable, "-c", "pass",
             cwd=tmp_path)  # fmt: skip
        ids.append(json.loads(_cli(home, "runs", "--json"))[-1]["id"])
    compared = _cli(home, "diff", *ids)
    assert b"  tr\\u0430in\\x1b[31m: changed, dataset" in compared
    assert role.encode() not in compared
    _inert(compared)
