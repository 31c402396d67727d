"""Per-step overhead of the framework adapters: HF callback and Lightning logger.

Each framework trains the same model on CPU with and without the mltrail adapter,
repetitions interleaved (with, without, with, ...), and the time of the training
steps is compared:

- Hugging Face: a GPT-2 of 2 layers (hidden 64, 64 tokens, batch 8), ``--steps``
  steps with ``logging_steps=1`` (the worst case: a metrics call every step),
  no checkpoints (``save_strategy="no"``, ``save_final=False``): the adapter's cost
  is what it adds per step. Timed from the first to the last ``on_step_end``
  (set-up, the run's start and end are fixed costs, printed apart).
- Lightning: a 3-layer MLP (hidden 256, batch 64), ``log_every_n_steps=1``, no
  checkpoints, timed the same way (first to last ``on_train_batch_end``); the
  baseline has a logger that discards what it is given (Lightning's own cost of
  logging, which any logger pays, is on both sides).

Target: < 2 % per step. Models this small make the overhead look larger than it
would on any real model (a step here takes a few milliseconds).

Run: ``python benchmarks/bench_callbacks.py [--steps N] [--reps N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def hf_pair(steps: int, work: Path) -> tuple[float, float, float]:
    import torch
    import transformers

    from mltrail.integrations.huggingface import MltrailCallback

    transformers.logging.set_verbosity_error()

    class Clock(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, *args, **kw) -> None:
            self.times.append(time.perf_counter())

    def once(with_mltrail: bool) -> tuple[float, float]:
        torch.manual_seed(0)
        config = transformers.GPT2Config(
            n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=64
        )
        rows = [(torch.arange(64) * (i + 1)) % 256 for i in range(64)]
        data = [{"input_ids": r, "labels": r} for r in rows]
        args = transformers.TrainingArguments(
            output_dir=str(work / "out"), max_steps=steps, logging_steps=1,
            per_device_train_batch_size=8, save_strategy="no", report_to=[],
            use_cpu=True, disable_tqdm=True,
        )  # fmt: skip
        clock = Clock()
        callbacks = [clock]
        if with_mltrail:
            callbacks.insert(0, MltrailCallback(save_final=False))
        trainer = transformers.Trainer(
            model=transformers.GPT2LMHeadModel(config), args=args,
            train_dataset=data, callbacks=callbacks,
        )  # fmt: skip
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
        start = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - start
        per_step = (clock.times[-1] - clock.times[0]) / (len(clock.times) - 1)
        return per_step, total

    return once


def lightning_pair(steps: int, work: Path):
    import lightning
    import torch

    from mltrail.integrations.lightning import MltrailLogger

    class Net(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.save_hyperparameters({"lr": 0.01})
            self.net = torch.nn.Sequential(
                torch.nn.Linear(64, 256), torch.nn.ReLU(),
                torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1),
            )  # fmt: skip
            self.times: list[float] = []

        def training_step(self, batch, _):
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def on_train_batch_end(self, *args) -> None:
            self.times.append(time.perf_counter())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Discard(lightning.pytorch.loggers.Logger):
        """A logger that keeps nothing: Lightning's own cost of logging."""

        name, version = "discard", "0"

        def log_hyperparams(self, *args, **kw) -> None:
            pass

        def log_metrics(self, *args, **kw) -> None:
            pass

    def once(with_mltrail: bool) -> tuple[float, float]:
        torch.manual_seed(0)
        x = torch.randn(64 * steps, 64)
        data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
        tracker = MltrailLogger() if with_mltrail else Discard()
        trainer = lightning.Trainer(
            max_epochs=1, logger=tracker, callbacks=[tracker] if with_mltrail else [],
            accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
            enable_checkpointing=False, log_every_n_steps=1,
            default_root_dir=str(work / "pl"),
        )  # fmt: skip
        net = Net()
        start = time.perf_counter()
        trainer.fit(net, torch.utils.data.DataLoader(data, batch_size=64))
        total = time.perf_counter() - start
        per_step = (net.times[-1] - net.times[0]) / (len(net.times) - 1)
        return per_step, total

    return once


def measure(name: str, once, reps: int) -> None:
    once(True)  # warm-up: imports, the ledger's creation
    once(False)
    with_steps, without_steps, with_totals, without_totals = [], [], [], []
    for _ in range(reps):
        step, total = once(True)
        with_steps.append(step)
        with_totals.append(total)
        step, total = once(False)
        without_steps.append(step)
        without_totals.append(total)
    a, b = statistics.median(with_steps), statistics.median(without_steps)
    overhead = (a - b) / b * 100
    verdict = "PASS" if overhead < 2 else "FAIL"
    print(
        f"{name}: per step {a * 1e3:.3f} ms with mltrail, {b * 1e3:.3f} ms without "
        f"(medians of {reps}): {overhead:+.2f} % [{verdict}, target < 2 %]; "
        f"whole fit {statistics.median(with_totals):.2f} s vs "
        f"{statistics.median(without_totals):.2f} s (run start, end, checkpoint)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["MLTRAIL_HOME"] = str(work / "audit")
        os.chdir(work)
        measure("hf-trainer", hf_pair(opts.steps, work), opts.reps)
        measure("lightning", lightning_pair(opts.steps, work), opts.reps)


if __name__ == "__main__":
    main()
