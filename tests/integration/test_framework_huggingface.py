"""The Hugging Face Trainer callback, training a tiny GPT-2 for real on CPU.

The model is built from a config in the test (2 layers, hidden 32): nothing is
downloaded (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

import mltrail
from ledger_reading import entries
from optional_extras import require_extra

torch, transformers, _ = require_extra(
    "huggingface", "torch", "transformers", "accelerate"
)

from mltrail.capture.model.fingerprint import capture_fingerprint  # noqa: E402
from mltrail.capture.model.model_files import locate_model  # noqa: E402
from mltrail.capture.run.params import flatten  # noqa: E402
from mltrail.integrations.huggingface import MltrailCallback  # noqa: E402

pytestmark = pytest.mark.usefixtures("isolated_home")
TOKEN = "hf_" + "Zq7" * 12


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


class Sequences(torch.utils.data.Dataset):
    """32 token sequences, a fixed function of their index."""

    def __len__(self):
        return 32

    def __getitem__(self, i):
        ids = (torch.arange(16) * (i + 1)) % 64
        return {"input_ids": ids, "labels": ids}


class ConfigAtStart(transformers.TrainerCallback):
    """The model config as transformers serializes it when training begins."""

    config = None

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.config = json.loads(model.config.to_json_string(use_diff=False))


def tiny_model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def train(model=None, callback=None, seen=None, **overrides):
    settings = {
        "output_dir": "out", "max_steps": 6, "per_device_train_batch_size": 4,
        "logging_steps": 1, "save_steps": 3, "report_to": [], "use_cpu": True,
        "learning_rate": 1e-3, "seed": 0, "disable_tqdm": True,
    }  # fmt: skip
    args = transformers.TrainingArguments(**(settings | overrides))
    callback = callback or MltrailCallback(flush_every=2)
    trainer = transformers.Trainer(
        model=model or tiny_model(), args=args, train_dataset=Sequences(),
        callbacks=[callback, *([seen] if seen else [])],
    )  # fmt: skip
    trainer.train()
    return args, callback


def params_of(found):
    merged = {}
    for e in found:
        if e.kind == "run.params" and e.body["source"] == "api":
            merged |= e.body["params"]
    return merged


def same(a, b):
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def test_the_callback_records_the_trainer_as_the_framework_has_it(isolated_home):
    seen = ConfigAtStart()
    args, callback = train(hub_token=TOKEN, seen=seen)
    found = entries(isolated_home, callback.last_run_id)
    recorded = params_of(found)

    # every TrainingArguments field, as transformers serializes it
    own = json.loads(args.to_json_string())
    expected = flatten({"trainer": own})
    for key, value in expected.items():
        if key == "trainer.hub_token":
            assert recorded[key]["redacted"].startswith("hmac-sha256:")
            continue
        assert key in recorded, key
        assert same(recorded[key], value), (key, recorded[key], value)
    trainer_keys = {k for k in recorded if k.startswith("trainer.")}
    assert trainer_keys == set(expected)
    assert TOKEN.encode() not in (isolated_home / "ledger.db").read_bytes()

    # the model config as training began (the Trainer turns use_cache off)
    for key, value in flatten({"model": {"config": seen.config}}).items():
        assert same(recorded[key], value), key
    assert recorded["dataset.train.method"] == "content-sha256"
    assert recorded["dataset.train.rows"] == 32
    assert len(recorded["dataset.train.fingerprint"]) == 64

    # metrics in batches: flushed every 2 steps and at the end, not per step
    metrics = [e.body for e in found if e.kind == "run.metrics"]
    assert 1 < len(metrics) < 6
    assert sum(m["series"].get("loss", {}).get("count", 0) for m in metrics) == 6

    # checkpoints and the final model, by the model id mltrail computes
    artifacts = {e.body["name"]: e.body for e in found if e.kind == "run.artifact"}
    assert set(artifacts) == {"checkpoint-3", "checkpoint-6", "final-model"}
    for name in ("checkpoint-3", "checkpoint-6"):
        own_id = capture_fingerprint(locate_model(isolated_home.parent / "out" / name))
        assert artifacts[name]["model"] == own_id.model_id
    assert artifacts["final-model"]["model"] == artifacts["checkpoint-6"]["model"]
    assert found[-1].kind == "run.ended"
    assert found[-1].body["status"] == "succeeded"
    assert mltrail.verify(isolated_home).ok


def test_diff_of_two_recorded_runs_shows_exactly_the_changed_argument(tmp_path):
    _, first = train()
    _, second = train(learning_rate=5e-4)
    result = subprocess.run(
        [sys.executable, "-m", "mltrail", "diff", first.last_run_id,
         second.last_run_id, "--json"],
        capture_output=True, text=True, env=os.environ, check=True,
    )  # fmt: skip
    params = json.loads(result.stdout)["sections"]["params"]
    assert [(c["key"], c["old"], c["new"]) for c in params] == [
        ("trainer.learning_rate", 1e-3, 5e-4)
    ]


def test_the_callback_joins_an_open_run_and_leaves_it_open(isolated_home):
    with mltrail.start_run("outer") as run:
        _, callback = train(callback=MltrailCallback(), save_strategy="no")
        assert run.status is None
        assert callback.last_run_id == run.id
    found = entries(isolated_home, run.id)
    assert [e.kind for e in found].count("run.ended") == 1
    assert params_of(found)["trainer.max_steps"] == 6
    (final,) = [e.body for e in found if e.kind == "run.artifact"]
    assert final["name"] == "final-model"
    assert final["path"] == os.path.join("out", "final-model")


@pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)
def test_a_peft_model_records_its_lora_config_and_adapter(isolated_home):
    (peft,) = require_extra("finetune", "peft")
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True
    )
    model = peft.get_peft_model(tiny_model(), config)
    _, callback = train(model=model, save_strategy="no")
    found = entries(isolated_home, callback.last_run_id)
    recorded = params_of(found)
    assert recorded["peft.default.r"] == 4
    assert recorded["peft.default.lora_alpha"] == 8
    assert recorded["peft.default.target_modules"] == ["c_attn"]
    (finetune,) = [e.body for e in found if e.kind == "run.finetune"]
    assert finetune["adapter"]["r"] == 4
    assert "model" in next(e.body for e in found if e.kind == "run.artifact")
