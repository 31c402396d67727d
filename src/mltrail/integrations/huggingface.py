"""Record a Hugging Face ``Trainer`` run: ``MltrailCallback``.

Example::

    from transformers import Trainer
    from mltrail.integrations.huggingface import MltrailCallback

    trainer = Trainer(model, args, train_dataset=train, callbacks=[MltrailCallback()])
    trainer.train()

At the start of training it records, as ``run.params``: every field of the
``TrainingArguments`` (``trainer.<field>``, as ``to_dict`` gives them, except that
``*_token`` fields keep their value so that mltrail's redaction stores a keyed
commitment instead of the text, and an unset token stays ``None``), the model
config (``model.config.<key>``), each PEFT adapter's config (``peft.<adapter>.<key>``:
rank ``r``, ``lora_alpha``, ``target_modules`` ...) and the training dataset's
fingerprint (``dataset.train.*``, see ``mltrail.integrations.fingerprints``); an
evaluation dataset is added at the first evaluation. Logged metrics are buffered
and written every ``flush_every`` steps and at the end (one ``run.metrics`` entry
per flush). Every checkpoint the trainer saves is a ``run.artifact`` (its files'
manifest and model id). At the end the final model is saved with
``save_pretrained`` to ``<output_dir>/final-model`` (unless the last checkpoint
already holds it, or ``save_final=False``) and recorded as the ``final-model``
artifact; a PEFT model's adapter is also recorded as ``run.finetune``.

The callback records into the run it is given, else joins the run of this
process (``mltrail.start_run``) or of ``mltrail run``, else starts one, which it
ends when training ends. Only the main process records (``is_world_process_zero``).

Raises ``ConfigError`` naming the extra (``pip install 'mltrail[huggingface]'``)
when transformers is not installed.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.integrations._common import number_items, open_run, require
from mltrail.integrations.fingerprints import MAX_ITEMS, dataset_facts

if TYPE_CHECKING:
    from mltrail.integrations._common import RunHandle
    from mltrail.record.runs import Run

_transformers = require("transformers", "huggingface")

__all__ = ["FINAL_MODEL", "MltrailCallback", "training_arguments"]

FINAL_MODEL = "final-model"


def training_arguments(args: Any) -> dict[str, Any]:
    """Every init field of ``TrainingArguments`` as ``to_dict`` gives it, except
    ``*_token`` fields, which keep their value (None, or the secret for mltrail's
    redaction to commit to) instead of ``to_dict``'s placeholder."""
    values = dict(args.to_dict())
    for field in dataclasses.fields(args):
        if field.init and field.name.endswith("_token"):
            values[field.name] = getattr(args, field.name)
    return values


class MltrailCallback(_transformers.TrainerCallback):  # type: ignore[misc,name-defined]
    """A ``TrainerCallback`` recording the run into the mltrail ledger.

    Args:
        run: the run to record into (default: join or start one).
        name: the name of a run it starts.
        home: the ledger home of a run it starts.
        flush_every: write buffered metrics every this many steps (and at the end).
        save_final: save and record the final model at the end of training.
        max_dataset_items: fingerprint map-style datasets up to this many items.
    """

    def __init__(
        self,
        run: Run | None = None,
        *,
        name: str | None = None,
        home: str | Path | None = None,
        flush_every: int = 100,
        save_final: bool = True,
        max_dataset_items: int = MAX_ITEMS,
    ) -> None:
        self._given, self._name, self._home = run, name, home
        self.flush_every = max(1, flush_every)
        self.save_final = save_final
        self.max_dataset_items = max_dataset_items
        self._handle: RunHandle | None = None
        self._last_flush = 0
        self._saved: dict[int, Path] = {}
        self._eval_recorded = False
        self.last_run_id: str | None = None

    @property
    def run(self) -> Run | None:
        """The run being recorded into (None before training starts)."""
        return None if self._handle is None else self._handle.run

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """Open the run; record the arguments, model and PEFT configs, dataset."""
        if not state.is_world_process_zero:
            return
        self._handle = open_run(self._given, name=self._name, home=self._home)
        self.last_run_id = self._handle.run.id
        self._last_flush = state.global_step
        params: dict[str, Any] = {"trainer": training_arguments(args)}
        params |= _model_params(kw.get("model"))
        loader = kw.get("train_dataloader")
        if loader is not None and getattr(loader, "dataset", None) is not None:
            params["dataset"] = {"train": self._facts(loader.dataset)}
        self._handle.run.log_params(params)

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        """Buffer the numbers the trainer logged, at its global step."""
        if self._handle is not None and logs:
            self._handle.run.log_metrics(number_items(logs), step=state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """Write the buffered metrics every ``flush_every`` steps."""
        due = state.global_step - self._last_flush >= self.flush_every
        if self._handle is not None and due:
            self._last_flush = state.global_step
            self._handle.run.flush()

    def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """Record the evaluation dataset the first time the trainer evaluates."""
        loader = kw.get("eval_dataloader")
        if self._handle is None or self._eval_recorded or loader is None:
            return
        self._eval_recorded = True
        facts = self._facts(loader.dataset)
        self._handle.run.log_params({"dataset": {"eval": facts}})

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """Record the checkpoint just saved (manifest and model id)."""
        if self._handle is None:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            self._saved[state.global_step] = folder
            self._handle.run.log_artifact(folder, name=folder.name)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        """Record the final model, write the metrics, end a run it started."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            if self.save_final:
                self._record_final(handle.run, args, state, kw.get("model"))
        except BaseException as e:
            handle.end("failed", error=f"{type(e).__name__}: {e}")
            raise
        handle.end()

    def _record_final(self, run: Run, args: Any, state: Any, model: Any) -> None:
        folder = self._saved.get(state.global_step)
        if folder is None and model is not None:
            folder = Path(args.output_dir) / FINAL_MODEL
            model.save_pretrained(os.fspath(folder))
        if folder is None:
            return
        run.log_artifact(folder, name=FINAL_MODEL)
        if getattr(model, "peft_config", None) and folder.name == FINAL_MODEL:
            run.log_finetune(adapter=folder)

    def _facts(self, dataset: Any) -> dict[str, Any]:
        return dataset_facts(dataset, max_items=self.max_dataset_items)


def _model_params(model: Any) -> dict[str, Any]:
    """``model.config`` and each PEFT adapter's config, as params."""
    params: dict[str, Any] = {}
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        params["model"] = {
            "class": type(model).__qualname__,
            "config": config.to_dict(),
        }
    adapters = getattr(model, "peft_config", None)
    if isinstance(adapters, dict) and adapters:
        params["peft"] = {name: cfg.to_dict() for name, cfg in adapters.items()}
    return params
