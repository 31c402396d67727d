"""Plain PyTorch (``mltrail.torch.log_optimizer``) and in-memory dataset fingerprints."""

from __future__ import annotations

import pytest

import mltrail
import mltrail.torch
from ledger_reading import entries
from mltrail.integrations.fingerprints import dataset_facts
from optional_extras import require_extra

(torch,) = require_extra("finetune", "torch")

pytestmark = pytest.mark.usefixtures("isolated_home")


def test_every_param_group_and_the_scheduler_settings_are_recorded(isolated_home):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "lr": 1e-3, "weight_decay": 0.1},
            {"params": model[1].parameters(), "lr": 5e-4, "betas": (0.8, 0.9)},
        ]
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=1e-5)
    with mltrail.start_run("torch") as run:
        mltrail.torch.log_optimizer(opt, sched)
        for _ in range(3):  # trains for real
            loss = model(torch.randn(16, 4)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    (body,) = [e.body for e in entries(isolated_home, run.id) if e.kind == "run.params"
               and "optimizer.class" in e.body["params"]]  # fmt: skip
    recorded = body["params"]
    assert recorded["optimizer.class"] == "torch.optim.adamw.AdamW"
    for n, group in enumerate(opt.param_groups):
        prefix = f"optimizer.param_groups.{n}."
        for key, value in group.items():
            if key == "params":
                assert recorded[prefix + "params"] == len(value)
            elif key != "lr":  # the scheduler has moved lr on since
                want = list(value) if isinstance(value, tuple) else value
                assert recorded[prefix + key] == want, key
        assert recorded[prefix + "lr"] == group["initial_lr"]
    assert recorded["optimizer.param_groups.0.numel"] == 4 * 8 + 8
    assert recorded["scheduler.class"].endswith("CosineAnnealingLR")
    assert recorded["scheduler.T_max"] == 10
    assert recorded["scheduler.eta_min"] == 1e-5
    assert not any(k.startswith("scheduler._") for k in recorded)


def test_log_optimizer_without_a_run_is_an_error():
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    with pytest.raises(mltrail.InputError, match="no run"):
        mltrail.torch.log_optimizer(opt)


def tensors(seed, rows=20):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, 3, generator=g)
    return torch.utils.data.TensorDataset(x, x > 0)


def test_dataset_fingerprints_follow_content_and_stop_at_the_limits():
    a, again, other = dataset_facts(tensors(0)), dataset_facts(tensors(0)), None
    other = dataset_facts(tensors(1))
    assert a["method"] == "content-sha256"
    assert a["fingerprint"] == again["fingerprint"] != other["fingerprint"]
    assert a["rows"] == 20
    assert dataset_facts([{"text": "b", "id": 1}]) != dataset_facts(
        [{"text": "c", "id": 1}]
    )
    too_many = dataset_facts(tensors(0), max_items=10)
    assert too_many["method"] == "none"
    assert "limit" in too_many["reason"]
    assert dataset_facts(tensors(0), max_bytes=100)["method"] == "none"
    stream = dataset_facts(iter(range(3)))
    assert stream["method"] == "none"
    assert "rows" not in stream
    assert dataset_facts([object()])["method"] == "none"


def test_a_hugging_face_dataset_is_known_by_its_own_fingerprint():
    class Arrow(list):  # the one attribute read of a datasets.Dataset
        _fingerprint = "3f1c0a9d2b7e4f61"

    facts = dataset_facts(Arrow([1, 2]))
    assert facts["method"] == "datasets-fingerprint"
    assert facts["fingerprint"] == "3f1c0a9d2b7e4f61"
