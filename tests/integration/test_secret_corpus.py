"""No secret ever stored: a corpus of secret shapes through real `mltrail run` and
`mltrail step` in a real git repository, then every byte under the home is read.

Each secret is printed to stdout and to stderr, written into a tracked file (so
it is in the run's uncommitted diff) and into the step's script. The ones with a
secret *name* reach mltrail as environment variables, arguments or config keys
(masked by value); the others have only their *shape* (found by the detector).
The fakes are generated at run time from random characters in the right shape
(never real credentials; no literal token in this file for scanners to flag).
"""

import base64
import json
import os
import random
import string
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

import mltrail

RNG = random.Random(20240612)
ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
B64 = string.ascii_letters + string.digits + "+/"


def rand(alphabet: str, n: int) -> str:
    """``n`` random characters of ``alphabet``, with one of each of its kinds
    (lowercase, uppercase, digit): a random token, as real ones are."""
    kinds = [g for g in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
             if set(g) & set(alphabet)]  # fmt: skip
    while True:
        text = "".join(RNG.choice(alphabet) for _ in range(n))
        if all(any(c in kind for c in text) for kind in kinds):
            return text


def pem() -> str:
    body = "\n".join(rand(B64, 64) for _ in range(6))
    kind = "RSA " + "PRIVATE KEY"
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----"


def jwt() -> str:
    head = (
        base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    )
    claims = base64.urlsafe_b64encode(b'{"sub":"1234567890"}').rstrip(b"=").decode()
    return f"{head}.{claims}.{rand(ALNUM, 43)}"


# name -> (secret, how mltrail learns it, the line printed / written)
# how: "env:NAME", "arg", "config", or "shape" (nothing but its shape)
def corpus() -> dict[str, tuple[str, str, str]]:
    c: dict[str, tuple[str, str, str]] = {}

    def add(name, secret, how, line=None):
        default = (
            f"{how[4:]}={secret}" if how.startswith("env:") else f"{name}={secret}"
        )
        c[name] = (secret, how, line or default)

    add("aws_key_id", "AKIA" + rand(UPPER_DIGITS, 16), "shape", None)
    add("aws_secret", rand(B64, 40), "env:AWS_SECRET_ACCESS_KEY")
    add("gcp_api_key", "AIza" + rand(ALNUM + "_-", 35), "shape")
    add("gcp_private_key_id", rand("0123456789abcdef", 40), "config")
    add("azure_account_key", rand(B64, 86) + "==", "shape")
    c["azure_account_key"] = (
        c["azure_account_key"][0],
        "shape",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey="
        f"{c['azure_account_key'][0]};EndpointSuffix=core.windows.net",
    )
    conn = rand(B64, 44)
    add("azure_conn_env", conn, "env:AZURE_STORAGE_CONNECTION_STRING",
        f"AccountName=a;AccountKey={conn};EndpointSuffix=core.windows.net")  # fmt: skip
    add("hf_token", "hf_" + rand(ALNUM, 34), "shape")
    add("github_token", "ghp_" + rand(ALNUM, 36), "shape")
    add("github_pat", "github_pat_" + rand(ALNUM + "_", 40), "shape")
    add("gitlab_token", "glpat-" + rand(ALNUM, 20), "shape")
    add("openai_key", "sk-" + rand(ALNUM, 48), "shape")
    add("openai_project_key", "sk-proj-" + rand(ALNUM + "_-", 40), "shape")
    add(
        "slack_token",
        "xoxb-" + rand(string.digits, 12) + "-" + rand(ALNUM, 24),
        "shape",
    )
    add("stripe_key", "sk_live_" + rand(ALNUM, 24), "shape")
    add("sendgrid_key", "SG." + rand(ALNUM, 22) + "." + rand(ALNUM, 43), "shape")
    add("jwt", jwt(), "shape")
    add("pem_key", pem(), "shape", None)
    db_pw = rand(ALNUM, 14)
    add("postgres_url_password", db_pw, "env:DATABASE_URL",
        f"postgres://app:{db_pw}@db.example.com:5432/runs")  # fmt: skip
    mongo_pw = rand(ALNUM, 16)
    add("mongo_url_password", mongo_pw, "shape",
        f"mongodb+srv://svc:{mongo_pw}@cluster0.example.net/db")  # fmt: skip
    add("bearer_token", rand(ALNUM, 32), "shape")
    c["bearer_token"] = (
        c["bearer_token"][0],
        "shape",
        f"Authorization: Bearer {c['bearer_token'][0]}",
    )
    add("hf_token_env", rand(string.ascii_lowercase, 20), "env:HF_TOKEN")
    add("service_secret", rand(ALNUM, 18), "env:MY_API_SECRET")
    add("db_pass", rand(ALNUM, 12), "env:DB_PASS")
    add("pgpassword", rand(ALNUM, 12), "env:PGPASSWORD")
    add("dbpassword", rand(ALNUM, 12), "env:DBPASSWORD")
    add("adminpassword", rand(ALNUM, 12), "env:ADMINPASSWORD")
    add("creds", rand(ALNUM, 16), "env:SERVICE_CREDS")
    add("wandb_key", rand("0123456789abcdef", 40), "env:WANDB_API_KEY")
    add("arg_password", rand(ALNUM, 12), "arg:--password=")
    add("arg_db_pass", rand(ALNUM, 12), "arg:--db-pass")
    add("arg_p", rand(ALNUM, 10), "arg:-p")
    add("sh_c_password", rand(ALNUM, 12), "arg:sh")
    add("config_api_key", rand(ALNUM, 24), "config")
    add("config_nested_password", rand(ALNUM, 14), "config")
    return c


CORPUS = corpus()


def script_text() -> str:
    lines = {name: line for name, (_, _, line) in CORPUS.items()}
    return "\n".join(
        [
            "import sys",
            f"LINES = {json.dumps(lines, indent=4)}",
            "for name, line in LINES.items():",
            "    print(line)",
            "    print(line, file=sys.stderr)",
            'print("argv", *sys.argv[1:])',
            'print("argv", *sys.argv[1:], file=sys.stderr)',
            "",
        ]
    )


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def run_cli(home: Path, cwd: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    full = {**os.environ, "MLTRAIL_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args], cwd=cwd, env=full,
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip


def env_secrets() -> dict[str, str]:
    env = {}
    for secret, how, line in CORPUS.values():
        if how.startswith("env:"):
            name = how[4:]
            whole = name in ("DATABASE_URL", "AZURE_STORAGE_CONNECTION_STRING")
            env[name] = line if whole else secret
    return env


def arg_list() -> list[str]:
    return [
        "--password=" + CORPUS["arg_password"][0],
        "--db-pass",
        CORPUS["arg_db_pass"][0],
        "-p",
        CORPUS["arg_p"][0],
        "--config",
        "conf.yaml",
    ]


def config_text() -> str:
    return (
        f"api_key: {CORPUS['config_api_key'][0]}\n"
        f"db:\n  password: {CORPUS['config_nested_password'][0]}\n"
        f"gcp:\n  private_key_id: {CORPUS['gcp_private_key_id'][0]}\n"
        "lr: 0.01\n"
    )


@pytest.fixture
def project(tmp_path, isolated_git):
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "step.py").write_text("print('placeholder')\n")
    (repo / "train.py").write_text("LR = 0.1\n")
    (repo / "raw.csv").write_text("a,b\n1,2\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    # dirty: every secret in the tracked scripts and a config beside them
    (repo / "step.py").write_text(script_text())
    (repo / "train.py").write_text("LR = 0.1\n" + script_text())
    (repo / "conf.yaml").write_text(config_text())
    return repo


def forms(secret: str, line: str) -> set[bytes]:
    """The secret's bytes, percent-encoded, and the Basic-auth form of a URL's
    user:password."""
    out = {secret.encode(), quote(secret, safe="").encode()}
    for part in secret.splitlines() if "\n" in secret else []:
        if len(part) >= 16 and "PRIVATE KEY" not in part:
            out.add(part.encode())
    if "://" in line and "@" in line:
        user = line.split("://", 1)[1].split(":", 1)[0]
        out.add(base64.b64encode(f"{user}:{secret}".encode()))
    return out


def everything_under(home: Path) -> bytes:
    return b"\0".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


def test_no_secret_of_the_corpus_is_stored_anywhere(tmp_path, project):
    assert len(CORPUS) >= 30
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/corpus", env={})
    env = env_secrets()
    sh = (
        f"PGPASSWORD={CORPUS['sh_c_password'][0]} {sys.executable} step.py "
        + " ".join(arg_list())
    )
    ran = run_cli(
        home, project, "run", "--", sys.executable, "train.py", *arg_list(), env=env
    )
    assert ran.returncode == 0, ran.stderr.decode()[-2000:]
    stepped = run_cli(
        home, project, "step", "--in", "raw.csv", "--", sys.executable, "step.py",
        *arg_list(), env=env,
    )  # fmt: skip
    assert stepped.returncode == 0, stepped.stderr.decode()[-2000:]
    shelled = run_cli(home, project, "run", "--", "sh", "-c", sh, env=env)
    assert shelled.returncode == 0, shelled.stderr.decode()[-2000:]
    # the command really printed them: the terminal got the clear values
    for secret, _, _ in CORPUS.values():
        assert secret.splitlines()[1 if "\n" in secret else 0] in ran.stdout.decode()

    stored = everything_under(home)
    shown = b"".join(
        run_cli(home, project, *args).stdout
        for args in (["log", "--json"], *(["show", str(n), "--full", "--json"]
                     for n in range(_size(home))))
    )  # fmt: skip
    leaks = {
        name: form
        for name, (secret, _, line) in CORPUS.items()
        for form in forms(secret, line)
        if form in stored or form in shown
    }
    assert leaks == {}
    assert b"[MASKED:" in stored


def _size(home: Path) -> int:
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        return opened.ledger.head().size
    finally:
        opened.close()
