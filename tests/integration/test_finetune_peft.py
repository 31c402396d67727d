"""A real LoRA fine-tune of a tiny GPT-2 (built from a config, trained 3 steps on
the CPU) recorded by mltrail: settings, effective rank, deltas, lineage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings

import pytest

import mltrail
from mltrail.record.finetune import scan_model
from optional_extras import require_extra

torch, _, _ = require_extra("finetune", "torch", "peft", "transformers")

MAKE_BASE = """
import torch
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

torch.manual_seed(0)
config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32)
model = GPT2LMHeadModel(config)
model.generation_config = GenerationConfig(temperature=0.7, top_p=0.9, do_sample=True)
model.save_pretrained("base")
"""

TRAIN = """
import sys
import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2LMHeadModel

torch.manual_seed(0)
model = GPT2LMHeadModel.from_pretrained("base")
lora = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], lora_dropout=0.0,
                  fan_in_fan_out=True)
model = get_peft_model(model, lora)
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr=1e-2)
x = torch.randint(0, 100, (4, 16))
for _ in range(3):
    model(input_ids=x, labels=x).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
model.save_pretrained("adapter")
model.merge_and_unload().save_pretrained("merged")
"""


def _quietly(code: str) -> None:
    with warnings.catch_warnings():
        # transformers/peft deprecation notices about their own internals
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        exec(compile(code, "<finetune>", "exec"), {})


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """base/, adapter/ and merged/ of one real LoRA fine-tune."""
    folder = tmp_path_factory.mktemp("finetune")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        _quietly(MAKE_BASE)
        _quietly(TRAIN)
    finally:
        os.chdir(cwd)
    return folder


def state(path):
    from safetensors.torch import load_file

    return {k: v.double() for k, v in load_file(path / "model.safetensors").items()}


def entries(home, run_id):
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        found = [r.entry for r in opened.ledger.records() if r.entry.run == run_id]
        blobs = {}
        for entry in found:
            if entry.kind == "run.finetune":
                table = entry.body.get("delta", {}).get("table")
                if table:
                    blobs["table"] = opened.ledger.get_blob(table["blob"])
                blobs["config"] = opened.ledger.get_blob(
                    entry.body["adapter"]["config"]["blob"]
                )
        return found, blobs
    finally:
        opened.close()


def check_body(body, blobs, folder):
    adapter = body["adapter"]
    assert adapter["method"] == "LORA"
    assert adapter["r"] == 4
    assert adapter["lora_alpha"] == 8
    assert adapter["target_modules"] == ["c_attn"]
    assert adapter["bias"] == "none"
    assert json.loads(blobs["config"])["r"] == 4
    modules = [f"base_model.model.transformer.h.{i}.attn.c_attn" for i in (0, 1)]
    assert adapter["effective_rank"] == dict.fromkeys(modules, 4)
    assert "rank_mismatch" not in adapter
    assert body["base"]["format"] == "hf-folder"
    assert body["base"]["model"] != body["model"]["model"]
    assert body["generation"]["temperature"] == 0.7
    base, merged = state(folder / "base"), state(folder / "merged")
    rows = {json.loads(x)["name"]: json.loads(x) for x in blobs["table"].splitlines()}
    assert rows["transformer.wte.weight"]["status"] == "unchanged"
    assert rows["transformer.h.0.mlp.c_fc.weight"]["status"] == "unchanged"
    changed = {n for n, r in rows.items() if r["status"] == "changed"}
    assert changed == {f"transformer.h.{i}.attn.c_attn.weight" for i in (0, 1)}
    lora = {row["module"]: row["norm"] for row in body["delta"]["lora"]}
    for name in changed:
        d = merged[name] - base[name]
        assert rows[name]["l2"] == pytest.approx(d.norm().item(), rel=1e-9)
        assert rows[name]["relative"] == pytest.approx(
            (d.norm() / base[name].norm()).item(), rel=1e-9
        )
        assert rows[name]["max_abs"] == pytest.approx(d.abs().max().item(), rel=1e-9)
        # the merged update is the LoRA update, computed without forming B @ A
        module = "base_model.model." + name.removesuffix(".weight")
        assert lora[module] == pytest.approx(rows[name]["l2"], rel=1e-4)
    delta = body["delta"]
    assert delta["tensors_changed"] == 2
    params = 2 * 32 * 96
    total = sum(v.numel() for v in base.values())
    assert delta["share_changed"] == pytest.approx(params / total)


@pytest.mark.usefixtures("isolated_home")
def test_log_finetune_records_settings_and_deltas(tuned, tmp_path):
    with mltrail.start_run("lora") as run:
        info = run.log_finetune(
            base=tuned / "base", adapter=tuned / "adapter", model=tuned / "merged"
        )
    assert info["adapter"]["r"] == 4
    assert "fingerprint" not in info["base"]
    found, blobs = entries(tmp_path / "home", run.id)
    (body,) = [e.body for e in found if e.kind == "run.finetune"]
    check_body(body, blobs, tuned)
    assert info["model"]["model"] == body["model"]["model"]
    assert mltrail.verify(tmp_path / "home").ok


def test_mltrail_run_records_the_fine_tune_end_to_end(tuned, isolated_home, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "train.py").write_text(textwrap.dedent(TRAIN))
    (work / "data.txt").write_text("tokens\n")
    shutil.copytree(tuned / "base", work / "base")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLTRAIL_HOME": str(isolated_home)}
    done = subprocess.run(
        [
            sys.executable, "-m", "mltrail", "run", "--name", "lora",
            "--base-model", "base", "--adapter", "adapter", "--model-out", "merged",
            "--data", "train=data.txt", "--", sys.executable, "train.py",
        ],
        cwd=work, env=env, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    opened = mltrail.open_home(isolated_home, writable=False, env={})
    try:
        run_id = list(opened.ledger.records())[-1].entry.run
    finally:
        opened.close()
    found, blobs = entries(isolated_home, run_id)
    kinds = [e.kind for e in found]
    assert kinds.index("run.finetune") > kinds.index("run.artifact")
    assert kinds[-1] == "run.ended"
    assert not [
        e for e in found if e.kind == "run.data" and e.body["role"] == "base_model"
    ]
    (body,) = [e.body for e in found if e.kind == "run.finetune"]
    check_body(body, blobs, work)
    outputs = {e.body["path"]: e.body for e in found if e.kind == "run.artifact"}
    merged = outputs[str(work / "merged")]
    assert merged["model"] == body["model"]["model"]
    assert outputs[str(work / "adapter")]["model"] == body["adapter"]["model"]
    # the same seeded fine-tune, run again in another folder: the same model ids
    assert body["base"]["model"] == scan_model(tuned / "base").part["model"]
    assert body["model"]["model"] == scan_model(tuned / "merged").part["model"]
