"""Secrets a user has lying around, through real runs: none is stored, shown or
printed by mltrail (ADR 0013, amendment 2026-12-07).

Each secret reached the ledger in clear before that amendment: a token in a URL
inside a sentence, a JDBC URL, a token as a URL's user name, webhook URLs and bot
tokens (in arguments, a config file and a recorded environment variable),
``Authorization: token …`` and ``X-Api-Key: …`` headers, a JSON object given as
an argument or a param, ``--pw``, ``curl -u user:password`` (also in a step's
command), ``DB_PASSWORD=…`` in a note; and the secret of a source URL echoed by
``mltrail sources add``'s error message. Each is a random value, searched for in
every file of the home and in what ``mltrail show``, ``logs``, ``log`` and the
exports print.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import random
import string
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import mltrail

RNG = random.Random(20261207)


def secret(n: int = 18) -> str:
    while True:
        text = "".join(
            RNG.choice(string.ascii_letters + string.digits) for _ in range(n)
        )
        if not text.isalpha() and not text.isdigit() and text != text.lower():
            return text


def letters(n: int) -> str:
    return "".join(RNG.choice(string.ascii_lowercase) for _ in range(n))


def hexdigits(n: int) -> str:
    return "".join(RNG.choice("0123456789abcdef") for _ in range(n))


def cli(home: Path, cwd: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    full = {**os.environ, "MLTRAIL_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args], cwd=cwd, env=full,
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def leaks(secrets: dict[str, str], outputs: dict[str, bytes]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in secrets.items():
        forms = {value.encode(), quote(value, safe="").encode()}
        for where, data in outputs.items():
            if any(form in data for form in forms):
                found.setdefault(name, []).append(where)
    return found


def stored(home: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(home)): p.read_bytes()
        for p in sorted(home.rglob("*"))
        if p.is_file()
    }


S: dict[str, str] = {
    "url_in_text": secret(),
    "jdbc": secret(),
    "token_user": hexdigits(40),
    "slack": secret(24),
    "discord": secret(68),
    "telegram": secret(35),
    "auth_header": secret(30),
    "api_key_header": secret(30),
    "json_arg": hexdigits(40),
    "pw": secret(),
    "curl": secret(),
    "config_webhook": secret(24),
    "env_webhook": secret(24),
}
API: dict[str, str] = {
    "api_url_in_text": secret(),
    "api_json_param": secret(),
    "api_note": secret(),
    "api_step_curl": secret(),
}
HOOK = "https://hooks.slack.com/services/T0ABC1234/B0ABC1234/"


def args() -> list[str]:
    return [
        "--data", f"fetch https://h.example.com/x?token={S['url_in_text']}&page=2",
        "--jdbc", f"jdbc:postgresql://h:5432/db?user=u&password={S['jdbc']}",
        "--repo", f"https://{S['token_user']}@github.com/o/r.git",
        "--webhook", HOOK + S["slack"],
        "--discord", f"https://discord.com/api/webhooks/123456789012345678/{S['discord']}",
        "--tg", f"https://api.telegram.org/bot123456789:{S['telegram']}/sendMessage",
        "--header", f"Authorization: token {S['auth_header']}",
        "--header2", f"X-Api-Key: {S['api_key_header']}",
        "--gcp-sa", json.dumps({"type": "service_account", "private_key_id": S["json_arg"]}),
        "--pw", S["pw"],
        "--config", "conf.json",
    ]  # fmt: skip


API_SCRIPT = """\
import json, os
import mltrail
s = json.loads(os.environ["ATTACK_VALUES"])  # a name mltrail neither records nor masks
run = mltrail.start_run("api")
run.log_params(desc=f"pulled from https://h.example.com/f?token={s['api_url_in_text']} ok",
               extra=json.dumps({"hub_token": s["api_json_param"]}))
run.note(f"rerun with DB_PASSWORD={s['api_note']}")
run.log_step("fetch", command=["curl", "-u", f"admin:{s['api_step_curl']}", "https://h/x"])
run.end()
"""


def test_no_secret_a_user_has_lying_around_is_stored(tmp_path, isolated_git):
    home = tmp_path / "home"
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "train.py").write_text("print('training')\n")
    (repo / "api.py").write_text(API_SCRIPT)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    (repo / "conf.json").write_text(json.dumps({"notify": HOOK + S["config_webhook"]}))
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    env = {"HF_HUB_WEBHOOK": HOOK + S["env_webhook"]}  # HF_* is recorded

    ran = cli(home, repo, "run", "--", sys.executable, "train.py", *args(), env=env)
    assert ran.returncode == 0, ran.stderr.decode()[-2000:]
    shell = f"curl -u admin:{S['curl']} http://127.0.0.1:9/ || true"
    shelled = cli(home, repo, "run", "--", "sh", "-c", shell)
    assert shelled.returncode == 0, shelled.stderr.decode()[-2000:]
    api_env = {"ATTACK_VALUES": json.dumps(API)}
    api = cli(home, repo, "run", "--", sys.executable, "api.py", env=api_env)
    assert api.returncode == 0, api.stderr.decode()[-2000:]

    outputs = stored(home)
    outputs["run stderr"] = ran.stderr + shelled.stderr + api.stderr
    runs = json.loads(cli(home, repo, "runs", "--json").stdout)
    assert len(runs) == 3
    for run in runs:
        for command in (["show", run["id"], "--json", "--full"], ["logs", run["id"]],
                        ["export", "bundle", run["id"], "-o", "-"],
                        ["export", "intoto", run["id"], "-o", "-"]):  # fmt: skip
            done = cli(home, repo, *command)
            outputs[" ".join(command[:2])] = done.stdout + done.stderr
    outputs["log"] = cli(home, repo, "log", "--json").stdout
    assert leaks({**S, **API}, outputs) == {}

    # what is recorded stays useful: names, hosts and the fact a secret was there
    shown = cli(home, repo, "show", runs[0]["id"], "--json", "--full").stdout.decode()
    assert "jdbc:postgresql://h:5432/db?user=u&password=<redacted hmac-sha256:" in shown
    assert "Authorization: token <redacted hmac-sha256:" in shown
    assert "@github.com/o/r.git" in shown
    assert "service_account" in shown


def test_an_error_message_does_not_echo_the_secret_of_a_url(tmp_path):
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    password = secret()
    url = f"sqlite:///{tmp_path}/missing.db?password={password}"
    done = cli(home, tmp_path, "sources", "add", "crm", url, "--query", "SELECT 1")
    assert done.returncode != 0
    assert b"missing.db" in done.stderr  # the error still says what is wrong
    assert password.encode() not in done.stdout + done.stderr
    debug = cli(home, tmp_path, "--debug", "sources", "add", "crm", url, "--query", "x")
    assert debug.returncode != 0
    assert password.encode() not in debug.stdout + debug.stderr


def test_a_debug_traceback_does_not_echo_the_secret_of_a_url(tmp_path):
    """``--debug`` prints the whole chain: the library's exception that caused
    mltrail's (fsspec's ``FileNotFoundError: http://u:PASSWORD@…``) was printed
    as raised, only mltrail's own message was masked."""
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    password = secret()
    url = f"x=http://u:{password}@127.0.0.1:9/none.csv"
    done = cli(home, tmp_path, "--debug", "run", "--data", url, "--", "true")
    assert done.returncode != 0
    assert b"Traceback" in done.stderr  # still the traceback --debug asks for
    assert b"127.0.0.1:9/none.csv" in done.stderr
    assert password.encode() not in done.stdout + done.stderr


def test_text_typed_into_signed_entries_keeps_no_secret(tmp_path, isolated_git):
    """A purge's reason, a hold's reason, an approval's note, a model card and
    ``mltrail append``'s body are inline forever (a purge cannot erase them):
    each was stored as typed, so the token a user purged, named in the reason,
    was kept by the very entry that erased it."""
    home = tmp_path / "home"
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "train.py").write_text(
        "import pathlib, sys\npathlib.Path('m.bin').write_text('w')\nprint(sys.argv[1])\n"
    )
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    typed = {
        "purge": "hf_" + secret(34),
        "hold": secret(),
        "approve": secret(),
        "describe": "sk-proj-" + secret(40),
        "append": "ghp_" + secret(36),
        "append_named": secret(),
        "rotate": secret(),
    }
    printed = secret()
    ran = cli(home, repo, "run", "--output", "m.bin", "--", sys.executable, "train.py",
              f"loaded {printed}")  # fmt: skip
    assert ran.returncode == 0, ran.stderr.decode()[-2000:]
    run = json.loads(cli(home, repo, "runs", "--json").stdout)[0]["id"]
    shown = json.loads(cli(home, repo, "show", run, "--json", "--full").stdout)
    stdout_blob = shown["ended"]["stdout"]["stored"]["blob"]

    for args in (
        ["purge", stdout_blob, "--policy", "secret leaked",
         "--reason", f"token {typed['purge']} was printed in the log"],
        ["hold", "add", f"run:{run}", "--reason",
         f"mirror at https://legal:{typed['hold']}@dms.example.com/case/7"],
        ["model", "approve", "m.bin", "--stage", "production",
         "--note", f"checked on staging with DB_PASSWORD={typed['approve']}"],
        ["model", "describe", "m.bin",
         "--limitations", f"calls the API with {typed['describe']}"],
        ["append", "--kind", "note", "--body", json.dumps(
            {"text": f"rotate {typed['append']}", "api_token": typed["append_named"]})],
        ["keys", "rotate", "--reason", f"key file sent with PASSWORD={typed['rotate']}"],
    ):  # fmt: skip
        done = cli(home, repo, *args)
        assert done.returncode == 0, (args, done.stderr.decode()[-2000:])

    outputs = stored(home)
    outputs["log"] = cli(home, repo, "log", "--json").stdout
    outputs["show"] = cli(home, repo, "show", run, "--json", "--full").stdout
    assert leaks(typed, outputs) == {}
    log = outputs["log"].decode()
    assert "was printed in the log" in log  # the words stay readable
    assert "checked on staging with DB_PASSWORD=<redacted hmac-sha256:" in log
    assert "@dms.example.com/case/7" in log
    assert cli(home, repo, "verify").returncode == 0


def test_a_setting_named_on_the_command_line_keeps_its_value_secret(
    tmp_path, isolated_git
):
    """Tools that set a named setting take NAME VALUE as two plain arguments
    (``aws configure set aws_secret_access_key V``, ``dvc remote modify --local
    store password V``, ``git config KEY V``, ``rclone config create r s3
    secret_access_key V``): no option name, no ``=``, so the value was stored."""
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    values = {name: secret() for name in ("aws", "dvc", "git", "rclone")}
    shell = (
        f"aws configure set aws_secret_access_key {values['aws']} || true; "
        f"dvc remote modify --local store password {values['dvc']} || true; "
        f"rclone config create r s3 secret_access_key {values['rclone']} || true"
    )
    shelled = cli(home, tmp_path, "run", "--", "sh", "-c", shell)
    assert shelled.returncode == 0, shelled.stderr.decode()[-2000:]
    config = tmp_path / "settings.cfg"
    gitted = cli(home, tmp_path, "run", "--", "git", "config", "--file", str(config),
                 "http.proxyPassword", values["git"])  # fmt: skip
    assert gitted.returncode == 0, gitted.stderr.decode()[-2000:]

    outputs = stored(home)
    outputs["log"] = cli(home, tmp_path, "log", "--json").stdout
    assert leaks(values, outputs) == {}
    log = outputs["log"].decode()
    assert "aws configure set aws_secret_access_key <redacted hmac-sha256:" in log
    assert '"http.proxyPassword"' in log  # the setting's name stays readable


def test_a_secret_assigned_by_index_in_code_on_the_command_line(tmp_path):
    """``python -c "os.environ['HF_TOKEN'] = '…'"``: the name is followed by a
    closing quote and bracket before the ``=``, so the assignment rule did not
    see it and the code string was stored as typed."""
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    values = {"index": secret(), "dict": secret()}
    code = (
        f"import os; os.environ['HF_TOKEN'] = '{values['index']}'; "
        f'conf = {{}}; conf["db_password"]="{values["dict"]}"; print("ok")'
    )
    done = cli(home, tmp_path, "run", "--", sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    outputs = stored(home)
    outputs["log"] = cli(home, tmp_path, "log", "--json").stdout
    assert leaks(values, outputs) == {}
    assert "os.environ['HF_TOKEN'] = '<redacted hmac-sha256:" in outputs["log"].decode()


def test_a_run_named_with_a_credential_is_recorded_without_it(tmp_path):
    """A run name holding a token (``--name "eval hf_…"``) was committed whole,
    a mapping where the schema wants a string: the run was refused and the
    command never ran. Now the token is masked in the name and the run goes on."""
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    token = "hf_" + secret(34)
    done = cli(home, tmp_path, "run", "--name", f"eval {token}", "--", "true")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    outputs = stored(home)
    outputs["runs"] = cli(home, tmp_path, "runs", "--json").stdout
    assert leaks({"name": token}, outputs) == {}
    assert json.loads(outputs["runs"])[0]["name"] == "eval [MASKED:secret]"


def test_a_dvc_stage_command_keeps_its_secrets(tmp_path, isolated_git):
    """A DVC stage's ``cmd`` (from ``dvc.lock``, recorded as a step's command
    after ``mltrail run -- dvc repro``) was cleaned as free text, not read as a
    command line: ``--api-key VALUE`` and ``-p VALUE`` were stored as written.
    And ``lock_sha256`` was the SHA-256 of the lock as written (amendment
    2026-12-08)."""
    home = tmp_path / "home"
    repo = tmp_path / "project"
    repo.mkdir()
    values = {"api_key": secret(), "p": secret()}
    lock = (
        "schema: '2.0'\nstages:\n  fetch:\n"
        f"    cmd: python fetch.py --api-key {values['api_key']} -p {values['p']}\n"
        "    outs:\n    - path: raw.csv\n      hash: md5\n"
        "      md5: 0123456789abcdef0123456789abcdef\n      size: 4\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "lock.yaml").write_text(lock)
    dvc = bin_dir / "dvc"  # stands in for `dvc repro`: leaves what DVC would
    dvc.write_text('#!/bin/sh\ncp "$FAKE_DVC_LOCK" dvc.lock\necho x > raw.csv\n')
    dvc.chmod(0o755)
    (repo / "fetch.py").write_text("print('fetch')\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    fake = {"PATH": path, "FAKE_DVC_LOCK": str(tmp_path / "lock.yaml")}
    done = cli(home, repo, "run", "--", "dvc", "repro", env=fake)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    outputs = stored(home)
    outputs["log"] = cli(home, repo, "log", "--json").stdout
    assert b'"dvc"' in outputs["log"]  # the stage was recorded
    assert leaks(values, outputs) == {}
    # the hash of dvc.lock, whose only unknown is the secrets, would let anyone
    # test guesses of them: it is of the masked lock, the original's committed
    [step] = [
        r["entry"]["body"]
        for r in json.loads(outputs["log"])
        if r["entry"]["kind"] == "run.step"
    ]
    lock_sha256 = hashlib.sha256(lock.encode()).hexdigest()
    assert step["dvc"]["lock_sha256"] != lock_sha256
    assert "hmac-sha256:" in step["dvc"]["lock_sha256_original"]["redacted"]
    checked = cli(home, repo, "secrets", "check", "--file", str(tmp_path / "lock.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_dvc_stage_command_printed_by_dvc_is_masked_in_the_logs(
    tmp_path, isolated_git
):
    """``dvc repro`` prints each stage's command before running it (``Running
    stage 'fetch':`` then ``> python fetch.py --api-key VALUE``). The step entry
    committed the values, but the stored output kept them: they were learned
    only after the output was masked (ADR 0013, amendment 2026-12-08)."""
    home = tmp_path / "home"
    repo = tmp_path / "project"
    repo.mkdir()
    values = {"api_key": secret(), "password": secret()}
    cmd = (
        f"python fetch.py --api-key {values['api_key']} --password {values['password']}"
    )
    lock = (
        f"schema: '2.0'\nstages:\n  fetch:\n    cmd: {cmd}\n"
        "    outs:\n    - path: raw.csv\n      hash: md5\n"
        "      md5: 0123456789abcdef0123456789abcdef\n      size: 2\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "lock.yaml").write_text(lock)
    dvc = bin_dir / "dvc"  # stands in for `dvc repro`: prints what DVC prints
    dvc.write_text(
        "#!/bin/sh\n"
        "echo \"Running stage 'fetch':\"\n"
        "sed -n 's/^    cmd: /> /p' \"$FAKE_DVC_LOCK\"\n"
        "sed -n 's/^    cmd: /> /p' \"$FAKE_DVC_LOCK\" >&2\n"
        'cp "$FAKE_DVC_LOCK" dvc.lock\necho x > raw.csv\n'
    )
    dvc.chmod(0o755)
    (repo / "fetch.py").write_text("print('fetch')\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    fake = {"PATH": path, "FAKE_DVC_LOCK": str(tmp_path / "lock.yaml")}
    done = cli(home, repo, "run", "--", "dvc", "repro", env=fake)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    outputs = stored(home)
    [run] = json.loads(cli(home, repo, "runs", "--json").stdout)
    logs = cli(home, repo, "logs", run["id"]).stdout
    outputs["logs"] = logs
    assert leaks(values, outputs) == {}
    assert b"> python fetch.py --api-key [MASKED:" in logs  # the words stay


JOINED = """\
import json, os, sys
import mltrail
s = json.loads(os.environ["ATTACK_VALUES"])  # a name mltrail neither records nor masks
with mltrail.start_run() as run:
    run.log_params(db_password=s["param"], hub_token=s["token"])
    print("connecting with", s["param"])
    print("pushing with", s["token"], file=sys.stderr)
"""


def test_a_secret_logged_by_a_joined_process_is_masked_in_the_wrappers_logs(
    tmp_path, isolated_git
):
    """``mltrail run -- python train.py`` where train.py calls
    ``log_params(db_password=…)``: the param was committed, but the output the
    wrapper stored held the value in clear (the wrapper never learned it)."""
    home = tmp_path / "home"
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "train.py").write_text(JOINED)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    values = {"param": secret(), "token": secret(24)}
    env = {"ATTACK_VALUES": json.dumps(values)}
    done = cli(home, repo, "run", "--", sys.executable, "train.py", env=env)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert values["param"].encode() in done.stdout  # the terminal got it
    outputs = stored(home)
    run = json.loads(cli(home, repo, "runs", "--json").stdout)[0]["id"]
    outputs["logs"] = cli(home, repo, "logs", run).stdout
    assert leaks(values, outputs) == {}
    assert b"connecting with [MASKED:secret]" in outputs["logs"]


def test_a_token_as_a_remotes_user_name_is_masked_in_the_output(tmp_path, isolated_git):
    """A CI checkout's remote is often ``https://<token>@github.com/o/r.git`` (a
    classic GitHub token is 40 hex digits). The recorded remote drops it, but
    output that prints the URL (``git remote -v``, a failed fetch) was stored
    with it: only a URL *password* was a credential shape in text."""
    home = tmp_path / "home"
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "train.py").write_text("print('training')\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    token = hexdigits(40)
    git(repo, "remote", "add", "origin", f"https://{token}@github.com/o/r.git")
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    done = cli(home, repo, "run", "--", "git", "remote", "-v")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert token.encode() in done.stdout  # the terminal got it
    outputs = stored(home)
    run = json.loads(cli(home, repo, "runs", "--json").stdout)[0]["id"]
    outputs["logs"] = cli(home, repo, "logs", run).stdout
    assert leaks({"token": token}, outputs) == {}
    assert b"@github.com/o/r.git" in outputs["logs"]


def test_free_text_holding_a_credential_keeps_its_entry(tmp_path):
    """A note, a step's name or a run's error holding a credential shape (an
    exception quoting a ``ghp_…`` token, as the framework callbacks and
    ``mltrail.auto`` pass it to ``end(error=…)``) was committed whole: a mapping
    where the schema wants a string, so the note and the step raised and the
    run's end entries (its last metrics) were refused (ADR 0013, amendment
    2026-12-08). The credential is masked in place; the words stay."""
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    hf, token = "hf_" + secret(34), "ghp_" + secret(36)
    run = mltrail.start_run("push", home=home)
    run.log_metrics({"loss": 0.5}, step=1)
    plain = (
        f"learning_rate=0.001 max_tokens=512 commit {hexdigits(40)} "
        f"sha256 {hexdigits(64)} id 8c1f2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f"
    )
    run.note(plain)  # nothing secret in it: kept as written
    run.note(f"rotated {hf} after the leak")
    run.log_step(f"upload with {hf}", command=["true"])
    run.end("failed", error=f"PermissionError: push refused for token {token}")
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        records = list(opened.ledger.records())
    finally:
        opened.close()
    bodies = {r.entry.kind: r.entry.body for r in records}
    notes = [r.entry.body["text"] for r in records if r.entry.kind == "note"]
    assert notes[0] == plain
    assert bodies["run.ended"]["status"] == "failed"
    assert bodies["run.ended"]["error"] == (
        "PermissionError: push refused for token [MASKED:secret]"
    )
    assert bodies["note"]["text"] == "rotated [MASKED:secret] after the leak"
    assert bodies["run.step"]["name"] == "upload with [MASKED:secret]"
    assert "run.metrics" in bodies
    assert leaks({"hf": hf, "token": token}, stored(home)) == {}


@dataclasses.dataclass
class DB:
    host: str
    password: str


class Client:
    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"Client(token={self.token!r})"


def test_an_object_logged_as_a_param_keeps_no_secret_of_its_repr(tmp_path):
    """A param that is no plain value is stored as its ``repr``: Lightning's
    ``save_hyperparameters()`` hands over a config dataclass, an ``argparse``
    namespace, a client object. A secret field in it (``password='…'``) was
    kept in clear unless its value mixed letters and digits, the rule for
    prose (ADR 0013, amendment 2026-12-08)."""

    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    values = {name: letters(16) for name in ("db", "ns", "client")}  # no digits
    run = mltrail.start_run("objects", home=home)
    run.log_params(
        {
            "db": DB("db.example.com", values["db"]),
            "ns": argparse.Namespace(api_key=values["ns"], lr=0.001),
            "client": Client(values["client"]),
            "opt": argparse.Namespace(
                tokenizer="bert-base-uncased", monitor_key="val_loss", seed=7
            ),
        }
    )
    run.end()
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        [params] = [
            r.entry.body["params"]
            for r in opened.ledger.records()
            if r.entry.kind == "run.params" and r.entry.body["source"] == "api"
        ]
    finally:
        opened.close()
    assert leaks(values, stored(home)) == {}
    assert params["db"].startswith("DB(host='db.example.com', password='<redacted")
    assert params["opt"] == (
        "Namespace(tokenizer='bert-base-uncased', monitor_key='val_loss', seed=7)"
    )


@dataclasses.dataclass
class Conn:
    options: dict


@dataclasses.dataclass
class Param:  # as MLflow's entities print themselves
    key: str
    value: str


def test_a_reprs_secret_in_a_dict_with_spaces_or_assigned_is_committed(tmp_path):
    """The rule for a quoted ``name='value'`` of a ``repr`` (amendment
    2026-12-08) missed the other ways a repr or code writes it: a dict inside
    an object (``Conn(options={'password': '…'})``), a value with spaces or a
    comma (``passphrase='correct horse …'``, the rest kept in clear after the
    first word), and an assignment (``password = '…'``); and it committed a
    bare ``key='learning_rate'`` (MLflow's ``Param`` and ``Metric``, a sort
    key) however plain (ADR 0013, amendment 2026-12-08, second)."""
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    values = {
        "dict": letters(16),
        "phrase": f"{letters(7)} {letters(6)}, {letters(8)}",
        "assigned": letters(14),
    }
    run = mltrail.start_run("objects", home=home)
    run.log_params(
        {
            "conn": Conn({"host": "db.example.com", "password": values["dict"]}),
            "ns": argparse.Namespace(passphrase=values["phrase"], seed=7),
            "param": Param("learning_rate", "0.001"),
            "opt": argparse.Namespace(
                token_type="bpe", password_min_length=8, data_dir="/data/secret/a"
            ),
        }
    )
    run.note(f"connect with password = '{values['assigned']}' then retry")
    run.end()
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        records = list(opened.ledger.records())
        [params] = [
            {  # a long one is a blob
                k: v
                if isinstance(v, str)
                else opened.ledger.get_blob(v["blob"]).decode()
                for k, v in r.entry.body["params"].items()
            }
            for r in records
            if r.entry.kind == "run.params" and r.entry.body["source"] == "api"
        ]
    finally:
        opened.close()
    [note] = [r.entry.body["text"] for r in records if r.entry.kind == "note"]
    assert leaks(values, stored(home)) == {}
    assert params["conn"].startswith("Conn(options={'host': 'db.example.com', ")
    assert params["ns"].endswith(", seed=7)")
    assert params["param"] == "Param(key='learning_rate', value='0.001')"
    assert params["opt"] == (
        "Namespace(token_type='bpe', password_min_length=8, data_dir='/data/secret/a')"
    )
    assert note.startswith("connect with password = '")
    assert note.endswith("' then retry")


def test_a_failing_dvc_stages_printed_command_is_masked_in_the_logs(
    tmp_path, isolated_git
):
    """DVC prints a stage's command before running it, and writes it into
    ``dvc.lock`` only once it succeeded: the late masks were taken from
    ``dvc.lock`` alone (amendment 2026-12-08), so the output of a failing
    stage, the one read to find out why, kept ``--api-key VALUE`` in clear
    (ADR 0013, amendment 2026-12-08, second)."""
    home = tmp_path / "home"
    repo = tmp_path / "project"
    repo.mkdir()
    values = {"api_key": secret(), "password": secret()}
    cmd = f"python fetch.py --api-key {values['api_key']} -p {values['password']}"
    (repo / "dvc.yaml").write_text(
        f"stages:\n  fetch:\n    cmd: {cmd}\n    outs:\n    - raw.csv\n"
        "  train:\n    foreach: [a, b]\n    do:\n      cmd: python train.py ${item}\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dvc = bin_dir / "dvc"  # stands in for a `dvc repro` whose stage fails
    dvc.write_text(
        "#!/bin/sh\n"
        "echo \"Running stage 'fetch':\"\n"
        "sed -n 's/^    cmd: /> /p' dvc.yaml\n"
        "echo 'ERROR: failed to reproduce fetch: exit code 1' >&2\nexit 1\n"
    )
    dvc.chmod(0o755)
    (repo / "fetch.py").write_text("print('fetch')\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    done = cli(home, repo, "run", "--", "dvc", "repro", env={"PATH": path})
    assert done.returncode == 1, done.stderr.decode()[-2000:]
    outputs = stored(home)
    [run] = json.loads(cli(home, repo, "runs", "--json").stdout)
    outputs["logs"] = cli(home, repo, "logs", run["id"]).stdout
    assert leaks(values, outputs) == {}
    assert b"> python fetch.py --api-key [MASKED:" in outputs["logs"]


def test_a_datasets_role_or_an_artifacts_name_holding_a_credential_is_kept(tmp_path):
    """A dataset's role and an artifact's name are free text that must stay a
    string, as a note or a step's name (amendment 2026-12-08): with a
    credential shape in it, the whole string was committed, a mapping the
    schema refuses, and ``log_dataset`` and ``log_artifact`` raised (ADR 0013,
    amendment 2026-12-08, second)."""
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/attacks", env={})
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")
    hf = "hf_" + secret(34)
    run = mltrail.start_run("named", home=home)
    run.log_dataset(data, role=f"train pulled with {hf}")
    run.log_artifact(data, name=f"model pushed with {hf}")
    run.end()
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        bodies = {r.entry.kind: r.entry.body for r in opened.ledger.records()}
    finally:
        opened.close()
    assert bodies["run.data"]["role"] == "train pulled with [MASKED:secret]"
    assert bodies["run.artifact"]["name"] == "model pushed with [MASKED:secret]"
    assert leaks({"hf": hf}, stored(home)) == {}
