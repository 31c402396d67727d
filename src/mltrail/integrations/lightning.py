"""Record a Lightning run: ``MltrailLogger``, a logger that is also a callback.

Example::

    import lightning as L
    from mltrail.integrations.lightning import MltrailLogger

    tracker = MltrailLogger()
    trainer = L.Trainer(logger=tracker, callbacks=[tracker], max_epochs=3)
    trainer.fit(model, datamodule=data)

As a logger it records the hyperparameters Lightning logs (the module's and the
datamodule's ``save_hyperparameters``) as ``run.params`` under ``hparams.``, the
metrics (buffered, written every ``flush_every`` logging calls but at most once
every ``min_flush_seconds``, and at the end),
and every checkpoint file ``ModelCheckpoint`` saves as a ``run.artifact`` (its
SHA-256 and the model id of its ``state_dict``). As a callback (pass it in
``callbacks`` too) it records, when fitting starts, the module and datamodule
classes, the optimizers' param groups and schedulers' settings
(``mltrail.torch``), and the fingerprints of the train and validation datasets
(``dataset.train.*``, ``dataset.val.*``, see ``mltrail.integrations.fingerprints``).

It records into the run it is given, else joins the run of this process or of
``mltrail run``, else starts one, which it ends when Lightning finalizes the
logger (status ``succeeded`` or ``failed``). Only global rank 0 records.

Raises ``ConfigError`` naming the extra (``pip install 'mltrail[lightning]'``)
when lightning is not installed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.integrations._common import number_items, open_run, require
from mltrail.integrations.fingerprints import MAX_ITEMS, dataset_facts
from mltrail.integrations.pytorch import optimizer_params, scheduler_params

if TYPE_CHECKING:
    from mltrail.integrations._common import RunHandle
    from mltrail.record.runs import Run

_pl = require("lightning.pytorch", "lightning")
_rank_zero_only = _pl.utilities.rank_zero_only

__all__ = ["MltrailLogger"]

_STATUS = {"success": "succeeded", "failed": "failed", "interrupted": "interrupted"}


class MltrailLogger(_pl.loggers.Logger, _pl.Callback):  # type: ignore[misc,name-defined]
    """A Lightning logger (and callback) recording into the mltrail ledger.

    Args:
        run: the run to record into (default: join or start one).
        name: the name of a run it starts.
        home: the ledger home of a run it starts.
        flush_every: write buffered metrics every this many logging calls...
        min_flush_seconds: ...but at most once every this many seconds: a write
            is signed and synced to disk (~10 ms), too much to pay every 100
            steps of a few milliseconds. Nothing is dropped: the metrics stay
            buffered (``Run`` itself writes every 10,000 points or 30 s).
        max_dataset_items: fingerprint map-style datasets up to this many items.
    """

    def __init__(
        self,
        run: Run | None = None,
        *,
        name: str | None = None,
        home: str | Path | None = None,
        flush_every: int = 100,
        min_flush_seconds: float = 5.0,
        max_dataset_items: int = MAX_ITEMS,
    ) -> None:
        super().__init__()
        self._given, self._name, self._home = run, name, home
        self.flush_every = max(1, flush_every)
        self.min_flush_seconds = min_flush_seconds
        self.max_dataset_items = max_dataset_items
        self._handle: RunHandle | None = None
        self._calls = 0
        self._written = time.monotonic()
        self._recorded: set[tuple[str, int]] = set()
        self._run_id: str | None = None

    # ---- Logger ------------------------------------------------------------

    @property
    def name(self) -> str:
        """The logger's name."""
        return "mltrail"

    @property
    def version(self) -> str:
        """The id of the run recorded into (the last one, once finalized)."""
        return self._run_id or self.run.id

    @property
    def run(self) -> Run:
        """The run recorded into (joined or started on first use)."""
        if self._handle is None:
            self._handle = open_run(self._given, name=self._name, home=self._home)
            self._run_id = self._handle.run.id
        return self._handle.run

    @_rank_zero_only  # type: ignore[misc]
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Record the hyperparameters as ``hparams.<name>``."""
        values = dict(vars(params) if hasattr(params, "__dict__") else params)
        if values:
            self.run.log_params({"hparams": values})

    @_rank_zero_only  # type: ignore[misc]
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Buffer the metrics at ``step``; write them every ``flush_every`` calls,
        at most once every ``min_flush_seconds``."""
        run = self.run
        run.log_metrics(number_items(metrics), step=step)
        self._calls += 1
        if self._calls >= self.flush_every:
            now = time.monotonic()
            if now - self._written >= self.min_flush_seconds:
                self._calls, self._written = 0, now
                run.flush()

    @_rank_zero_only  # type: ignore[misc]
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Record each checkpoint file saved since the last call."""
        paths = [
            checkpoint_callback.last_model_path,
            checkpoint_callback.best_model_path,
        ]
        paths += list(getattr(checkpoint_callback, "best_k_models", {}))
        for text in dict.fromkeys(p for p in paths if p):
            path = Path(text)
            if not path.is_file():
                continue
            key = (str(path), path.stat().st_mtime_ns)
            if key not in self._recorded:
                self._recorded.add(key)
                self.run.log_artifact(path, name=path.name)

    @_rank_zero_only  # type: ignore[misc]
    def finalize(self, status: str) -> None:
        """Write the metrics; end the run when this logger started it."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.end(_STATUS.get(status, "succeeded"))

    # ---- Callback ----------------------------------------------------------

    @_rank_zero_only  # type: ignore[misc]
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Record the classes, optimizers, schedulers and dataset fingerprints."""
        params: dict[str, Any] = {"lightning": {"module": _class_name(pl_module)}}
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            params["lightning"]["datamodule"] = _class_name(datamodule)
        params["optimizers"] = [optimizer_params(o) for o in trainer.optimizers]
        schedulers = [c.scheduler for c in trainer.lr_scheduler_configs]
        if schedulers:
            params["schedulers"] = [scheduler_params(s) for s in schedulers]
        datasets = {
            "train": _dataset_of(trainer.train_dataloader),
            "val": _dataset_of(trainer.val_dataloaders),
        }
        params["dataset"] = {
            role: dataset_facts(ds, max_items=self.max_dataset_items)
            for role, ds in datasets.items()
            if ds is not None
        }
        self.run.log_params(params)


def _dataset_of(loaders: Any) -> Any:
    """The dataset of a dataloader (the first, when Lightning holds several)."""
    if isinstance(loaders, list | tuple):
        loaders = loaders[0] if loaders else None
    if isinstance(loaders, dict):
        loaders = next(iter(loaders.values()), None)
    return getattr(loaders, "dataset", None)


def _class_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"
