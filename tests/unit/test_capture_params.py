"""Hyperparameters from argv and config files (mltrail.capture.run.params)."""

import json
import math
import re
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from mltrail.capture.run.params import (
    ConfigFile,
    ParsedArgs,
    coerce_value,
    flatten,
    json_safe,
    load_config,
    parse_argv,
    split_command,
)
from mltrail.errors import InputError

# --- split_command ------------------------------------------------------------------

SPLITS = [
    (["python", "train.py", "--lr", "1"], 2),
    (["/usr/bin/python3.11", "train.py"], 2),
    (["python", "-u", "-O", "-X", "dev", "-W", "ignore", "train.py", "a"], 8),
    (["python", "-Wignore", "-Xfaulthandler", "-uB", "train.py", "a"], 5),
    (["python", "-m", "pkg.train", "--lr", "1"], 3),
    (["python", "-mpkg.train", "--lr", "1"], 2),
    (["python", "-um", "pkg.train", "--lr", "1"], 3),
    (["python", "-c", "import sys; print(sys.argv)", "a"], 3),
    (["python", "--check-hash-based-pycs", "always", "t.py", "a"], 4),
    (["python", "-", "a"], 2),
    (["python"], 1),
    (["python", "-u"], 2),
    (["torchrun", "--nproc-per-node", "8", "--standalone", "train.py", "--lr", "1"], 5),
    (["torchrun", "--nproc_per_node=8", "--nnodes=1", "train.py", "--lr", "1"], 4),
    (["torchrun", "--nnodes", "2", "--rdzv-endpoint", "h:29500", "-m", "pkg", "x"], 7),
    (["torchrun", "--some-new-option", "v", "train.py", "x"], 4),
    (["torchrun", "--some-new-flag", "train.py", "x"], 3),
    (
        ["accelerate", "launch", "--config_file", "a.yaml", "--multi_gpu", "t.py", "x"],
        6,
    ),
    (["accelerate", "launch", "--num_processes", "2", "-m", "pkg.train", "x"], 6),
    (["accelerate", "env"], 1),
    (["deepspeed", "--num_gpus", "2", "train.py", "--deepspeed", "ds.json"], 4),
    (["python", "-m", "torch.distributed.run", "--nnodes", "1", "train.py", "a"], 6),
    (["python", "-m", "torch.distributed.launch", "--use_env", "train.py", "a"], 5),
    (["./train.sh", "--lr", "1"], 1),
    (["train.py", "--lr", "1"], 1),
    (["nvidia-smi"], 1),
    (["pythonista", "x"], 1),
]


@pytest.mark.parametrize(("argv", "end"), SPLITS, ids=[" ".join(a) for a, _ in SPLITS])
def test_split_command(argv, end):
    assert split_command(argv) == (argv[:end], argv[end:])


def test_split_empty_command():
    assert split_command([]) == ([], [])


# --- coerce_value -------------------------------------------------------------------

COERCIONS = [
    ("12", 12),
    ("-3", -3),
    ("+5", 5),
    ("0", 0),
    ("007", "007"),
    ("0.1", 0.1),
    ("1e-3", 1e-3),
    ("-1E+3", -1000.0),
    (".5", 0.5),
    ("2.", 2.0),
    ("1_000", "1_000"),
    ("1e400", "1e400"),
    ("nan", "nan"),
    ("inf", "inf"),
    ("-inf", "-inf"),
    ("0x10", "0x10"),
    ("true", True),
    ("True", True),
    ("false", False),
    ("False", False),
    ("TRUE", "TRUE"),
    ("yes", "yes"),
    ("null", None),
    ("None", None),
    ("~", None),
    ("[1, 2, 3]", [1, 2, 3]),
    ("[a,b]", ["a", "b"]),
    ("[]", []),
    ("{a: 1, b: [x]}", {"a": 1, "b": ["x"]}),
    ("{a:1,b:{c:2}}", {"a": 1, "b": {"c": 2}}),
    ("{url: http://x:80/y}", {"url": "http://x:80/y"}),
    ("[1,", "[1,"),
    ("{a: [}", "{a: [}"),
    ("", ""),
    ("resnet50", "resnet50"),
    ("héllo wörld", "héllo wörld"),
    ("٣", "٣"),
    ("9" * 5000, "9" * 5000),  # past Python's int conversion limit: stays text
]


@pytest.mark.parametrize(("text", "expected"), COERCIONS)
def test_coerce_value(text, expected):
    got = coerce_value(text)
    assert got == expected
    assert type(got) is type(expected)


# --- parse_argv ---------------------------------------------------------------------

ARGV_FORMS = [
    (["--lr", "0.1"], {"lr": 0.1}),
    (["--lr=0.1"], {"lr": 0.1}),
    (["-lr", "0.1"], {"lr": 0.1}),
    (["-lr=0.1"], {"lr": 0.1}),
    (["--verbose"], {"verbose": True}),
    (["--no-cuda"], {"no-cuda": True}),
    (["-abc"], {"abc": True}),
    (["--lr", "-0.1"], {"lr": -0.1}),
    (["--shift", "-5"], {"shift": -5}),
    (["--tag", "a", "--tag", "b"], {"tag": ["a", "b"]}),
    (["--layers", "64", "128", "256"], {"layers": [64, 128, 256]}),
    (["--layers", "1", "2", "--layers", "3"], {"layers": [[1, 2], 3]}),
    (["--name="], {"name": ""}),
    (["--opt=a=b"], {"opt": "a=b"}),
    (["--dims=[1,2]"], {"dims": [1, 2]}),
    (["--flag", "--lr", "1"], {"flag": True, "lr": 1}),
    (["model=resnet"], {"model": "resnet"}),
    (["+trainer.devices=2"], {"trainer.devices": 2}),
    (["++optim.lr=1e-4"], {"optim.lr": 1e-4}),
    (["model.layers=[64,128]"], {"model.layers": [64, 128]}),
    (["db=null"], {"db": None}),
    (["--lr", "0.1", "model=resnet"], {"lr": 0.1, "model": "resnet"}),
    (["hydra/launcher=joblib"], {"hydra/launcher": "joblib"}),
    (["--big", str(2**60)], {"big": str(2**60)}),
    (["---", "--=x"], {}),
]


@pytest.mark.parametrize(
    ("args", "params"), ARGV_FORMS, ids=[" ".join(a) for a, _ in ARGV_FORMS]
)
def test_parse_argv_forms(args, params, tmp_path):
    parsed = parse_argv(args, cwd=tmp_path)
    assert parsed.params == params
    for key, value in params.items():
        assert type(parsed.params[key]) is type(value)


def test_positionals_removals_and_double_dash(tmp_path):
    parsed = parse_argv(
        [
            "data/",
            "extra",
            "~seed",
            "~db.pass=x",
            "--lr",
            "1",
            "--",
            "--not-an-option",
            "x=1",
        ],
        cwd=tmp_path,
    )
    assert parsed == ParsedArgs(
        params={"lr": 1},
        positional=["data/", "extra", "--not-an-option", "x=1"],
        removed=["seed", "db.pass"],
        config_files=[],
    )


def test_stdin_dash_and_home_paths_are_values(tmp_path):
    parsed = parse_argv(["-", "--out", "~/runs"], cwd=tmp_path)
    assert parsed.positional == ["-"]
    assert parsed.params == {"out": "~/runs"}


def test_config_files_are_found_deduplicated_in_order(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.yaml").write_text("x: 1\n")
    (tmp_path / "b.JSON").write_text("{}")
    (tmp_path / "c.toml").write_text("")
    (tmp_path / "dir.yaml").mkdir()
    args = [
        "conf/a.yaml",
        "--cfg=b.JSON",
        "--more",
        "c.toml",
        "./conf/a.yaml",
        "extra=conf/a.yaml",
        "--missing",
        "nope.yaml",
        "--dir",
        "dir.yaml",
        "--txt",
        "notes.txt",
    ]
    parsed = parse_argv(args, cwd=tmp_path)
    assert parsed.config_files == [
        tmp_path / "conf" / "a.yaml",
        tmp_path / "b.JSON",
        tmp_path / "c.toml",
    ]


def test_absolute_config_path(tmp_path):
    cfg = tmp_path / "cfg.yml"
    cfg.write_text("a: 1\n")
    parsed = parse_argv(["--config", str(cfg)], cwd=Path("/"))
    assert parsed.config_files == [cfg]


def test_params_are_json_safe(tmp_path):
    parsed = parse_argv(["when={d: 2024-01-02}", "--x=[.nan, .inf]"], cwd=tmp_path)
    assert parsed.params == {"when": {"d": "2024-01-02"}, "x": ["nan", "inf"]}
    json.dumps(parsed.params, allow_nan=False)


# --- flatten ------------------------------------------------------------------------


def test_flatten_nested_lists_and_empties():
    nested = {
        "optimizer": {"name": "adam", "betas": [0.9, 0.99], "extra": {}},
        "layers": [{"size": 64}, {"size": 128, "act": "relu"}],
        "grid": [[1, 2], [3]],
        "mixed": [1, {"a": 2}],
        "empty_list": [],
        "a.b": 1,
        1: "int key",
    }
    assert flatten(nested) == {
        "optimizer.name": "adam",
        "optimizer.betas": [0.9, 0.99],
        "optimizer.extra": {},
        "layers.0.size": 64,
        "layers.1.size": 128,
        "layers.1.act": "relu",
        "grid": [[1, 2], [3]],
        "mixed.0": 1,
        "mixed.1.a": 2,
        "empty_list": [],
        "a.b": 1,
        "1": "int key",
    }


def test_flatten_prefix_and_dotted_key_collision():
    assert flatten({"a": 1}, prefix="cfg") == {"cfg.a": 1}
    assert flatten({"a.b": 1, "a": {"b": 2}}) == {"a.b": 2}
    assert flatten({}) == {}


# --- json_safe ----------------------------------------------------------------------

JSON_SAFE = [
    (None, None),
    (True, True),
    (3, 3),
    (2**53 - 1, 2**53 - 1),
    (-(2**53 - 1), -(2**53 - 1)),
    (2**53, str(2**53)),
    (-(2**64), str(-(2**64))),
    (1.5, 1.5),
    (float("nan"), "nan"),
    (float("inf"), "inf"),
    (float("-inf"), "-inf"),
    (date(2024, 1, 2), "2024-01-02"),
    (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05+00:00"),
    (time(12, 30), "12:30:00"),
    (b"\x00\xff", "base64:AP8="),
    ((1, 2), [1, 2]),
    ({3, 1, 2}, [1, 2, 3]),
    (frozenset({"b", "a"}), ["a", "b"]),
    ({1: "a", None: "b", 2.5: "c"}, {"1": "a", "None": "b", "2.5": "c"}),
    ({"x": [float("nan"), {"y": (1,)}]}, {"x": ["nan", {"y": [1]}]}),
    ("caf\udce9", "caf\\udce9"),
    (Path("a/b"), repr(Path("a/b"))),
    (complex(1, 2), "(1+2j)"),
]


@pytest.mark.parametrize(("value", "expected"), JSON_SAFE)
def test_json_safe(value, expected):
    got = json_safe(value)
    assert got == expected
    json.dumps(got, allow_nan=False).encode("utf-8")


def test_json_safe_int_past_the_conversion_limit_is_hex():
    assert json_safe(16**5000) == "0x1" + "0" * 5000


# --- load_config --------------------------------------------------------------------


def test_yaml_config(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(
        "model:\n  name: résnet\n  layers: [64, 128]\n"
        "optim:\n  lr: 1.0e-3\n  schedule:\n    - {step: 10, lr: 0.1}\n"
        "seed: 7\nflag: true\nnothing: null\nwhen: 2024-01-02\nbig: 18446744073709551616\n"
        "bad: .nan\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert isinstance(cfg, ConfigFile)
    assert cfg.path == str(path)
    assert cfg.format == "yaml"
    assert cfg.data == path.read_bytes()
    assert cfg.size == len(cfg.data)
    assert len(cfg.sha256) == 64
    assert cfg.params == {
        "model.name": "résnet",
        "model.layers": [64, 128],
        "optim.lr": 1e-3,
        "optim.schedule.0.step": 10,
        "optim.schedule.0.lr": 0.1,
        "seed": 7,
        "flag": True,
        "nothing": None,
        "when": "2024-01-02",
        "big": "18446744073709551616",
        "bad": "nan",
    }


def test_yaml_multiple_documents_and_top_level_list(tmp_path):
    multi = tmp_path / "multi.yml"
    multi.write_text("a: 1\n---\nb: {c: 2}\n---\n- x\n")
    assert load_config(multi).params == {"0.a": 1, "1.b.c": 2, "2.0": "x"}
    top_list = tmp_path / "list.yaml"
    top_list.write_text("- {name: a}\n- 5\n")
    assert load_config(top_list).params == {"0.name": "a", "1": 5}


def test_json_config(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"a": {"b": [1, 2], "ü": "ö"}, "n": None, "x": float("nan")}),
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.format == "json"
    assert cfg.params == {"a.b": [1, 2], "a.ü": "ö", "n": None, "x": "nan"}


def test_toml_config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'title = "dé"\n[model]\ndepth = 12\nwhen = 1979-05-27T07:32:00Z\n'
        "[[runs]]\nlr = 0.1\n[[runs]]\nlr = 0.2\n",
        encoding="utf-8",
    )
    cfg = load_config(path)
    assert cfg.format == "toml"
    assert cfg.params == {
        "title": "dé",
        "model.depth": 12,
        "model.when": "1979-05-27T07:32:00+00:00",
        "runs.0.lr": 0.1,
        "runs.1.lr": 0.2,
    }


@pytest.mark.parametrize("name", ["e.yaml", "e.yml", "e.json", "e.toml"])
@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_config_is_empty(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    cfg = load_config(path)
    assert cfg.params == {}
    assert cfg.size == len(content)


def test_yaml_with_only_comments_is_empty(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# nothing here\n")
    assert load_config(path).params == {}


MALFORMED = [
    ("bad.yaml", "a: [1\nb: 2\n", 2),
    ("bad.yml", "a: 1\n  b: 2\n", 2),
    ("bad.json", '{"a": 1,\n "b": }\n', 2),
    ("bad.toml", 'a = 1\nb = "unterminated\n', 2),
    ("tagged.yaml", "a: !!python/object:os.system x\n", 1),
]


@pytest.mark.parametrize(("name", "content", "line"), MALFORMED)
def test_malformed_config_names_the_file_and_line(tmp_path, name, content, line):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert name in message
    assert f"line {line}" in message
    assert info.value.hint


@pytest.mark.parametrize(("name", "content"), [("s.yaml", "42\n"), ("s.json", '"x"')])
def test_scalar_top_level_is_refused(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=re.escape(name)):
        load_config(path)


def test_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(InputError, match=r"missing\.yaml"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "d.json").mkdir()
    with pytest.raises(InputError, match=r"d\.json"):
        load_config(tmp_path / "d.json")
    (tmp_path / "x.ini").write_text("[a]\n")
    with pytest.raises(InputError, match=r"x\.ini"):
        load_config(tmp_path / "x.ini")


@pytest.mark.parametrize(
    ("name", "content"),
    [("i.json", '{"a": ' + "1" * 5000 + "}"), ("i.yaml", "a: " + "1" * 5000)],
)
def test_config_with_an_unconvertible_int_is_refused(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=re.escape(name)):
        load_config(path)


def test_non_utf8_config(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"a = '\xff'\n")
    with pytest.raises(InputError, match="UTF-8"):
        load_config(path)


def test_recursive_yaml_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("a: &x [*x]\n")
    with pytest.raises(InputError, match=r"loop\.yaml"):
        load_config(path)


def test_yaml_alias_bomb_is_refused(tmp_path):
    lines = ['a0: ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{n}: [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 8)]
    lines = [line.replace(f"a{n}: [", f"a{n}: &a{n} [") for n, line in enumerate(lines)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"bomb\.yaml"):
        load_config(path)


def test_deeply_nested_json_is_refused(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 300 + "]" * 300)
    with pytest.raises(InputError, match=r"deep\.json"):
        load_config(path)


def test_config_params_survive_strict_json(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: .inf\nb: -.inf\nc: {d: [.nan]}\n")
    cfg = load_config(path)
    assert cfg.params == {"a": "inf", "b": "-inf", "c.d": ["nan"]}
    assert not any(isinstance(v, float) and math.isnan(v) for v in cfg.params.values())
    json.dumps(cfg.params, allow_nan=False)
