"""The Lightning logger, training a small network for real on CPU."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest

import mltrail
from ledger_reading import entries
from optional_extras import require_extra

torch, L = require_extra("lightning", "torch", "lightning.pytorch")

from mltrail.capture.model.fingerprint import capture_fingerprint  # noqa: E402
from mltrail.capture.model.model_files import locate_model  # noqa: E402
from mltrail.integrations.lightning import MltrailLogger  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("isolated_home"),
    pytest.mark.filterwarnings("ignore::UserWarning"),  # Lightning's hints (workers)
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
]


class Data(L.LightningDataModule):
    def __init__(self, rows=64):
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(self.hparams.rows, 4, generator=g)
        self.dataset = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.dataset, batch_size=8)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(self.dataset, batch_size=16)


class Net(L.LightningModule):
    def __init__(self, lr=0.1, hidden=8):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def training_step(self, batch, _):
        loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]


def fit(lr=0.1, logger=None, module=None):
    logger = logger or MltrailLogger(flush_every=5)
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        max_epochs=2, logger=logger, callbacks=[logger], accelerator="cpu",
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
        default_root_dir="out",
    )  # fmt: skip
    module = module or Net(lr=lr)
    trainer.fit(module, datamodule=Data())
    return logger, trainer, module


def params_of(found):
    merged = {}
    for e in found:
        if e.kind == "run.params" and e.body["source"] == "api":
            merged |= e.body["params"]
    return merged


def test_the_logger_records_hparams_data_optimizer_and_checkpoints(isolated_home):
    logger, trainer, module = fit()
    found = entries(isolated_home, logger.version)
    recorded = params_of(found)
    assert recorded["hparams.lr"] == 0.1
    assert recorded["hparams.hidden"] == 8
    assert recorded["hparams.rows"] == 64
    assert recorded["lightning.datamodule"].endswith(".Data")
    # every param group as the optimizer holds it (at the start: the scheduler's
    # steps since then changed lr, so compare what training did not change)
    (opt,) = trainer.optimizers
    for n, group in enumerate(opt.param_groups):
        for key, value in group.items():
            if key not in ("params", "lr"):
                assert recorded[f"optimizers.0.param_groups.{n}.{key}"] == value, key
        assert recorded[f"optimizers.0.param_groups.{n}.lr"] == group["initial_lr"]
    assert recorded["schedulers.0.step_size"] == 1
    assert recorded["schedulers.0.gamma"] == 0.5
    assert recorded["dataset.train.method"] == "content-sha256"
    assert recorded["dataset.train.rows"] == 64

    metrics = [e.body for e in found if e.kind == "run.metrics"]
    steps = sum(m["series"]["train_loss"]["count"] for m in metrics)
    assert steps == trainer.global_step
    assert len(metrics) < steps

    checkpoints = [e.body for e in found if e.kind == "run.artifact"]
    assert len(checkpoints) == 2  # one per epoch (ModelCheckpoint keeps the last)
    for body in checkpoints:
        assert body["model_format"] == "lightning-checkpoint"
    for body in checkpoints[-1:]:
        own = capture_fingerprint(locate_model(Path(body["path"])))
        assert body["model"] == own.model_id
    # the model id is of the weights alone, as the module holds them
    last = torch.load(checkpoints[-1]["path"], weights_only=True)["state_dict"]
    assert set(last) == set(module.state_dict())
    assert found[-1].kind == "run.ended"
    assert found[-1].body["status"] == "succeeded"
    assert mltrail.verify(isolated_home).ok


def test_diff_of_two_logged_runs_shows_exactly_the_changed_hparam():
    first, _, _ = fit(lr=0.1)
    second, _, _ = fit(lr=0.05)
    result = subprocess.run(
        [sys.executable, "-m", "mltrail", "diff", first.version, second.version,
         "--json"],
        capture_output=True, text=True, env=os.environ, check=True,
    )  # fmt: skip
    changed = json.loads(result.stdout)["sections"]["params"]
    keys = {c["key"] for c in changed}
    assert keys == {
        "hparams.lr",
        "optimizers.0.param_groups.0.lr",
        "optimizers.0.param_groups.0.initial_lr",
        "schedulers.0.base_lrs",
    }  # one argument, and the optimizer settings it determines


def test_the_logger_joins_an_open_run(isolated_home):
    with mltrail.start_run("outer") as run:
        logger, _, _ = fit()
        assert logger.version == run.id
        assert run.status is None
    found = entries(isolated_home, run.id)
    assert [e.kind for e in found].count("run.ended") == 1


class Recording(L.loggers.Logger):
    """A second logger keeping every value Lightning gives its loggers."""

    name, version = "recording", "0"

    def __init__(self):
        super().__init__()
        self.points = {}

    def log_hyperparams(self, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        for key, value in metrics.items():
            steps, values = self.points.setdefault(key, ([], []))
            steps.append(step)
            values.append(value)


def recorded_points(home, run_id):
    """Every metric point of the run, batches joined in order: {name: (steps, values)}."""
    opened = mltrail.open_home(home, writable=False, env={})
    points, batches = {}, 0
    try:
        for e in (r.entry for r in opened.ledger.records()):
            if e.run == run_id and e.kind == "run.metrics":
                batches += 1
                blob = json.loads(opened.ledger.get_blob(e.body["points"]["blob"]))
                for key, series in blob.items():
                    steps, values = points.setdefault(key, ([], []))
                    steps += series["steps"]
                    values += series["values"]
    finally:
        opened.close()
    return points, batches


def test_every_metric_value_is_the_one_lightning_logged(isolated_home):
    """Written in several batches (no time floor), the points are exactly what
    Lightning handed its loggers."""
    tracker, seen = MltrailLogger(flush_every=3, min_flush_seconds=0), Recording()
    marker = L.callbacks.LearningRateMonitor()
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        max_epochs=2, logger=[tracker, seen], callbacks=[marker, tracker],
        accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
        log_every_n_steps=1, default_root_dir="out",
    )  # fmt: skip
    trainer.fit(Net(), datamodule=Data())

    points, batches = recorded_points(isolated_home, tracker.version)
    assert batches > 3  # several flushes, not only the final one
    assert set(points) == set(seen.points)
    for key, (steps, values) in seen.points.items():
        assert points[key] == (steps, values), key
    assert len(points["train_loss"][0]) == trainer.global_step


def test_a_failing_fit_ends_the_run_failed_with_the_steps_before(isolated_home):
    class Failing(Net):
        def training_step(self, batch, index):
            if self.global_step == 3:
                raise RuntimeError("boom")
            return super().training_step(batch, index)

    tracker = MltrailLogger()
    trainer = L.Trainer(
        max_epochs=1, logger=tracker, callbacks=[tracker], accelerator="cpu",
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
        default_root_dir="out",
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Failing(), datamodule=Data())
    found = entries(isolated_home, tracker.version)
    assert found[-1].kind == "run.ended"
    assert found[-1].body["status"] == "failed"
    points, _ = recorded_points(isolated_home, tracker.version)
    assert points["train_loss"][0] == [0, 1, 2]  # the steps before the failure


@dataclasses.dataclass
class Tracking:
    project: str
    api_key: str


class TrackedNet(Net):
    def __init__(self, tracking: Tracking, lr=0.1):
        super().__init__(lr=lr)
        self.save_hyperparameters()


def test_a_config_object_in_the_hparams_keeps_its_secret(isolated_home):
    """``save_hyperparameters()`` hands the logger the module's arguments as
    they are: a config dataclass is recorded as its ``repr``, and its
    ``api_key='…'`` was kept in clear when the key held letters only (ADR 0013,
    amendment 2026-12-08)."""
    key = "".join(random.choice(string.ascii_lowercase) for _ in range(24))
    logger, _, _ = fit(module=TrackedNet(Tracking("churn", key)))
    recorded = params_of(entries(isolated_home, logger.version))
    tracking = recorded["hparams.tracking"]
    assert tracking.startswith("Tracking(project='churn', api_key='<redacted hmac")
    assert recorded["hparams.lr"] == 0.1
    stored = b"".join(p.read_bytes() for p in isolated_home.rglob("*") if p.is_file())
    assert key.encode() not in stored
