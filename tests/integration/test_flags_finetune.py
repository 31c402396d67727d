"""A changed source flags the fine-tunes of a model made from it, and answers
upstream from a model reach the source through fine-tunes and through folders.

Recorded through the real CLI (in-process; each step's command a real
subprocess): real checkpoints (a tiny ``torch.nn.Linear`` saved as a
safetensors file or a Hugging Face style folder) are written and fine-tuned.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cli_in_process import DUP, in_process_cli

pytest.importorskip("torch")
pytest.importorskip("safetensors")

TRAIN = """
import pathlib, sys, torch
from safetensors.torch import load_file, save_file
src, base, dst = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
torch.manual_seed(len(pathlib.Path(src).read_bytes()) if src != "-" else 0)
layer = torch.nn.Linear(4, 2)
state = {k: v.detach().clone().contiguous() for k, v in layer.state_dict().items()}
if base != "-":
    b = pathlib.Path(base)
    state = load_file(str(b / "model.safetensors" if b.is_dir() else b))
    state = {k: (v + 0.01).contiguous() for k, v in state.items()}
if dst.suffix:
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dst))
else:
    dst.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dst / "model.safetensors"))
    (dst / "config.json").write_text('{"model_type": "linear"}')
"""


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    run = in_process_cli(capsys, monkeypatch, tmp_path)
    project = tmp_path / "project"
    (project / "data" / "raw").mkdir(parents=True)
    monkeypatch.chdir(project)
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    (project / "dup.py").write_text(textwrap.dedent(DUP))
    (project / "data" / "raw" / "apps.csv").write_text("id,income\n1,10\n")

    run("init", "--origin", "test.mltrail.local/finetune")
    run("sources", "add", "apps", "data/raw/apps.csv")
    return run


def pretrain(cli, wrote: str) -> None:
    cli("run", "-q", "--name", "pretrain", "--data", "in=data/raw/apps.csv",
        "--output", wrote,
        "--", sys.executable, "train.py", "data/raw/apps.csv", "-", wrote)  # fmt: skip


def finetune(cli, name: str, base: str, wrote: str) -> None:
    cli("run", "-q", "--name", name, "--base-model", base, "--model-out", wrote,
        "--", sys.executable, "train.py", "-", base, wrote)  # fmt: skip


def flagged_paths(cli) -> set[str]:
    return {Path(f["path"]).name for f in json.loads(cli("flags", "--json"))}


def change_and_check(cli) -> dict:
    Path("data/raw/apps.csv").write_text("id,income\n1,99\n")
    [result] = json.loads(cli("sources", "check", "apps", "--json", code=1))
    assert result["changed"] is True
    return result


def upstream_labels(cli, ref: str) -> set[str]:
    up = json.loads(cli("lineage", "--up", ref, "--json"))
    return {
        n["id"].partition(":")[0] + ":" + n["label"].split(" ")[0] for n in up["nodes"]
    }


def traced_to_source(cli, ref: str) -> bool:
    out = json.loads(cli("trace", ref, "--json"))
    return any(n["id"] == "source:apps" for n in out["lineage"]["nodes"])


@pytest.mark.parametrize("base", ["out/base.safetensors", "out/base"])
def test_fine_tunes_of_a_model_made_from_a_source_are_flagged(cli, base):
    pretrain(cli, base)
    finetune(cli, "ft1", base, "out/ft1.safetensors")
    finetune(cli, "ft2", "out/ft1.safetensors", "out/ft2.safetensors")
    assert traced_to_source(cli, "out/ft2.safetensors")
    assert traced_to_source(cli, "out/ft1.safetensors")
    change_and_check(cli)
    assert flagged_paths(cli) == {Path(base).name, "ft1.safetensors", "ft2.safetensors"}


def test_a_fine_tune_of_a_renamed_copy_of_the_base_is_flagged(cli):
    pretrain(cli, "out/base.safetensors")
    Path("elsewhere").mkdir()
    shutil.copyfile("out/base.safetensors", "elsewhere/renamed.safetensors")
    finetune(cli, "ft1", "elsewhere/renamed.safetensors", "out/ft1.safetensors")
    assert traced_to_source(cli, "out/ft1.safetensors")
    change_and_check(cli)
    assert "ft1.safetensors" in flagged_paths(cli)


def test_a_fine_tune_of_a_copied_folder_base_is_flagged(cli):
    pretrain(cli, "out/base")
    shutil.copytree("out/base", "elsewhere/base-copy")
    finetune(cli, "ft1", "elsewhere/base-copy", "out/ft1.safetensors")
    assert traced_to_source(cli, "out/ft1.safetensors")
    change_and_check(cli)
    assert "ft1.safetensors" in flagged_paths(cli)


def test_a_model_trained_on_a_folder_holding_a_prepared_file_traces_to_the_source(cli):
    Path("out/feat").mkdir(parents=True)
    Path("out/feat/static.csv").write_text("id\n1\n")
    cli("run", "-q", "--name", "prep", "--data", "in=data/raw/apps.csv",
        "--output", "out/feat/clean.csv",
        "--", sys.executable, "dup.py", "data/raw/apps.csv", "out/feat/clean.csv", "p")  # fmt: skip
    cli("run", "-q", "--name", "train", "--data", "in=out/feat",
        "--output", "out/model.pt",
        "--", sys.executable, "dup.py", "out/feat", "out/model.pt", "t")  # fmt: skip
    labels = upstream_labels(cli, "out/model.pt")
    assert "run:prep" in labels, labels
    assert traced_to_source(cli, "out/model.pt")
    down = json.loads(cli("lineage", "--down", "source:apps", "--json"))
    up = json.loads(cli("lineage", "--up", "out/model.pt", "--json"))
    edges = [
        {(e["from"], e["to"], e["relation"]) for e in g["edges"]} for g in (down, up)
    ]
    assert edges[0] <= edges[1]  # the same links, both ways


def test_a_folder_two_levels_up_links_the_reader_to_the_writer(cli):
    Path("out/feat").mkdir(parents=True)
    dup(cli, "prep", "data/raw/apps.csv", "out/feat/clean.csv")
    dup(cli, "train", "out", "out2/model.pt")
    assert "run:prep" in upstream_labels(cli, "out2/model.pt")


def test_a_folder_reader_of_other_bytes_under_the_same_name_is_not_upstream(cli):
    Path("out/feat").mkdir(parents=True)
    Path("out/feat/clean.csv").write_text("hand-made\n")
    dup(cli, "train", "out/feat", "out/model.pt")  # before prep wrote clean.csv
    dup(cli, "prep", "data/raw/apps.csv", "out/feat/clean.csv")
    labels = upstream_labels(cli, "out/model.pt")
    assert "run:prep" not in labels, labels
    assert not traced_to_source(cli, "out/model.pt")


def dup(cli, name: str, read: str, wrote: str) -> None:
    cli("run", "-q", "--name", name, "--data", f"in={read}", "--output", wrote,
        "--", sys.executable, "dup.py", read, wrote, name)  # fmt: skip


PICKLE = """
import pathlib, sys, torch
src, base, dst = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
torch.manual_seed(len(pathlib.Path(src).read_bytes()) if src != "-" else 0)
state = torch.nn.Linear(4, 2).state_dict()
if base != "-":
    b = pathlib.Path(base)
    state = torch.load(str(b / "pytorch_model.bin" if b.is_dir() else b))
    state = {k: v + 0.01 for k, v in state.items()}
if dst.suffix:
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(dst))
else:
    dst.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(dst / "pytorch_model.bin"))
    (dst / "config.json").write_text('{"model_type": "linear"}')
"""


@pytest.mark.parametrize("base", ["out/base.pt", "out/base.pth", "out/base-hf"])
def test_fine_tunes_of_a_pytorch_pickle_base_are_flagged(cli, base):
    """A base written as a torch.save state dict (a file, or a Hugging Face
    folder with pytorch_model.bin) has the model id the fine-tune's base has."""
    Path("save_pt.py").write_text(textwrap.dedent(PICKLE))
    cli("run", "-q", "--name", "pretrain", "--data", "in=data/raw/apps.csv",
        "--output", base,
        "--", sys.executable, "save_pt.py", "data/raw/apps.csv", "-", base)  # fmt: skip
    cli("run", "-q", "--name", "ft1", "--base-model", base, "--model-out", "out/ft1.pt",
        "--", sys.executable, "save_pt.py", "-", base, "out/ft1.pt")  # fmt: skip
    cli("run", "-q", "--name", "ft2", "--base-model", "out/ft1.pt",
        "--output", "out/ft2.pt",
        "--", sys.executable, "save_pt.py", "-", "out/ft1.pt", "out/ft2.pt")  # fmt: skip
    assert traced_to_source(cli, "out/ft2.pt")
    change_and_check(cli)
    assert flagged_paths(cli) == {Path(base).name, "ft1.pt", "ft2.pt"}


def test_a_fine_tune_of_the_weights_file_inside_a_folder_base_is_flagged(cli):
    pretrain(cli, "out/base")
    finetune(cli, "ft1", "out/base/model.safetensors", "out/ft1.safetensors")
    assert traced_to_source(cli, "out/ft1.safetensors")
    change_and_check(cli)
    assert "ft1.safetensors" in flagged_paths(cli)


def test_a_fine_tune_logged_through_the_python_api_is_flagged(cli):
    import mltrail

    pretrain(cli, "out/base.safetensors")
    with mltrail.start_run("api-ft") as run:
        subprocess.run(
            [
                sys.executable,
                "train.py",
                "-",
                "out/base.safetensors",
                "out/api.safetensors",
            ],
            check=True,
        )
        info = run.log_finetune(
            base="out/base.safetensors", model="out/api.safetensors"
        )
    assert traced_to_source(cli, f"model:{info['model']['model']}")
    change_and_check(cli)
    assert "api.safetensors" in flagged_paths(cli)


@pytest.mark.parametrize("name", ["model.pt", "model.ckpt", "pytorch_model.bin"])
def test_an_output_named_like_a_pickle_that_is_none_is_a_plain_file(cli, name):
    """Bytes that are no pickle (here text) under a checkpoint's name give a
    ``model_error``, the run is recorded and the output is a file node."""
    Path("data/raw/notes.txt").write_text("hand-made\n")  # torch: KeyError 97
    dup(cli, "train", "data/raw/notes.txt", f"out/{name}")
    up = json.loads(cli("lineage", "--up", f"out/{name}", "--json"))
    assert up["root"].startswith("file:")
    assert "run:train" in upstream_labels(cli, f"out/{name}")


SPLIT = """
import pathlib, sys
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
(dst / "a.csv").write_bytes(src.read_bytes() + b"a")
(dst / "b.csv").write_bytes(src.read_bytes() + b"b")
"""


def test_a_folder_written_inside_a_read_folder_links_the_reader_to_its_writer(cli):
    Path("split.py").write_text(textwrap.dedent(SPLIT))
    Path("out/feat").mkdir(parents=True)
    Path("out/feat/static.csv").write_text("id\n1\n")
    cli("run", "-q", "--name", "prep", "--data", "in=data/raw/apps.csv",
        "--output", "out/feat/parts",
        "--", sys.executable, "split.py", "data/raw/apps.csv", "out/feat/parts")  # fmt: skip
    dup(cli, "train", "out/feat", "out/model.pt")
    assert "run:prep" in upstream_labels(cli, "out/model.pt")
    assert traced_to_source(cli, "out/model.pt")


SPARSE = """
import pathlib, sys, torch
pathlib.Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
torch.save({"w": torch.zeros(2), "odd": torch.eye(3).to_sparse()}, sys.argv[1])
"""


def test_an_output_pickle_with_a_sparse_tensor_is_recorded(cli):
    """A sparse tensor in a ``.pt`` output: the run is recorded (with a
    ``model_error``), not lost to a crash at its end (meta and conjugate-view
    tensors: tests/integration/test_model_fingerprint.py)."""
    Path("odd.py").write_text(textwrap.dedent(SPARSE))
    cli("run", "-q", "--name", "odd", "--output", "out/model.pt",
        "--", sys.executable, "odd.py", "out/model.pt")  # fmt: skip
    assert "run:odd" in upstream_labels(cli, "out/model.pt")


LINKED = """
import os, pathlib, sys
import numpy as np
from safetensors.numpy import save_file
folder = pathlib.Path(sys.argv[1])
folder.mkdir(parents=True)
pathlib.Path("store").mkdir(exist_ok=True)
save_file({"w": np.arange(4, dtype=np.float32)}, "store/w.safetensors")
os.symlink(os.path.relpath("store/w.safetensors", folder), folder / "model.safetensors")
(folder / "config.json").write_text('{"model_type": "linear"}')
"""


def test_a_folder_whose_linked_weights_changed_is_not_the_recorded_model(cli):
    """A folder's manifest holds its links, not what they point to: after the
    weights behind a link change, the folder no longer names the recorded model
    (it did: lineage, trace, approvals and gates of the path answered for
    weights the run never wrote)."""
    Path("link.py").write_text(textwrap.dedent(LINKED))
    cli("run", "-q", "--name", "linked", "--output", "out/linked",
        "--", sys.executable, "link.py", "out/linked")  # fmt: skip
    recorded = json.loads(cli("lineage", "--up", "out/linked", "--json"))["root"]
    assert recorded.startswith("model:")
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.ones(4)}, "store/w.safetensors")
    cli("lineage", "--up", "out/linked", "--json", code=2)
    # the model itself is still found by its id, and by the file behind the link
    assert json.loads(cli("lineage", "--up", recorded, "--json"))["root"] == recorded


@pytest.fixture
def weight_reads(monkeypatch):
    """Tensor bytes read by fingerprints from now on: the in-process memo of
    ``capture_fingerprint`` is emptied before each count, so only the home's
    cache can spare a read; ids are stored for files older than 50 ms."""
    from mltrail.capture.model import fingerprint, idcache

    monkeypatch.setattr(idcache, "RACY_WINDOW_S", 0.05)
    read = [0]
    real = fingerprint.iter_tensor_bytes

    def counted(*args, **kwargs):
        for chunk in real(*args, **kwargs):
            read[0] += len(chunk)
            yield chunk

    monkeypatch.setattr(fingerprint, "iter_tensor_bytes", counted)

    def reads() -> int:
        fingerprint._MEMO.clear()
        read[0] = 0
        return read

    return reads


def test_a_second_lookup_of_unchanged_linked_weights_reads_no_weights(
    cli, weight_reads
):
    """Resolving a folder of links re-fingerprinted its whole weights on every
    lookup (minutes for a 30 GB Hub snapshot); the model id is now kept by the
    weight files' stat keys, and a file changed in place, with its size and
    mtime put back, is still read and refused (its ctime moved)."""
    Path("link.py").write_text(textwrap.dedent(LINKED))
    cli("run", "-q", "--name", "linked", "--output", "out/linked",
        "--", sys.executable, "link.py", "out/linked")  # fmt: skip
    time.sleep(0.1)  # older than the racy window
    read = weight_reads()
    recorded = json.loads(cli("lineage", "--up", "out/linked", "--json"))["root"]
    assert recorded.startswith("model:")
    assert read[0] == 16
    read = weight_reads()
    assert (
        json.loads(cli("trace", "out/linked", "--json"))["lineage"]["root"] == recorded
    )
    assert read[0] == 0
    weights = Path("store/w.safetensors")
    st = weights.stat()
    with weights.open("r+b") as f:  # the same inode, size and (put back) mtime
        f.seek(st.st_size - 4)
        f.write(b"\x00\x00\x80\x3f")
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns) == (
        st.st_ino,
        st.st_mtime_ns,
    )
    read = weight_reads()
    cli("lineage", "--up", "out/linked", "--json", code=2)
    assert read[0] == 16


def test_an_approval_by_path_reads_the_linked_weights_not_the_cache(cli, weight_reads):
    """A signed decision (an approval, a promotion) named by a folder of links
    took the model id from the home's hash cache like any lookup: whoever can
    write the cache could steer which recorded model the approval names. It
    reads the weights, whatever the cache holds."""
    Path("link.py").write_text(textwrap.dedent(LINKED))
    cli("run", "-q", "--name", "linked", "--output", "out/linked",
        "--", sys.executable, "link.py", "out/linked")  # fmt: skip
    time.sleep(0.1)  # older than the racy window
    weight_reads()
    cli("lineage", "--up", "out/linked", "--json")  # the id is cached now
    read = weight_reads()
    cli("lineage", "--up", "out/linked", "--json")
    assert read[0] == 0
    read = weight_reads()
    cli("model", "approve", "out/linked", "--stage", "staging", "--note", "ok")
    assert read[0] == 16


def test_clearing_a_flag_by_path_reads_the_linked_weights_not_the_cache(
    cli, weight_reads
):
    """Clearing a flag is a signed decision too (``model.flagged`` cleared): by
    a folder of links it took the model id from the home's hash cache, which
    whoever can write it could steer to another flagged model. It reads the
    weights, whatever the cache holds."""
    Path("link.py").write_text(textwrap.dedent(LINKED))
    cli("run", "-q", "--name", "linked", "--data", "in=data/raw/apps.csv",
        "--output", "out/linked",
        "--", sys.executable, "link.py", "out/linked")  # fmt: skip
    change_and_check(cli)
    assert "linked" in flagged_paths(cli)
    time.sleep(0.1)  # older than the racy window
    weight_reads()
    cli("lineage", "--up", "out/linked", "--json")  # the id is cached now
    read = weight_reads()
    cli("lineage", "--up", "out/linked", "--json")
    assert read[0] == 0
    read = weight_reads()
    cli("flags", "clear", "out/linked", "--note", "reviewed")
    assert read[0] == 16
    assert "linked" not in flagged_paths(cli)


def test_a_second_lookup_of_a_shard_index_reads_no_weights_until_a_shard_is_replaced(
    cli, weight_reads
):
    """The same for a shard index; a shard replaced by another file (renamed
    over it) of the same size, with the old mtime, is read again."""
    Path("shard.py").write_text(textwrap.dedent(SHARDED))
    index = "out/sharded/model.safetensors.index.json"
    cli("run", "-q", "--name", "sharded", "--output", index,
        "--", sys.executable, "shard.py", index)  # fmt: skip
    time.sleep(0.1)  # older than the racy window
    for expected in (16, 0):
        read = weight_reads()
        assert json.loads(cli("lineage", "--up", index, "--json"))["root"].startswith(
            "model:"
        )
        assert read[0] == expected
    shard = Path("out/sharded/s1.safetensors")
    st, data = shard.stat(), bytearray(shard.read_bytes())
    data[-4:] = b"\x00\x00\x80\x3f"
    Path("new.safetensors").write_bytes(data)
    os.utime("new.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns))
    Path("new.safetensors").replace(shard)
    read = weight_reads()
    cli("lineage", "--up", index, "--json", code=2)
    assert read[0] == 16


def test_a_read_only_home_reads_linked_weights_and_stores_nothing(
    cli, weight_reads, tmp_path
):
    """A home that may not be written keeps no model id (ADR 0012): each lookup
    reads the weights, as before."""
    Path("link.py").write_text(textwrap.dedent(LINKED))
    cli("run", "-q", "--name", "linked", "--output", "out/linked",
        "--", sys.executable, "link.py", "out/linked")  # fmt: skip
    time.sleep(0.1)
    home = tmp_path / "home"
    before = sorted(p.relative_to(home) for p in home.rglob("*"))
    subprocess.run(["chmod", "-R", "a-w", str(home)], check=True)
    try:
        for _ in range(2):
            read = weight_reads()
            assert json.loads(cli("lineage", "--up", "out/linked", "--json"))[
                "root"
            ].startswith("model:")
            assert read[0] == 16
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(home)], check=True)
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before


SHARDED = """
import json, pathlib, sys
import numpy as np
from safetensors.numpy import save_file
index = pathlib.Path(sys.argv[1])
index.parent.mkdir(parents=True)
save_file({"w": np.arange(4, dtype=np.float32)}, index.parent / "s1.safetensors")
index.write_text(json.dumps({"weight_map": {"w": "s1.safetensors"}}))
"""


RESHARDED = """
import json, pathlib, sys
import numpy as np
from safetensors.numpy import save_file
index = pathlib.Path(sys.argv[1])
index.parent.mkdir(parents=True, exist_ok=True)
w = np.full(4, float(sys.argv[2]), dtype=np.float32)
save_file({"w": w}, index.parent / "s1.safetensors")
index.write_text(json.dumps({"weight_map": {"w": "s1.safetensors"}}))
"""


def test_a_shard_index_two_runs_wrote_names_the_model_its_shards_hold_now(cli):
    """Two fine-tunes of one architecture write byte-identical indexes: the
    index's sha256 was matched to the first run's model (any one of them),
    so the second run's index was refused as "not the recorded model"."""
    from mltrail.capture.model.fingerprint import capture_model_fields

    Path("reshard.py").write_text(textwrap.dedent(RESHARDED))
    index = "out/sharded/model.safetensors.index.json"
    models = []
    for value in ("1", "2"):
        cli("run", "-q", "--name", f"tune-{value}", "--output", index,
            "--", sys.executable, "reshard.py", index, value)  # fmt: skip
        models.append(f"model:{capture_model_fields(Path(index))['model']}")
    assert models[0] != models[1]
    assert json.loads(cli("lineage", "--up", index, "--json"))["root"] == models[1]


def test_a_shard_index_whose_shards_changed_is_not_the_recorded_model(cli):
    """An index file's bytes do not hold the weights: after a shard changes,
    the index no longer names the model recorded with it."""
    Path("shard.py").write_text(textwrap.dedent(SHARDED))
    index = "out/sharded/model.safetensors.index.json"
    cli("run", "-q", "--name", "sharded", "--output", index,
        "--", sys.executable, "shard.py", index)  # fmt: skip
    recorded = json.loads(cli("lineage", "--up", index, "--json"))["root"]
    assert recorded.startswith("model:")
    import torch
    from safetensors.torch import save_file

    # the same index under another name: a link to it, a copy beside it
    Path("approved").symlink_to(index)
    Path("out/sharded/copy.json").write_bytes(Path(index).read_bytes())
    assert json.loads(cli("lineage", "--up", "approved", "--json"))["root"] == recorded
    save_file({"w": torch.ones(4)}, "out/sharded/s1.safetensors")
    cli("lineage", "--up", index, "--json", code=2)
    # checked by what the ledger recorded, not by the name given
    cli("lineage", "--up", "approved", "--json", code=2)
    cli("lineage", "--up", "out/sharded/copy.json", "--json", code=2)
    assert json.loads(cli("lineage", "--up", recorded, "--json"))["root"] == recorded
