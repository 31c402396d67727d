"""Fingerprints and deltas of real checkpoints written by safetensors and torch."""

import hashlib
import json
import math
import struct
from pathlib import Path

import pytest

from optional_extras import require_extra

np, st_numpy = require_extra("models", "numpy", "safetensors.numpy")

from mltrail.capture.model.delta import capture_delta  # noqa: E402
from mltrail.capture.model.fingerprint import capture_fingerprint, capture_model_fields  # noqa: E402
from mltrail.capture.model.model_files import locate_model  # noqa: E402
from mltrail.errors import InputError  # noqa: E402
from mltrail.record.datasets import artifact_body  # noqa: E402
from mltrail.record.finetune import finetune_body, scan_model  # noqa: E402


def tensors(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "embed.weight": rng.standard_normal((50, 16)).astype(np.float32),
        "h.0.attn.weight": rng.standard_normal((16, 48)).astype(np.float16),
        "h.0.mlp.weight": rng.standard_normal((16, 64)).astype(np.float64),
        "h.0.q.weight": rng.integers(-128, 127, (16, 16), dtype=np.int8),
        "h.0.norm.bias": np.zeros(16, dtype=np.float32),
        "h.0.mask": rng.integers(0, 2, 16).astype(bool),
        "h.0.ids": np.arange(7, dtype=np.int64),
        "h.0.i16": np.arange(5, dtype=np.int16),
        "h.0.i32": np.arange(3, dtype=np.int32),
        "h.0.u8": np.arange(4, dtype=np.uint8),
        "scalar": np.array(3.5, dtype=np.float32),
    }


def fingerprint(path):
    return capture_fingerprint(locate_model(Path(path)))


def test_each_tensor_is_hashed_as_its_raw_bytes(tmp_path):
    t = tensors()
    st_numpy.save_file(t, tmp_path / "m.safetensors")
    fp = fingerprint(tmp_path / "m.safetensors")
    by_name = fp.by_name()
    assert set(by_name) == set(t)
    for name, array in t.items():
        entry = by_name[name]
        assert entry.sha256 == hashlib.sha256(array.tobytes()).hexdigest()
        assert entry.shape == array.shape
        assert entry.size == array.nbytes
    assert by_name["h.0.attn.weight"].dtype == "F16"
    assert by_name["h.0.q.weight"].dtype == "I8"
    assert by_name["h.0.mask"].dtype == "BOOL"
    assert fp.parameters == sum(a.size for a in t.values())


def test_shards_and_a_single_file_get_the_same_id(tmp_path):
    t = tensors()
    st_numpy.save_file(t, tmp_path / "single.safetensors")
    shards = tmp_path / "sharded"
    shards.mkdir()
    names = sorted(t)
    weight_map = {}
    for i, part in enumerate((names[:4], names[4:7], names[7:])):
        shard = f"model-{i + 1:05d}-of-00003.safetensors"
        st_numpy.save_file({n: t[n] for n in reversed(part)}, shards / shard)
        weight_map.update(dict.fromkeys(part, shard))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (shards / "model.safetensors.index.json").write_text(json.dumps(index))
    single, sharded = fingerprint(tmp_path / "single.safetensors"), fingerprint(shards)
    assert sharded.model_id == single.model_id
    assert locate_model(shards).format == "safetensors-sharded"
    # the same weights in float16 are another model
    st_numpy.save_file({"embed.weight": t["embed.weight"]}, tmp_path / "a.safetensors")
    half = {"embed.weight": t["embed.weight"].astype(np.float16)}
    st_numpy.save_file(half, tmp_path / "b.safetensors")
    a, b = (
        fingerprint(tmp_path / "a.safetensors"),
        fingerprint(tmp_path / "b.safetensors"),
    )
    assert a.model_id != b.model_id


def test_a_rewritten_file_is_hashed_again(tmp_path):
    path = tmp_path / "m.safetensors"
    st_numpy.save_file({"w": np.zeros(4, np.float32)}, path)
    first = fingerprint(path)
    assert fingerprint(path) == first  # unchanged: remembered
    st_numpy.save_file({"w": np.ones(4, np.float32)}, path)  # same size
    assert fingerprint(path).model_id != first.model_id


def test_a_shard_index_that_disagrees_with_its_shards_is_refused(tmp_path):
    st_numpy.save_file({"a": np.zeros(2, np.float32)}, tmp_path / "s1.safetensors")
    index = tmp_path / "model.safetensors.index.json"
    for weight_map, message in (
        ({"a": "s1.safetensors", "b": "s1.safetensors"}, "in no shard"),
        ({"a": "s2.safetensors"}, "missing"),
        ({"a": "../s1.safetensors"}, "not a file beside"),
        ({}, "names no tensor"),
        ({"b": "s1.safetensors"}, "'a' is in s1.safetensors but the index says None"),
        ([], "no weight_map"),
    ):
        index.write_text(json.dumps({"weight_map": weight_map}))
        with pytest.raises(InputError, match=message.replace("(", "\\(")):
            fingerprint(index)


def test_a_hugging_face_folder_hashes_config_tokenizer_and_generation(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    st_numpy.save_file(tensors(), folder / "model.safetensors")
    (folder / "config.json").write_text(
        '{"model_type": "gpt2", "_name_or_path": "tiny"}'
    )
    (folder / "tokenizer.json").write_text('{"vocab": {}}')
    generation = {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "max_new_tokens": 64}
    (folder / "generation_config.json").write_text(json.dumps(generation))
    scanned = scan_model(folder)
    assert scanned.part["format"] == "hf-folder"
    assert scanned.part["name"] == "tiny"
    assert scanned.part["files"] == {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in ("config.json", "generation_config.json", "tokenizer.json")
    }
    assert scanned.source.generation == dict(sorted(generation.items()))
    assert scanned.part["model"] == fingerprint(folder / "model.safetensors").model_id
    # a changed temperature is a changed side file, not a changed model id
    (folder / "generation_config.json").write_text('{"temperature": 1.3}')
    again = scan_model(folder)
    assert again.part["model"] == scanned.part["model"]
    assert (
        again.part["files"]["generation_config.json"]
        != (scanned.part["files"]["generation_config.json"])
    )


def _header_file(path, header, data):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        (
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
            b"\0" * 4,
            "ends at",
        ),
        (
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
            b"\0" * 9,
            "ends at",
        ),
        (
            {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
            b"\0" * 8,
            "bytes for",
        ),
        (
            {"a": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}},
            b"\0" * 8,
            "dtype",
        ),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
            "does not start",
        ),
        (
            {
                "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
            },
            b"\0" * 12,
            "does not start",
        ),
        ({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, "data_offsets"),
        ({"__metadata__": {"k": 1}}, b"", "__metadata__"),
        ([1, 2], b"", "not a JSON object"),
    ],
)
def test_corrupt_safetensors_files_are_refused(tmp_path, header, data, message):
    path = _header_file(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(InputError, match=message) as caught:
        fingerprint(path)
    assert caught.value.hint


def test_truncated_and_garbage_files_are_refused(tmp_path):
    st_numpy.save_file(tensors(), tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    for cut in (3, 20, len(data) - 1):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        with pytest.raises(InputError, match="not a valid safetensors"):
            fingerprint(tmp_path / "cut.safetensors")
    (tmp_path / "big.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(InputError, match="out of range"):
        fingerprint(tmp_path / "big.safetensors")
    (tmp_path / "json.safetensors").write_bytes(struct.pack("<Q", 4) + b"{no}")
    with pytest.raises(InputError, match="not JSON"):
        fingerprint(tmp_path / "json.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model weights"):
        fingerprint(tmp_path / "empty")


def reference_delta(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    d = b - a
    return (
        math.sqrt((d * d).sum()),
        math.sqrt((d * d).sum()) / math.sqrt((a * a).sum()),
        float(np.abs(d).max()),
    )


def test_delta_numbers_equal_numpy(tmp_path):
    base = tensors(0)
    tuned = dict(base)
    rng = np.random.default_rng(1)
    tuned["embed.weight"] = base["embed.weight"] + rng.standard_normal((50, 16)).astype(
        np.float32
    ) * np.float32(0.01)
    tuned["h.0.attn.weight"] = (base["h.0.attn.weight"] * np.float16(1.5)).astype(
        np.float16
    )
    tuned["h.0.q.weight"] = np.clip(
        base["h.0.q.weight"].astype(np.int16) + 1, -128, 127
    ).astype(np.int8)
    del tuned["h.0.ids"]
    tuned["h.0.i16"] = np.arange(6, dtype=np.int16)
    tuned["lm_head.weight"] = np.ones((2, 2), np.float32)
    st_numpy.save_file(base, tmp_path / "base.safetensors")
    st_numpy.save_file(tuned, tmp_path / "tuned.safetensors")
    body = finetune_body(
        base=tmp_path / "base.safetensors", model=tmp_path / "tuned.safetensors"
    )
    delta = body["delta"]
    rows = {
        json.loads(line)["name"]: json.loads(line)
        for line in delta["table"].data.splitlines()
    }
    for name in ("embed.weight", "h.0.attn.weight", "h.0.q.weight"):
        l2, relative, max_abs = reference_delta(base[name], tuned[name])
        assert rows[name]["status"] == "changed"
        assert rows[name]["l2"] == pytest.approx(l2, rel=1e-9)
        assert rows[name]["relative"] == pytest.approx(relative, rel=1e-9)
        assert rows[name]["max_abs"] == pytest.approx(max_abs, rel=1e-9)
    assert rows["h.0.mlp.weight"] == {
        "name": "h.0.mlp.weight",
        "status": "unchanged",
        "parameters": 16 * 64,
        "l2": 0.0,
        "relative": 0.0,
        "max_abs": 0.0,
    }
    assert delta["removed"] == ["h.0.ids"]
    assert delta["added"] == ["lm_head.weight"]
    assert delta["reshaped"] == ["h.0.i16"]
    assert delta["tensors_changed"] == 3
    changed = 50 * 16 + 16 * 48 + 16 * 16
    compared = sum(a.size for n, a in base.items() if n not in ("h.0.ids", "h.0.i16"))
    assert delta["parameters_changed"] == changed
    assert delta["share_changed"] == pytest.approx(changed / compared)
    assert delta["top"][0]["name"] == "h.0.attn.weight"  # 50 % relative change


def test_delta_streams_large_tensors_in_chunks(tmp_path, monkeypatch):
    import mltrail.capture.model.delta as delta_module

    monkeypatch.setattr(delta_module, "CHUNK_ELEMENTS", 1000)
    rng = np.random.default_rng(2)
    a = {"w": rng.standard_normal((37, 101)).astype(np.float32)}
    b = {
        "w": a["w"]
        + np.float32(0.5) * rng.standard_normal((37, 101)).astype(np.float32)
    }
    st_numpy.save_file(a, tmp_path / "a.safetensors")
    st_numpy.save_file(b, tmp_path / "b.safetensors")
    sa, sb = (
        scan_model(tmp_path / "a.safetensors"),
        scan_model(tmp_path / "b.safetensors"),
    )
    (row,) = capture_delta(sa.source, sb.source, sa.fingerprint, sb.fingerprint)
    assert (row.l2, row.relative, row.max_abs) == pytest.approx(
        reference_delta(a["w"], b["w"])
    )


def test_different_architectures_are_a_clear_error(tmp_path):
    st_numpy.save_file(tensors(), tmp_path / "a.safetensors")
    st_numpy.save_file(
        {"x.weight": np.zeros(3, np.float32)}, tmp_path / "b.safetensors"
    )
    with pytest.raises(InputError, match="architecture") as caught:
        finetune_body(base=tmp_path / "a.safetensors", model=tmp_path / "b.safetensors")
    assert caught.value.hint


def test_an_output_checkpoint_gets_its_model_id(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    st_numpy.save_file(tensors(), folder / "model.safetensors")
    body = artifact_body(folder)
    assert body["model"] == fingerprint(folder).model_id
    assert body["model_format"] == "safetensors"
    assert artifact_body(folder / "model.safetensors")["model"] == body["model"]
    (tmp_path / "notes.txt").write_text("hi")
    assert "model" not in artifact_body(tmp_path / "notes.txt")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage!")
    assert (
        "not a valid"
        in capture_model_fields(tmp_path / "bad.safetensors")["model_error"]
    )


# ---- torch: bf16, fp8, .bin state dicts ------------------------------------------


def test_torch_dtypes_and_state_dicts(tmp_path):
    torch, st_torch = require_extra("finetune", "torch", "safetensors.torch")
    torch.manual_seed(0)
    state = {
        "w.bf16": torch.randn(8, 4).to(torch.bfloat16),
        "w.f16": torch.randn(3).to(torch.float16),
        "w.f32": torch.randn(2, 2),
        "w.i8": torch.arange(-3, 3, dtype=torch.int8),
        "w.e4m3": torch.randn(5).to(torch.float8_e4m3fn),
        "w.e5m2": torch.randn(5).to(torch.float8_e5m2),
    }
    st_torch.save_file(state, tmp_path / "m.safetensors")
    torch.save(state, tmp_path / "m.bin")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "nested.pt")
    fp = fingerprint(tmp_path / "m.safetensors")
    assert fingerprint(tmp_path / "m.bin").model_id == fp.model_id
    assert locate_model(tmp_path / "m.bin").format == "pytorch"
    names = {t.name for t in fingerprint(tmp_path / "nested.pt").tensors}
    assert names == {f"state_dict.{n}" for n in state}
    assert fp.by_name()["w.e4m3"].dtype == "F8_E4M3"
    assert fp.by_name()["w.bf16"].dtype == "BF16"

    tuned = {k: (v.float() * 1.25).to(v.dtype) for k, v in state.items()}
    st_torch.save_file(tuned, tmp_path / "t.safetensors")
    torch.save(tuned, tmp_path / "t.bin")
    for base, model in (("m.safetensors", "t.safetensors"), ("m.bin", "t.bin")):
        body = finetune_body(base=tmp_path / base, model=tmp_path / model)
        rows = {
            json.loads(x)["name"]: json.loads(x)
            for x in body["delta"]["table"].data.splitlines()
        }
        for name, value in state.items():
            a, b = value.double(), tuned[name].double()
            if torch.equal(a, b):
                assert rows[name]["status"] == "unchanged"
                continue
            d = b - a
            assert rows[name]["l2"] == pytest.approx(d.norm().item(), rel=1e-9)
            assert rows[name]["relative"] == pytest.approx(
                (d.norm() / a.norm()).item(), rel=1e-9
            )
            assert rows[name]["max_abs"] == pytest.approx(
                d.abs().max().item(), rel=1e-9
            )


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_that_runs_code_is_refused_unrun(tmp_path):
    (torch,) = require_extra("finetune", "torch")
    marker = tmp_path / "pwned"
    torch.save(
        {"w": torch.zeros(2), "evil": _RunsCode(str(marker))}, tmp_path / "evil.bin"
    )
    with pytest.raises(InputError, match="would run code") as caught:
        fingerprint(tmp_path / "evil.bin")
    assert "safetensors" in caught.value.hint
    assert not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(InputError, match="not a readable PyTorch"):
        fingerprint(tmp_path / "junk.pt")


def test_a_torch_checkpoint_without_torch_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "m.bin").write_bytes(b"\x80\x02}q\x00.")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(InputError, match="needs torch") as caught:
        fingerprint(tmp_path / "m.bin")
    assert "mltrail[finetune]" in caught.value.hint


# ---- folders whose weights a framework would read from another file ------------


def _approved_folder(folder):
    """A folder whose index and shard hold the approved weights (another set is
    added by each case)."""
    folder.mkdir()
    st_numpy.save_file(tensors(0), folder / "model-00001-of-00001.safetensors")
    weight_map = dict.fromkeys(tensors(0), "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": weight_map})
    )
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    return fingerprint(folder).model_id


@pytest.mark.parametrize(
    ("other", "config", "message"),
    [
        # transformers loads model.safetensors before the shard index
        ("model.safetensors", None, "model.safetensors"),
        # config.json's transformers_weights names the file transformers loads
        (
            "evil.safetensors",
            {"transformers_weights": "evil.safetensors"},
            "'evil.safetensors'",
        ),
        # transformers (with peft) applies an adapter beside the model to it
        ("adapter_model.safetensors", None, "adapter_model.safetensors"),
    ],
)
def test_a_folder_with_two_sets_of_weights_is_refused(tmp_path, other, config, message):
    folder = tmp_path / "model"
    approved = _approved_folder(folder)
    st_numpy.save_file(tensors(1), folder / other)
    if other.startswith("adapter_model"):
        (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    if config is not None:
        (folder / "config.json").write_text(
            json.dumps({"model_type": "gpt2", **config})
        )
    with pytest.raises(InputError) as caught:
        fingerprint(folder)
    assert f"would load {message}" in str(caught.value)
    assert "nothing was recorded" in caught.value.hint
    # an output folder gets no model id: an approval of `approved` does not cover it
    fields = capture_model_fields(folder)
    assert "model" not in fields
    assert f"would load {message}" in fields["model_error"]
    # the file named on its own is still fingerprinted
    assert fingerprint(folder / "model.safetensors.index.json").model_id == approved


def test_a_lone_safetensors_file_beside_pytorch_weights_is_refused(tmp_path):
    (torch,) = require_extra("finetune", "torch")
    folder = tmp_path / "model"
    folder.mkdir()
    st_numpy.save_file(tensors(0), folder / "weights.safetensors")
    torch.save({"w": torch.ones(3)}, folder / "pytorch_model.bin")
    # transformers loads pytorch_model.bin; no file names weights.safetensors
    with pytest.raises(InputError, match=r"would load pytorch_model\.bin$"):
        fingerprint(folder)
    # the ordinary Hub layout, model.safetensors beside pytorch_model.bin, is read
    # as before: safetensors first, as transformers does
    (folder / "weights.safetensors").rename(folder / "model.safetensors")
    assert fingerprint(folder) == fingerprint(folder / "model.safetensors")
    # and a torch shard index beside pytorch_model.bin, which transformers loads
    (folder / "model.safetensors").unlink()
    weight_map = {"weight_map": {"w": "pytorch_model-00001-of-00001.bin"}}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(weight_map))
    torch.save({"w": torch.zeros(3)}, folder / "pytorch_model-00001-of-00001.bin")
    with pytest.raises(InputError, match=r"would load pytorch_model\.bin$"):
        fingerprint(folder)


def test_an_adapter_beside_full_torch_weights_without_its_config_is_refused(tmp_path):
    """Without ``adapter_config.json`` transformers ignores the adapter file and
    loads ``pytorch_model.bin`` (or its index): the folder got the adapter's id."""
    (torch,) = require_extra("finetune", "torch")
    folder = tmp_path / "model"
    folder.mkdir()
    st_numpy.save_file(tensors(0), folder / "adapter_model.safetensors")
    approved = fingerprint(folder).model_id  # an adapter folder alone: read
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    torch.save({"w": torch.ones(3)}, folder / "pytorch_model.bin")
    with pytest.raises(InputError, match=r"would load pytorch_model\.bin$"):
        fingerprint(folder)
    assert "model" not in capture_model_fields(folder)
    assert fingerprint(folder / "adapter_model.safetensors").model_id == approved


@pytest.mark.parametrize("shape", ["deep", "shared"])
def test_lists_of_plain_values_in_a_pickle_are_looked_through_once(tmp_path, shape):
    """The walk for tensors in lists recursed once per level (a list 450 deep,
    which torch saves and loads, crashed it with RecursionError) and followed
    every path (a 2 KB pickle referencing one list twice at each of 40 levels
    took 2**40 steps: a run writing it never ended). Plain values beside the
    weights are ignored, as before."""
    (torch,) = require_extra("finetune", "torch")
    meta = [1]
    for _ in range(450 if shape == "deep" else 40):
        meta = [meta] if shape == "deep" else [meta, meta]
    torch.save({"w": torch.ones(2), "meta": meta}, tmp_path / "m.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pt")
    assert fingerprint(tmp_path / "m.pt") == fingerprint(tmp_path / "plain.pt")


@pytest.mark.parametrize("version", ["2.5.1", "2.9.1+cpu", "1.13.0"])
def test_a_torch_whose_safe_loader_runs_code_is_not_used(
    tmp_path, monkeypatch, version
):
    # torch.load(weights_only=True) runs code from a crafted file before 2.6
    # (CVE-2025-32434) and corrupts memory before 2.10 (CVE-2026-24747)
    (torch,) = require_extra("finetune", "torch")
    torch.save({"w": torch.zeros(2)}, tmp_path / "m.bin")
    loads = []
    monkeypatch.setattr(torch, "__version__", version)
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a))
    with pytest.raises(InputError, match=r"needs torch 2\.10 or later") as e:
        fingerprint(tmp_path / "m.bin")
    assert f"this is {version})" in str(e.value)
    assert "safetensors" in e.value.hint
    assert loads == []


def test_torch_tensors_of_other_layouts_are_refused_or_read_as_values(tmp_path):
    (torch,) = require_extra("finetune", "torch")
    for kind, odd in (
        ("sparse", torch.eye(3).to_sparse()),
        ("meta", torch.empty(3, device="meta")),
    ):
        torch.save({"w": torch.zeros(2), "odd": odd}, tmp_path / f"{kind}.pt")
        with pytest.raises(InputError, match="cannot hash its values"):
            fingerprint(tmp_path / f"{kind}.pt")
    # a conjugate (or negative) view is hashed as the values it reads as
    value = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
    torch.save({"w": value.conj()}, tmp_path / "view.pt")
    torch.save({"w": value.conj().resolve_conj()}, tmp_path / "plain.pt")
    assert fingerprint(tmp_path / "view.pt") == fingerprint(tmp_path / "plain.pt")
    torch.save({"w": value.conj().imag}, tmp_path / "neg.pt")
    torch.save({"w": -value.imag}, tmp_path / "negplain.pt")
    assert fingerprint(tmp_path / "neg.pt") == fingerprint(tmp_path / "negplain.pt")


@pytest.mark.parametrize("chunk", [4, 2])  # the NaN in the first chunk, or a later one
def test_a_nan_in_the_weights_leaves_the_largest_change_unknown(
    tmp_path, monkeypatch, chunk
):
    import mltrail.capture.model.delta as delta_module

    monkeypatch.setattr(delta_module, "CHUNK_ELEMENTS", chunk)
    st_numpy.save_file({"w": np.zeros(4, np.float32)}, tmp_path / "a.safetensors")
    tuned = np.array([0.5, 0.0, np.nan, 0.0], np.float32)
    st_numpy.save_file({"w": tuned}, tmp_path / "b.safetensors")
    sa, sb = (
        scan_model(tmp_path / "a.safetensors"),
        scan_model(tmp_path / "b.safetensors"),
    )
    (row,) = capture_delta(sa.source, sb.source, sa.fingerprint, sb.fingerprint)
    # not a finite max |dW| (0.5, or 0) for weights that hold a NaN
    assert (row.status, row.l2, row.relative, row.max_abs) == (
        "changed",
        None,
        None,
        None,
    )


def test_a_lora_adapter_with_a_nan_is_refused_not_called_untrained(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q"]}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    b = np.ones((6, 2), np.float32)
    b[0, 0] = np.nan
    weights = {
        "base_model.model.q.lora_A.weight": np.ones((2, 4), np.float32),
        "base_model.model.q.lora_B.weight": b,
    }
    st_numpy.save_file(weights, adapter / "adapter_model.safetensors")
    base = tmp_path / "base.safetensors"
    st_numpy.save_file({"q.weight": np.ones((6, 4), np.float32)}, base)
    for kwargs in ({}, {"base": base}):
        # was: effective rank 0 (an untrained B), or with a base a canonical-JSON
        # error about NaN
        with pytest.raises(InputError, match="q: A or B holds NaN"):
            finetune_body(adapter=adapter, **kwargs)


def test_tensors_a_pickle_holds_in_a_list_are_refused_not_left_out(tmp_path):
    (torch,) = require_extra("finetune", "torch")
    w = torch.arange(4.0)
    torch.save({"w": w}, tmp_path / "plain.pt")
    plain = fingerprint(tmp_path / "plain.pt")
    # plain values beside the tensors are not weights: the id is unchanged
    torch.save({"w": w, "steps": [1, 2], "name": "x"}, tmp_path / "values.pt")
    assert fingerprint(tmp_path / "values.pt") == plain
    # an ensemble, or any tensor in a list, was left out of the id: checkpoints
    # with other weights there got the id of {"w": w}
    for name, state in (
        ("list", {"w": w, "ema": [torch.ones(2)]}),
        ("ensemble", {"w": w, "models": ({"w": torch.zeros(3)},)}),
        ("nested", {"w": w, "opt": {"groups": [[torch.ones(1)]]}}),
    ):
        torch.save(state, tmp_path / f"{name}.pt")
        with pytest.raises(InputError, match="in a list") as caught:
            fingerprint(tmp_path / f"{name}.pt")
        assert "dict" in caught.value.hint
