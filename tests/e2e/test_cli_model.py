"""`mltrail model fingerprint` and `mltrail model delta`, as a user runs them."""

import json
import math

import pytest

from mltrail.cli.main import main
from optional_extras import require_extra

np, st_numpy = require_extra("models", "numpy", "safetensors.numpy")


@pytest.fixture
def run_cli(capsys):
    def run(*args):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def models(tmp_path):
    rng = np.random.default_rng(0)
    base = {
        "embed.weight": rng.standard_normal((20, 8)).astype(np.float32),
        "h.0.attn.weight": rng.standard_normal((8, 24)).astype(np.float32),
        "h.0.mlp.weight": rng.standard_normal((8, 32)).astype(np.float16),
    }
    tuned = dict(base)
    tuned["h.0.attn.weight"] = base["h.0.attn.weight"] * np.float32(1.1)
    for name, weights in (("base", base), ("tuned", tuned)):
        folder = tmp_path / name
        folder.mkdir()
        st_numpy.save_file(weights, folder / "model.safetensors")
        (folder / "config.json").write_text('{"model_type": "toy"}')
    (tmp_path / "tuned" / "generation_config.json").write_text(
        '{"temperature": 0.2, "top_p": 0.95, "max_new_tokens": 128}'
    )
    return tmp_path, base, tuned


def test_fingerprint_text_and_json(run_cli, models):
    root, base, _ = models
    code, out, _ = run_cli("model", "fingerprint", root / "tuned")
    assert code == 0
    assert "format      hf-folder" in out
    assert "tensors     3" in out
    assert "parameters  " + f"{sum(a.size for a in base.values()):,}" in out
    assert "dtypes      F32 352, F16 256" in out
    assert "generation  max_new_tokens=128  temperature=0.2  top_p=0.95" in out
    assert "config.json" in out
    code, out, _ = run_cli(
        "model", "fingerprint", root / "tuned", "--json", "--tensors"
    )
    info = json.loads(out)
    assert info["format"] == "hf-folder"
    assert len(info["model"]) == 64
    assert info["generation"]["temperature"] == 0.2
    assert [t["name"] for t in info["tensor_list"]] == sorted(base)
    code, out, _ = run_cli(
        "model", "fingerprint", root / "base" / "model.safetensors", "--json"
    )
    assert json.loads(out)["format"] == "safetensors"
    code, out, _ = run_cli("model", "fingerprint", root / "base", "--tensors")
    assert "h.0.mlp.weight" in out
    assert "F16" in out


def test_delta_text_and_json(run_cli, models):
    root, base, tuned = models
    code, out, _ = run_cli("model", "delta", root / "base", root / "tuned")
    assert code == 0, out
    assert "changed     1 tensors, 2 unchanged; 192 parameters" in out
    assert "h.0.attn.weight" in out
    code, out, _ = run_cli(
        "model", "delta", root / "base", root / "tuned", "--json", "--top", "1"
    )
    result = json.loads(out)
    (top,) = result["delta"]["top"]
    d = tuned["h.0.attn.weight"].astype(np.float64) - base["h.0.attn.weight"]
    assert top["name"] == "h.0.attn.weight"
    assert top["l2"] == pytest.approx(math.sqrt((d * d).sum()), rel=1e-9)
    assert top["relative"] == pytest.approx(0.1, rel=1e-6)
    assert "table" not in result["delta"]
    assert result["generation"] == {
        "max_new_tokens": 128,
        "temperature": 0.2,
        "top_p": 0.95,
    }


def test_delta_of_a_lora_adapter(run_cli, models):
    root, base, _ = models
    adapter = root / "adapter"
    adapter.mkdir()
    config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["attn"]}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 8)).astype(np.float32)  # r=4 in the weights
    b = rng.standard_normal((24, 4)).astype(np.float32)
    prefix = "base_model.model.h.0"
    weights = {
        f"{prefix}.attn.lora_A.weight": a,
        f"{prefix}.attn.lora_B.weight": b,
        f"{prefix}.mlp.lora_A.weight": a,
        f"{prefix}.mlp.lora_B.weight": np.zeros((32, 4), np.float32),  # untrained
    }
    st_numpy.save_file(weights, adapter / "adapter_model.safetensors")
    code, out, _ = run_cli(
        "model", "delta", root / "base", "--adapter", adapter, "--json"
    )
    assert code == 0, out
    result = json.loads(out)
    norms = {row["module"]: row for row in result["delta"]["lora"]}
    expected = np.linalg.norm(b.astype(np.float64) @ a) * 16 / 4  # alpha / r in weights
    assert norms[f"{prefix}.attn"]["norm"] == pytest.approx(expected, rel=1e-9)
    w = np.linalg.norm(base["h.0.attn.weight"].astype(np.float64))
    assert norms[f"{prefix}.attn"]["relative"] == pytest.approx(expected / w, rel=1e-9)
    assert norms[f"{prefix}.mlp"]["norm"] == 0
    recorded = result["adapter"]
    assert recorded["effective_rank"] == {f"{prefix}.attn": 4, f"{prefix}.mlp": 0}
    assert recorded["rank_mismatch"] == [
        {"module": f"{prefix}.attn", "declared": 8, "shape": 4, "effective": 4},
        {"module": f"{prefix}.mlp", "declared": 8, "shape": 4, "effective": 0},
    ]
    code, out, _ = run_cli("model", "delta", root / "base", "--adapter", adapter)
    assert "warning" in out
    assert "LORA r=8 alpha=16" in out


def test_bad_input_exits_2_with_a_hint(run_cli, models, tmp_path):
    root, _, _ = models
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    code, _, err = run_cli("model", "fingerprint", tmp_path / "bad.safetensors")
    assert code == 2
    assert "error:" in err
    assert "hint:" in err
    code, _, err = run_cli("model", "fingerprint", tmp_path / "missing")
    assert code == 2
    code, _, err = run_cli("model", "delta", root / "base")
    assert code == 2
    assert "nothing to compare" in err
    st_numpy.save_file({"x": np.zeros(2, np.float32)}, tmp_path / "other.safetensors")
    code, _, err = run_cli(
        "model", "delta", root / "base", tmp_path / "other.safetensors"
    )
    assert code == 2
    assert "architecture" in err
    (tmp_path / "noadapter").mkdir()
    code, _, err = run_cli(
        "model", "delta", root / "base", "--adapter", tmp_path / "noadapter"
    )
    assert code == 2
    assert "not a PEFT adapter" in err


def test_help_has_examples(run_cli):
    for args in (("model", "--help"), ("model", "fingerprint", "--help")):
        code, out, _ = run_cli(*args)
        assert code == 0
        assert "Examples:" in out
    code, out, _ = run_cli("model", "delta", "--help")
    assert "--adapter" in out
