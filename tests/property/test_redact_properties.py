"""Property tests for secret redaction (mltrail.capture.run.redact).

Secrets are drawn from an alphabet (uppercase letters and a few symbols) that nothing
else in the generated input or in a commitment uses, so "the secret does not appear
in the output" cannot pass or fail by coincidence.
"""

import copy
import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.capture.run import commitment as keyed
from mltrail.capture.run.argv_secrets import redact_argv
from mltrail.capture.run.commitment import CommitmentKey, Committer
from mltrail.capture.run.mask import MIN_MASK_LENGTH, MaskSet
from mltrail.capture.run.redact import is_secret_name
from mltrail.capture.run.redact import redact_tree as _redact_tree

KEY = CommitmentKey(bytes(range(32)))
COMMITTER = Committer(KEY)


def redact_tree(tree):
    return _redact_tree(tree, committer=COMMITTER)


def check_commitment(value, commitment):
    return keyed.check_commitment(value, commitment, KEY)


def check_marker(value, marker):
    return keyed.check_marker(value, marker, KEY)


SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

SECRET_KEYS = st.sampled_from(
    [
        "password",
        "HF_TOKEN",
        "api_key",
        "apiKey",
        "db_password",
        "client_secret",
        "auth",
        "access_token",
        "AWS_SECRET_ACCESS_KEY",
        "private_key",
    ]
)
# Upper-case like the upper-case names (HF_TOKEN, and the env form): a secret that is part
# of its own variable's name (TOKE, PASS) would be "found" in the kept name.
_NAME_TEXT = "API_KEY PASSWORD HF_TOKEN DB_PASSWORD SECRET AWS_SECRET_ACCESS_KEY"
SECRETS = st.text(string.ascii_uppercase + "!#%&*ÄÖÜ", min_size=4, max_size=16).filter(
    lambda s: s not in _NAME_TEXT
)
PLAIN_KEYS = st.text(string.ascii_lowercase, min_size=1, max_size=8).filter(
    lambda k: not is_secret_name(k)
)
PLAIN_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False),
    st.text(string.ascii_lowercase + string.digits + " ./", max_size=10),
)
# Under a secret key: a secret, or a container whose strings are all secrets.
SECRET_VALUES = st.recursive(
    SECRETS,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3),
        st.dictionaries(PLAIN_KEYS, children, min_size=1, max_size=3),
    ),
    max_leaves=6,
)


def _trees(secret_values: st.SearchStrategy) -> st.SearchStrategy:
    def containers(children: st.SearchStrategy) -> st.SearchStrategy:
        entries = st.one_of(
            st.tuples(PLAIN_KEYS, children), st.tuples(SECRET_KEYS, secret_values)
        )
        return st.one_of(
            st.lists(children, max_size=4),
            st.lists(entries, max_size=5).map(dict),
        )

    return st.recursive(PLAIN_SCALARS, containers, max_leaves=20)


TREES = _trees(SECRET_VALUES)


def _secrets_in(value) -> list[str]:
    if isinstance(value, str):
        return [value] if set(value) <= set(string.ascii_uppercase + "!#%&*ÄÖÜ") else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secrets_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _secrets_in(v)]
    return []


@SETTINGS
@given(TREES)
def test_no_secret_survives_in_the_dumped_tree(tree):
    secrets = [s for s in _secrets_in(tree) if len(s) >= 4]
    result = redact_tree(tree)
    dumped = json.dumps(result.value, ensure_ascii=False)
    for secret in secrets:
        assert secret not in dumped
        assert secret in result.secrets


@SETTINGS
@given(TREES)
def test_redact_tree_never_mutates_and_is_idempotent(tree):
    before = copy.deepcopy(tree)
    once = redact_tree(tree)
    assert tree == before
    twice = redact_tree(once.value)
    assert twice.value == once.value
    assert twice.secrets == ()


@SETTINGS
@given(SECRET_KEYS, st.one_of(st.text(min_size=1, max_size=20), st.integers()))
def test_secret_named_values_become_checkable_commitments(key, value):
    out = redact_tree({key: value, "lr": 0.1}).value
    assert out["lr"] == 0.1
    assert check_commitment(str(value), out[key])
    assert not check_commitment(str(value) + "x", out[key])


ARG_NAMES = st.sampled_from(
    ["api-key", "password", "hf_token", "db.password", "secret"]
)
PLAIN_ARGS = st.text(string.ascii_lowercase + string.digits + "-=.", max_size=8)


@st.composite
def argvs(draw) -> tuple[list[str], list[str]]:
    argv: list[str] = []
    secrets: list[str] = []
    for _ in range(draw(st.integers(0, 5))):
        form = draw(st.sampled_from(["equals", "space", "hydra", "env", "plain"]))
        name, secret = draw(ARG_NAMES), draw(SECRETS)
        if form == "plain":
            argv.append(draw(PLAIN_ARGS))
            continue
        secrets.append(secret)
        argv += {
            "equals": [f"--{name}={secret}"],
            "space": [f"--{name}", secret],
            "hydra": [f"+{name}={secret}"],
            "env": [f"{name.replace('.', '_').upper()}={secret}"],
        }[form]
    return argv, secrets


@SETTINGS
@given(argvs())
def test_no_secret_survives_in_argv(case):
    argv, secrets = case
    result = redact_argv(argv, committer=COMMITTER)
    joined = "\0".join(result.value)
    assert len(result.value) == len(argv)
    for secret in secrets:
        assert secret not in joined
        assert secret in result.secrets
    markers = [a[a.index("<redacted") :] for a in result.value if "<redacted" in a]
    for secret in secrets:
        assert any(check_marker(secret, m) for m in markers)


@SETTINGS
@given(
    st.lists(SECRETS, max_size=4),
    st.lists(st.one_of(SECRETS, st.text(string.ascii_lowercase + " \n")), max_size=10),
)
def test_masking_leaves_no_secret(secrets, pieces):
    data = "".join(pieces).encode("utf-8")
    out, _ = MaskSet.build(("s", s) for s in secrets).mask(data)
    for secret in secrets:
        if len(secret) >= MIN_MASK_LENGTH:
            assert secret.encode("utf-8") not in out
