"""``parse_dvc_lock`` reads untrusted ``dvc.lock`` text: it returns stages or raises
``InputError``, never another error, and what it returns is plain JSON values."""

import contextlib
import json

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.capture.data.dvc_lock import (
    DvcStage,
    is_dvc_pipeline,
    parse_dvc_lock,
    stage_wdirs,
)
from mltrail.errors import InputError

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=20,
)
_file = st.fixed_dictionaries(
    {"path": st.one_of(st.text(max_size=10), st.integers())},
    optional={
        "md5": st.one_of(st.text(max_size=40), st.just("d" * 32), st.integers()),
        "size": _values,
        "nfiles": _values,
        "hash": _values,
    },
)
_stage = st.fixed_dictionaries(
    {},
    optional={
        "cmd": st.one_of(st.text(max_size=10), st.lists(_values, max_size=3)),
        "deps": st.one_of(st.lists(_file, max_size=3), _values),
        "outs": st.one_of(st.lists(_file, max_size=3), _values),
        "params": st.one_of(st.dictionaries(st.text(max_size=8), _values), _values),
    },
)
_locks = st.one_of(
    st.fixed_dictionaries(
        {
            "schema": st.just("2.0"),
            "stages": st.dictionaries(st.text(max_size=8), _stage),
        }
    ),
    st.dictionaries(st.text(max_size=8), st.one_of(_stage, _values)),
    _values,
)


def _check(text):
    try:
        stages = parse_dvc_lock(text)
    except InputError as e:
        error = str(e)
        stages = []
    else:
        error = ""
    assert "\n" not in error
    for stage in stages:
        assert isinstance(stage, DvcStage)
        json.dumps(stage.params, allow_nan=False)
        assert all(isinstance(c, str) for c in stage.command)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_locks)
def test_any_yaml_shaped_lock_parses_or_raises_input_error(data):
    _check(yaml.safe_dump(data))


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_input_error(text):
    _check(text)
    with contextlib.suppress(InputError):
        stage_wdirs(text)


def test_recursive_aliases_and_odd_values_are_clean_errors_or_strings():
    recursive = "schema: '2.0'\nstages: {s: {params: {p.yaml: &a {x: *a}}}}"
    with pytest.raises(InputError, match="params nested deeper"):
        parse_dvc_lock(recursive)
    [stage] = parse_dvc_lock(
        "schema: '2.0'\nstages: {s: {params: {p.yaml: {d: 2024-01-02, n: .nan, "
        "big: 123456789012345678901234567890}}}}"
    )
    assert stage.params == {
        "p.yaml": {
            "d": "2024-01-02",
            "n": "nan",
            "big": "123456789012345678901234567890",
        }
    }


def test_a_real_lock_is_read():
    text = (
        "schema: '2.0'\nstages:\n  train:\n    cmd: python train.py\n    deps:\n"
        "    - path: data.csv\n      hash: md5\n      md5: 0cf2d9456e4869e2af0d8c8380a25c90\n"
        "      size: 10\n    outs:\n    - path: out\n      hash: md5\n"
        "      md5: 0cf2d9456e4869e2af0d8c8380a25c90.dir\n      size: 10\n      nfiles: 2\n"
    )
    [stage] = parse_dvc_lock(text)
    assert stage.command == ["python train.py"]
    assert stage.deps[0].to_dict() == {
        "md5": "0cf2d9456e4869e2af0d8c8380a25c90",
        "hash": "md5",
        "size": 10,
    }
    assert stage.outs[0].nfiles == 2


def test_dvc_pipeline_commands_are_recognised():
    assert is_dvc_pipeline(["dvc", "repro"])
    assert is_dvc_pipeline(["/usr/bin/dvc", "-q", "repro", "train"])
    assert is_dvc_pipeline(["dvc", "exp", "run", "-S", "lr=0.1"])
    assert is_dvc_pipeline(["python3", "-m", "dvc", "repro"])
    assert not is_dvc_pipeline(["dvc", "add", "data"])
    assert not is_dvc_pipeline(["python", "train.py", "repro"])
    assert not is_dvc_pipeline([])
