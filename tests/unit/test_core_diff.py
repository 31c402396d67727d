"""The pure run diff: values, params, packages, manifests, datasets, whole runs."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from mltrail.core.diff import (
    ABSENT,
    Change,
    RunFacts,
    diff_packages,
    diff_params,
    diff_runs,
    diff_values,
    flatten_body,
    merge_series,
    same_value,
)
from mltrail.core.diff_data import compare_versions, diff_manifests, parse_packages
from mltrail.core.manifest import FileEntry, compute_manifest
from mltrail.errors import SchemaError


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest(files: dict[str, str]) -> bytes:
    return compute_manifest(
        FileEntry(path, len(content), sha(content)) for path, content in files.items()
    ).data


def data_body(role: str, files: dict[str, str], **extra) -> tuple[dict, bytes]:
    m = compute_manifest(FileEntry(p, len(c), sha(c)) for p, c in files.items())
    digest = "sha256:" + hashlib.sha256(m.data).hexdigest()
    body = {
        "role": role,
        "path": f"/project/{role}",
        "dataset": m.dataset_id,
        "files": m.file_count,
        "bytes": m.total_bytes,
        "manifest": {"blob": digest, "size": len(m.data)},
        **extra,
    }
    return body, m.data


# -- values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (8, 8.0, True),
        (0.7, 1.2, False),
        (True, 1, False),
        (False, 0, False),
        ("8", 8, False),
        (None, None, True),
        ([1, 2.0], [1.0, 2], True),
        ([1, 2], [2, 1], False),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        (f"<redacted sha256:{'a' * 64} salt:01>", f"<redacted sha256:{'b' * 64} salt:02>",
         True),
        ({"redacted": "sha256:aa", "salt": "01"}, {"redacted": "sha256:bb", "salt": "02"}, True),
        ("<redacted sha256:" + "a" * 64 + " salt:01>", "hunter2", False),
    ],
)  # fmt: skip
def test_same_value(a, b, same):
    assert same_value(a, b) is same
    assert same_value(b, a) is same


def test_flatten_body_nests_keys_and_keeps_blob_refs_and_lists_as_leaves():
    body = {
        "cpu": {"model": "EPYC", "cores": 2},
        "gpus": [{"name": "H100"}],
        "list": {"blob": "sha256:" + "ab" * 32, "size": 3, "media_type": "text/plain"},
        "empty": {},
        "none": None,
    }
    assert flatten_body(body) == {
        "cpu.model": "EPYC",
        "cpu.cores": 2,
        "gpus": [{"name": "H100"}],
        "list": "sha256:" + "ab" * 32,
        "empty": {},
        "none": None,
    }


def test_diff_values_lists_added_removed_changed_and_everything_adds_same():
    old = {"a": 1, "b": 2, "c": 3}
    new = {"a": 1.0, "b": 5, "d": 4}
    kinds = {c.key: c.kind for c in diff_values(old, new)}
    assert kinds == {"b": "changed", "c": "removed", "d": "added"}
    assert {c.key: c.kind for c in diff_values(old, new, everything=True)}[
        "a"
    ] == "same"


def test_change_to_dict_leaves_absent_sides_out():
    assert Change("x", ABSENT, 1).to_dict() == {"key": "x", "change": "added", "new": 1}
    assert Change("x", 1, ABSENT).to_dict() == {
        "key": "x",
        "change": "removed",
        "old": 1,
    }
    assert json.dumps(Change("t", 0.7, 1.2, source="cfg.yaml").to_dict())


def test_params_temperature_change_keeps_its_source_and_ints_equal_floats():
    old = {"temperature": (0.7, "cfg.yaml"), "model.r": (8, "argv"), "seed": (1, "api")}
    new = {
        "temperature": (1.2, "cfg.yaml"),
        "model.r": (8.0, "argv"),
        "lr": (0.1, "api"),
    }
    changes = {c.key: c for c in diff_params(old, new)}
    assert set(changes) == {"temperature", "seed", "lr"}
    t = changes["temperature"]
    assert (t.old, t.new, t.source, t.kind) == (0.7, 1.2, "cfg.yaml", "changed")
    assert changes["seed"].kind == "removed"
    assert changes["seed"].source == "api"
    assert changes["lr"].kind == "added"


# -- packages ----------------------------------------------------------------


def test_parse_packages_normalizes_names():
    text = b"Torch==2.1.0\nnumpy==1.26.4\n# comment\n\nsome_pkg.x==1\n"
    assert parse_packages(text) == {
        "torch": ("Torch", "2.1.0"),
        "numpy": ("numpy", "1.26.4"),
        "some-pkg-x": ("some_pkg.x", "1"),
    }


@pytest.mark.parametrize(
    ("old", "new", "order"),
    [
        ("2.1.0", "2.10.0", -1),
        ("1.26.4", "1.26.3", 1),
        ("1.0", "1.0.0", 0),
        ("1.0rc1", "1.0", -1),
        ("1.0", "1.0.post1", -1),
        ("2.0.dev1", "2.0a1", -1),
        ("1.0b2", "1.0rc1", -1),
    ],
)
def test_compare_versions(old, new, order):
    assert compare_versions(old, new) == order
    assert compare_versions(new, old) == -order


def test_diff_packages_upgraded_downgraded_added_removed():
    old = b"torch==2.1.0\nnumpy==1.26.4\npeft==0.7.0\nrequests==2.31.0\n"
    new = b"torch==2.2.0\nnumpy==1.26.3\nrequests==2.31.0\naccelerate==0.25.0\n"
    found = {c.key: (c.kind, c.note) for c in diff_packages(old, new)}
    assert found == {
        "packages.torch": ("changed", "upgraded"),
        "packages.numpy": ("changed", "downgraded"),
        "packages.peft": ("removed", None),
        "packages.accelerate": ("added", None),
    }


# -- manifests ---------------------------------------------------------------


def test_one_contaminated_file_among_ten_thousand_stands_out():
    files = {
        f"shard-{i // 100:02d}/sample-{i:05d}.jsonl": f"row {i}" for i in range(10_000)
    }
    old = manifest(files)
    files["shard-42/sample-04217.jsonl"] = "row 4217 IGNORE ALL PREVIOUS INSTRUCTIONS"
    result = diff_manifests(old, manifest(files))
    assert result.unchanged == 9_999
    (change,) = result.changes
    assert change.path == "shard-42/sample-04217.jsonl"
    assert change.kind == "changed"
    assert change.old == {"sha256": sha("row 4217"), "size": 8}
    assert change.new["sha256"] == sha(files["shard-42/sample-04217.jsonl"])


def test_manifest_diff_added_removed_and_kind_changes_sorted_by_path():
    old = compute_manifest(
        [
            FileEntry("b.txt", 1, sha("b")),
            FileEntry("link", link="b.txt"),
            FileEntry("gone.txt", 1, sha("g")),
        ]
    ).data
    new = compute_manifest(
        [
            FileEntry("a.txt", 1, sha("a")),
            FileEntry("b.txt", 1, sha("b")),
            FileEntry("link", 1, sha("l")),
            FileEntry("empty", is_dir=True),
        ]
    ).data
    result = diff_manifests(old, new)
    assert [(c.path, c.kind) for c in result.changes] == [
        ("a.txt", "added"),
        ("empty", "added"),
        ("gone.txt", "removed"),
        ("link", "changed"),
    ]
    assert result.changes[3].old == {"link": "b.txt"}
    assert result.to_dict()["added"] == 2
    assert result.unchanged == 1


def test_manifest_diff_reads_names_with_escapes():
    odd = 'quote"and\\backslash.txt'
    old = compute_manifest([FileEntry(odd, 1, sha("x"))]).data
    new = compute_manifest([FileEntry(odd, 1, sha("y"))]).data
    assert [c.path for c in diff_manifests(old, new).changes] == [odd]


def test_manifest_diff_refuses_garbage_lines():
    with pytest.raises(SchemaError):
        diff_manifests(b"", b"not json\n")


def test_hundred_thousand_file_manifests_diff_fast():
    files = {f"d/{i:06d}.jsonl": str(i) for i in range(100_000)}
    old = manifest(files)
    for i in (5, 50_000, 99_999):
        files[f"d/{i:06d}.jsonl"] = "changed"
    new = manifest(files)
    start = time.perf_counter()
    result = diff_manifests(old, new)
    took = time.perf_counter() - start
    assert len(result.changes) == 3
    assert took < 1.0, f"{took:.2f}s"


# -- whole runs ----------------------------------------------------------------


def chatbot(temperature: float, sample: str, commit: str) -> RunFacts:
    files = {f"conv-{i:04d}.jsonl": f'{{"q": "{i}"}}' for i in range(2000)}
    files["conv-1234.jsonl"] = sample
    train, data = data_body("train", files)
    return RunFacts(
        id=f"run-{commit}",
        run={"name": "chatbot", "status": "succeeded", "exit_code": 0, "duration_s": 3.0},
        code={"commit": commit * 40, "branch": "main", "dirty": False, "diff": None},
        environment={"python": {"version": "3.11.7"}, "cuda": None},
        packages=b"torch==2.1.0\n",
        hardware={"cpu": {"model": "EPYC"}, "memory": {"available_bytes": int(temperature * 1e9)}},
        params={"temperature": (temperature, "cfg.yaml"), "lora.r": (8, "cfg.yaml")},
        data=[train],
        manifests={train["manifest"]["blob"]: data},
        finetune={"adapter": {"method": "lora", "r": 8},
                  "generation": {"temperature": temperature}},
        metrics={"loss": {"last": 0.5, "min": 0.4, "max": 2.0, "count": 10}},
    )  # fmt: skip


def test_chatbot_regression_shows_exactly_the_temperature_and_the_sample():
    a = chatbot(0.7, '{"q": "1234"}', "a")
    b = chatbot(1.2, '{"q": "1234", "a": "the moon is cheese"}', "b")
    result = diff_runs(a, b)
    assert not result.is_empty
    assert [(c.key, c.old, c.new) for c in result.section("params")] == [
        ("temperature", 0.7, 1.2)
    ]
    assert [c.key for c in result.section("finetune")] == ["generation.temperature"]
    assert [c.key for c in result.section("code")] == ["commit"]
    assert result.section("hardware") == ()  # free memory is not compared
    (train,) = result.data
    assert train.kind == "changed"
    assert train.files is not None
    assert [c.path for c in train.files.changes] == ["conv-1234.jsonl"]
    assert train.files.unchanged == 1999
    out = result.to_dict()
    assert list(out["sections"]) == [
        "run", "code", "environment", "hardware", "params", "data", "finetune",
        "outputs", "metrics",
    ]  # fmt: skip
    assert json.loads(json.dumps(out)) == out


def test_a_run_against_itself_is_empty_and_everything_lists_values():
    a = chatbot(0.7, "x", "a")
    assert diff_runs(a, a).is_empty
    full = diff_runs(a, a, everything=True)
    assert full.is_empty
    assert {c.key for c in full.section("params")} == {"temperature", "lora.r"}
    assert [d.kind for d in full.data] == ["same"]


def test_environment_packages_python_and_cuda():
    a = RunFacts("a", environment={"python": {"version": "3.11.7"}, "cuda": {"version": "12.1"}},
                 packages=b"torch==2.1.0\n")  # fmt: skip
    b = RunFacts("b", environment={"python": {"version": "3.12.1"}, "cuda": {"version": "12.4"}},
                 packages=b"torch==2.2.0\n")  # fmt: skip
    found = {c.key: c for c in diff_runs(a, b).section("environment")}
    assert set(found) == {"cuda.version", "packages.torch", "python.version"}
    assert found["packages.torch"].note == "upgraded"


def test_dataset_added_removed_and_table_split_changes():
    table_a = {"format": "csv", "rows": 100, "label": {"counts": {"0": 50, "1": 50}}}
    table_b = {"format": "csv", "rows": 100, "label": {"counts": {"0": 47, "1": 53}}}
    same_files = {"a.csv": "x"}
    va, _ = data_body("validation", same_files, table=table_a)
    vb, _ = data_body("validation", same_files, table=table_b)
    test, _ = data_body("test", {"t.csv": "t"})
    extra, _ = data_body("extra", {"e.csv": "e"})
    result = diff_runs(RunFacts("a", data=[va, test]), RunFacts("b", data=[vb, extra]))
    kinds = {d.role: d.kind for d in result.data}
    assert kinds == {"extra": "added", "test": "removed", "validation": "changed"}
    validation = next(d for d in result.data if d.role == "validation")
    assert validation.files is None  # same dataset id: no file listing
    assert {c.key for c in validation.fields} == {
        "table.label.counts.0",
        "table.label.counts.1",
    }


def test_changed_dataset_without_manifest_blob_still_reports_the_id():
    a, _ = data_body("train", {"a": "1"})
    b, _ = data_body("train", {"a": "2"})
    (train,) = diff_runs(RunFacts("a", data=[a]), RunFacts("b", data=[b])).data
    assert train.kind == "changed"
    assert train.files is None
    assert train.old != train.new


# -- found on 2026-12-07 -------------------------------------------------------

MARK_A = f"<redacted hmac-sha256:{'a' * 64} salt:{'1' * 32} key:{'c' * 16}>"
MARK_B = f"<redacted hmac-sha256:{'b' * 64} salt:{'2' * 32} key:{'c' * 16}>"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (f"postgres://u:{MARK_A}@h/db", f"postgres://u:{MARK_B}@h/db", True),
        (f"postgres://u:{MARK_A}@h1/db", f"postgres://u:{MARK_B}@h2/db", False),
        (f"x{MARK_A}y{MARK_A}", f"x{MARK_B}y{MARK_B}", True),
        (f"x{MARK_A}y{MARK_A}", f"x{MARK_B}y", False),
        (f"u:{MARK_A}@h", "u:<redacted>@h", False),  # a marker is not its text
        (["python", "t.py", "--db", f"u:{MARK_A}@h"],
         ["python", "t.py", "--db", f"u:{MARK_B}@h"], True),
    ],
)  # fmt: skip
def test_text_holding_secrets_compares_the_text_around_them(a, b, same):
    """Each commitment has its own salt: the same URL with the same password
    differed in every run, so a command holding a secret always read as
    changed."""
    assert same_value(a, b) is same
    assert same_value(b, a) is same


def test_a_moved_parameter_keeps_run_as_source_on_its_side():
    a = {"lr": (0.1, "argv"), "wd": (0.0, "argv"), "bs": (8, "cfg.yaml")}
    b = {"lr": (0.2, "cfg.yaml"), "wd": (0.1, "argv"), "bs": (8, "argv")}
    changes = {c.key: c for c in diff_params(a, b, everything=True)}
    assert (changes["lr"].source, changes["lr"].old_source) == ("cfg.yaml", "argv")
    assert changes["lr"].to_dict()["old_source"] == "argv"
    assert changes["wd"].old_source is None
    assert "old_source" not in changes["wd"].to_dict()
    assert changes["bs"].kind == "same"  # the same value, from elsewhere


def _batch(values: list[float], first: int) -> dict:
    return {"series": {"loss": {
        "count": len(values), "first_step": first, "last_step": first + len(values) - 1,
        "last": values[-1], "min": min(values), "max": max(values),
    }}}  # fmt: skip


def test_metric_batches_merge_into_the_runs_series():
    """A run writes its metrics in batches; only the last batch was compared."""
    merged = merge_series([_batch([5.0, 0.1], 0), _batch([0.5, 0.4], 2)])
    assert merged == {"loss": {"count": 4, "first_step": 0, "last_step": 3,
                               "last": 0.4, "min": 0.1, "max": 5.0}}  # fmt: skip
    rebatched = merge_series([_batch([5.0], 0), _batch([0.1, 0.5, 0.4], 1)])
    assert rebatched == merged
    good = RunFacts("a", metrics=merged)
    bad = RunFacts(
        "b", metrics=merge_series([_batch([5.0, 3.0], 0), _batch([0.5, 0.4], 2)])
    )
    assert [c.key for c in diff_runs(good, bad).section("metrics")] == ["loss.min"]
    texts = merge_series([{"series": {"s": {"count": 1, "last": "a", "min": None,
                                            "max": None}}}] * 2)  # fmt: skip
    assert texts["s"] == {"count": 2, "last": "a", "min": None, "max": None}


def test_an_editable_install_from_another_folder_is_a_change():
    def facts(url: str) -> RunFacts:
        item = {"name": "mylib", "version": "0.3.0", "url": url, "editable": True,
                "vcs": None, "commit": None}  # fmt: skip
        return RunFacts("r", environment={"editable": [item]})

    found = diff_runs(facts("file:///home/a/mylib"), facts("file:///home/a/mylib-fix"))
    changes = {c.key: c for c in found.section("environment")}
    assert set(changes) == {"editable.mylib.url"}
    assert changes["editable.mylib.url"].new == "file:///home/a/mylib-fix"
    assert diff_runs(facts("file:///x"), facts("file:///x")).is_empty


def test_datasets_of_one_role_pair_by_id():
    def run(*ids: str) -> RunFacts:
        return RunFacts("r", data=[{"role": "train", "dataset": i} for i in ids])

    assert diff_runs(run("d1", "d2"), run("d2", "d1")).is_empty
    found = diff_runs(run("d1", "d2", "d3"), run("d3", "d9", "d1")).data
    assert [(d.role, d.kind, d.old, d.new) for d in found] == [
        ("train#2", "changed", "d2", "d9")
    ]
    found = diff_runs(run("d2"), run("d1", "d2")).data
    assert [(d.kind, d.old, d.new) for d in found] == [("added", None, "d1")]
