"""Client mode against an in-memory twin of the server (tests/fake_server.py):
the HttpStore's contract, appends checked against pinned keys, a forked or
shrunk log refused, retries that append once, roles mapped to AuthError."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fake_server import FakeServer
from mltrail.core.keyring import make_key_proof
from mltrail.errors import AuthError, ConfigError, IntegrityError, StoreError
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.keystore import generate_signer
from mltrail.ledger.ledger import Ledger
from mltrail.storage import registry
from mltrail.storage.http import HttpStore, parse_server_url
from mltrail.testing import MemoryStore

ORIGIN = "test.example/team-a"


def _server(log=None, notes: int = 0) -> FakeServer:
    log = log or generate_signer()
    ledger = Ledger.create(MemoryStore(), log, origin=ORIGIN)
    for n in range(notes):
        ledger.append("note", {"text": f"server note {n}"})
    tokens = {
        "tok-alice": ("alice", "writer"),
        "tok-carol": ("carol", "auditor"),
    }
    return FakeServer(ledger, "team-a", tokens)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeServer]:
    """Route http:// store URLs to the fake server named by the URL's host."""
    servers: dict[str, FakeServer] = {"current": _server()}

    def factory(url: str, options: registry.StoreOptions) -> HttpStore:
        fake = servers["current"]
        return HttpStore(url, options.token, transport=fake.transport(), backoff=0)

    monkeypatch.setitem(registry._FACTORIES, "http", factory)
    return servers


def _env(tmp_path, token: str = "tok-alice", **more: str) -> dict[str, str]:
    return {
        "MLTRAIL_HOME": str(tmp_path / "home"),
        "MLTRAIL_URL": "http://fake.test/ledgers/team-a",
        "MLTRAIL_TOKEN": token,
        **more,
    }


def _registered_home(tmp_path, served):
    env = _env(tmp_path)
    created = init_home(env=env)
    home = open_home(env=env)
    proof = make_key_proof(home.ledger.signer, ORIGIN, "alice")
    home.ledger.register_key(home.ledger.signer.public_key, "alice", proof)
    assert created.created
    assert created.origin == ORIGIN
    return env, home


def test_server_urls_split_into_api_and_ledger():
    found = parse_server_url("https://h:8443/p/ledgers/team-a/")
    assert (found.api, found.ledger) == ("https://h:8443/p/api/v1", "team-a")
    assert parse_server_url("http://h/api/v1/ledgers/x").api == "http://h/api/v1"


def test_round_trip_signs_with_the_users_key_and_keeps_the_checkpoint(tmp_path, served):
    _, home = _registered_home(tmp_path, served)
    record = home.ledger.append("note", {"text": "hello from alice"})
    home.close()
    assert record.entry.actor["user"] == "alice"
    assert record.entry.sig.key == home.ledger.signer.key_id
    server = served["current"].ledger
    assert server.record(record.seq).entry == record.entry
    (trust_file,) = (tmp_path / "home/server-trust").glob("team-a@*.json")
    trust = json.loads(trust_file.read_text())
    assert f"\n{record.seq + 1}\n" in trust["checkpoint"]
    assert list(trust["log_keys"]) == [server.signer.key_id]
    reader = open_home(writable=False, env=_env(tmp_path, "tok-carol"))
    report = reader.verify()
    assert report.ok, report.verdict()
    assert reader.ledger.record(record.seq).entry.body["text"] == "hello from alice"
    assert not (tmp_path / "home/ledger.db").exists()


def test_a_lost_answer_is_retried_under_the_same_key_and_appends_once(tmp_path, served):
    _, home = _registered_home(tmp_path, served)
    fake = served["current"]
    fake.fail_next = 1  # the server appends, then the answer is lost
    before = fake.ledger.head().size
    home.ledger.append("note", {"text": "once"})
    posts = [r for r in fake.requests if r.url.path.endswith("/entries")]
    assert len(posts) == 2
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert fake.ledger.head().size == before + 1
    assert fake.appends == 1


def test_a_server_that_keeps_failing_is_a_store_error(tmp_path, served):
    _, home = _registered_home(tmp_path, served)
    served["current"].fail_next = 99
    with pytest.raises(StoreError, match="HTTP 503"):
        home.ledger.append("note", {"text": "never"})


def test_a_shrunk_log_is_refused(tmp_path, served):
    log = generate_signer()
    served["current"] = _server(log, notes=5)
    env = _env(tmp_path)
    open_home(writable=False, env=env).close()  # pins the key, keeps size 6
    served["current"] = _server(log, notes=2)  # same origin and key, fewer records
    with pytest.raises(IntegrityError, match="shrank or was rolled back"):
        open_home(writable=False, env=env)


def test_a_forked_log_is_refused(tmp_path, served):
    log = generate_signer()
    served["current"] = _server(log, notes=2)
    env = _env(tmp_path)
    open_home(writable=False, env=env).close()
    fork = _server(log, notes=2)  # same size, other records
    for n in range(3):
        fork.ledger.append("note", {"text": f"more {n}"})
    served["current"] = fork
    with pytest.raises(IntegrityError, match="forked or rewritten"):
        open_home(writable=False, env=env)


def test_a_checkpoint_by_an_unpinned_key_is_refused(tmp_path, served):
    env = _env(tmp_path)
    open_home(writable=False, env=env).close()
    served["current"] = _server(generate_signer(), notes=3)  # another log key
    with pytest.raises(IntegrityError, match="not signed by a pinned log key"):
        open_home(writable=False, env=env)


def test_trust_key_pins_only_the_given_key(tmp_path, served):
    wrong = "ab" * 32
    with pytest.raises(IntegrityError, match="does not name abababab"):
        open_home(writable=False, env=_env(tmp_path, MLTRAIL_TRUST_KEY=wrong))
    right = served["current"].ledger.signer.key_id
    home = open_home(writable=False, env=_env(tmp_path, MLTRAIL_TRUST_KEY=right))
    assert home.trust is not None
    assert home.trust.pinned_by == "--trust-key"


def test_an_auditor_token_may_not_append(tmp_path, served):
    _registered_home(tmp_path, served)
    env = _env(tmp_path, "tok-carol")
    home = open_home(env=env)
    with pytest.raises(AuthError, match="HTTP 403") as info:
        home.ledger.append("note", {"text": "no"})
    assert "tok-carol" not in str(info.value) + str(info.value.hint)
    assert info.value.exit_code == 5


def test_an_unknown_or_missing_token_is_an_auth_error(tmp_path, served):
    with pytest.raises(AuthError, match="HTTP 401"):
        open_home(writable=False, env=_env(tmp_path, "tok-nobody"))
    with pytest.raises(AuthError, match="MLTRAIL_TOKEN is not set"):
        open_home(writable=False, env=_env(tmp_path, ""))


def test_server_admin_work_is_refused_with_one_line(tmp_path, served):
    _, home = _registered_home(tmp_path, served)
    with pytest.raises(ConfigError, match="server admin's work"):
        home.ledger.rotate_key(generate_signer())
    with pytest.raises(StoreError, match="server admin's work"):
        home.ledger.store.add_checkpoint(1, "x")
    with pytest.raises(StoreError, match="server assigns seq"):
        home.ledger.store.append(lambda head: None)


def test_writing_needs_a_home_with_a_key(tmp_path, served):
    with pytest.raises(ConfigError, match="no signing key") as info:
        open_home(env=_env(tmp_path))
    assert "mltrail init" in (info.value.hint or "")


def test_the_python_api_records_a_run_through_the_server(tmp_path, served, monkeypatch):
    import mltrail

    env, home = _registered_home(tmp_path, served)
    home.close()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with mltrail.start_run("api-run", params={"lr": 0.1}, capture=False) as run:
        run.log_metrics({"auc": 0.9})
    server = served["current"].ledger
    kinds = [r.entry.kind for r in server.records() if r.entry.run == run.id]
    assert kinds[0] == "run.started"
    assert "run.metrics" in kinds
    assert kinds[-1] == "run.ended"
    assert all(r.entry.actor["user"] == "alice" for r in server.records(2))


def test_an_older_answer_consistent_with_the_kept_checkpoint_is_accepted(
    tmp_path, served
):
    """Another process of the home may keep a newer checkpoint between an
    append and the check of its answer: that is no shrink."""
    _, home = _registered_home(tmp_path, served)
    home.ledger.append("note", {"text": "first"})
    older = served["current"].ledger.store.latest_checkpoint().text
    home.ledger.append("note", {"text": "second"})
    newer = home.trust.checkpoint
    assert home.trust.accept(older).size == home.trust.accept(newer).size - 1
    assert home.trust.checkpoint == newer


def test_an_unregistered_key_is_named_with_the_command_that_registers_it(
    tmp_path, served
):
    env = _env(tmp_path)
    init_home(env=env)
    home = open_home(env=env)
    with pytest.raises(ConfigError, match="is not registered") as info:
        home.ledger.append("note", {"text": "too early"})
    assert "mltrail keys register" in (info.value.hint or "")


def test_an_embedded_home_never_loads_the_http_client(tmp_path):
    code = (
        "import sys; from mltrail.ledger.home import init_home, open_home; "
        f"init_home({str(tmp_path / 'h')!r}, env={{}}); "
        f"h = open_home({str(tmp_path / 'h')!r}, env={{}}); "
        "h.ledger.append('note', {'text': 'x'}); h.close(); "
        "print('httpx2' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False", done.stderr


def test_a_missing_http_client_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "httpx2", None)
    with pytest.raises(ConfigError, match="needs httpx2") as info:
        HttpStore("http://h/ledgers/a", "t")
    assert "mltrail[client]" in (info.value.hint or "")
