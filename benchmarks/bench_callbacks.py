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

Each step is timed by the wall clock and by the CPU time of the training thread
(``time.thread_time``): on a shared machine the wall clock moves by more than the
effect, while the thread's CPU time only counts what that thread did (with
``--threads 1`` torch does a step's work on it too). Target: < 2 % per step.

Each repetition runs the baseline twice (with, without, without again): the two
baseline fits run the same code, so how far they differ is the noise floor of
the comparison, printed beside it. On a virtual machine whole fits of the same
code differ by 5-20 % from one to the next (every step of a fit is slower or
faster together), more than the target. For Lightning the benchmark also adds up
what the logger does per step from its parts, each timed in a tight loop (the
``log_metrics`` call, Lightning's dispatch of six hooks to one more callback, a
write spread over the steps between two writes), and for Hugging Face likewise
(``on_log`` and ``on_step_end``, the Trainer's dispatch of five events to one
more callback, a write every 100 steps): the figures chance moves least.
Models this small make the overhead look larger than it would on any real model
(a step here takes a few milliseconds).

Run: ``python benchmarks/bench_callbacks.py [--steps N] [--reps N]
[--only hf|lightning] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).parent))

from machine import describe  # noqa: E402


def hf_pair(steps: int, work: Path) -> tuple[float, float, float]:
    import torch
    import transformers

    from mltrail.integrations.huggingface import MltrailCallback

    transformers.logging.set_verbosity_error()

    class Clock(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.times: list[tuple[float, float]] = []

        def on_step_end(self, *args, **kw) -> None:
            self.times.append(_now())

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
        return _per_step(clock.times), total

    return once


def hf_parts(work: Path, step_s: float) -> None:
    """What the Hugging Face callback costs per step, part by part, in tight loops
    (fastest of 5), as ``lightning_parts`` does: (a) ``on_log`` with the four
    numbers the Trainer logs each step, and ``on_step_end``; (b) one metrics write
    of 100 steps, spread over the ``flush_every`` (100) steps between two writes;
    (c) the Trainer's dispatch of one event to one more callback, x 5 events per
    step (``on_step_begin``, ``on_pre_optimizer_step``, ``on_optimizer_step``,
    ``on_step_end``, ``on_log``)."""
    import transformers
    from transformers.trainer_callback import (
        CallbackHandler,
        DefaultFlowCallback,
        TrainerControl,
    )

    from mltrail.integrations.huggingface import MltrailCallback

    args = transformers.TrainingArguments(
        output_dir=str(work / "parts"), report_to=[], use_cpu=True
    )
    state, control = transformers.TrainerState(), TrainerControl()
    callback = MltrailCallback(save_final=False, flush_every=10**9)
    callback.on_train_begin(args, state, control)
    logs = {"loss": 0.5, "grad_norm": 1.25, "learning_rate": 5e-05, "epoch": 0.01}

    def step() -> None:
        state.global_step += 1
        callback.on_log(args, state, control, logs=dict(logs))
        callback.on_step_end(args, state, control)

    per_step = _fastest(step, 2000)
    per_write = _write_cost(step, per_step, callback.run)
    callback.on_train_end(args, state, control)
    dispatch = []
    flow = DefaultFlowCallback()  # the Trainer's own, which it always has
    for callbacks in ([flow], [flow, transformers.TrainerCallback()]):
        handler = CallbackHandler(callbacks, None, None, None, None)
        dispatch.append(
            _fastest(
                lambda h=handler: h.call_event("on_step_end", args, state, control),
                5000,
            )
        )
    per_event = dispatch[1] - dispatch[0]
    print(
        f"hf-trainer parts: (a) on_log + on_step_end {per_step * 1e6:.1f} us/step; "
        f"(b) one write of 100 steps {per_write * 1e3:.2f} ms; (c) one callback in "
        f"an event {per_event * 1e6:.2f} us, x 5 events per step"
    )
    _added_verdict("hf-trainer", per_step + per_write / 100 + 5 * per_event, step_s)


def _write_cost(step, per_step: float, run) -> float:
    """Seconds one metrics write of 100 steps adds (``Run.flush``: a blob and a
    signed entry, both synced), less the 100 steps' own calls."""

    def write() -> None:
        for _ in range(100):
            step()
        run.flush()

    return _fastest(write, 4) - 100 * per_step


def _added_verdict(name: str, added: float, step_s: float) -> None:
    """Print what an adapter adds per step, by its parts, against the step time."""
    share = added / step_s * 100
    print(
        f"{name}, added work per step by its parts: {added * 1e6:.1f} us = "
        f"{share:.2f} % of a {step_s * 1e3:.3f} ms step "
        f"[{'PASS' if share < 2 else 'FAIL'}, target < 2 %]"
    )


def _fastest(work, n: int) -> float:
    """Seconds per call of ``work``, fastest of 5 loops of ``n`` calls."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            work()
        best = min(best, (time.perf_counter() - start) / n)
    return best


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
            self.times: list[tuple[float, float]] = []

        def training_step(self, batch, _):
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def on_train_batch_end(self, *args) -> None:
            self.times.append(_now())

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
        return _per_step(net.times), total

    return once


def lightning_parts(work: Path, step_s: float) -> None:
    """What the Lightning logger costs, part by part, in tight loops (fastest of
    5: such loops are far less moved by other processes than a training step).

    (a) one ``log_metrics`` + ``save`` as Lightning calls them each step, the
    write left out; (b) one metrics write of 100 steps (``Run.flush``: blob and
    signed entry, both synced); (c) what Lightning's dispatch of one per-step
    hook adds for a callback in ``trainer.callbacks`` (six hooks per step).
    """
    import lightning
    from lightning.pytorch.trainer import call

    from mltrail.integrations.lightning import MltrailLogger

    try:
        logger = MltrailLogger(flush_every=10**9, min_flush_seconds=1e9)
    except TypeError:  # before min_flush_seconds
        logger = MltrailLogger(flush_every=10**9)
    step = iter(range(10**9))

    def log() -> None:
        logger.log_metrics({"train_loss": 0.25, "epoch": 0}, step=next(step))
        logger.save()

    per_call = _fastest(log, 2000)
    per_write = _write_cost(log, per_call, logger.run)
    logger.finalize("success")
    dispatch, hook = [], call._call_callback_hooks
    for callbacks in ([], [lightning.Callback()]):
        trainer = lightning.Trainer(
            callbacks=callbacks, logger=False, enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False,
            accelerator="cpu", default_root_dir=str(work / "pl"),
        )  # fmt: skip
        dispatch.append(
            _fastest(lambda t=trainer: hook(t, "on_before_zero_grad", None), 5000)
        )
    per_hook = dispatch[1] - dispatch[0]
    print(
        f"lightning parts: (a) log_metrics + save {per_call * 1e6:.1f} us/call; "
        f"(b) one write of 100 steps {per_write * 1e3:.2f} ms; (c) one callback "
        f"in the per-step hooks {per_hook * 1e6:.2f} us/hook, "
        f"x 6 hooks per step"
    )
    # A write happens at most once every min_flush_seconds (5 s): spread over the
    # steps of 5 s, or over 100 steps when steps are slower than 50 ms.
    steps_per_write = max(100, 5.0 / step_s)
    added = per_call + 6 * per_hook + per_write / steps_per_write
    _added_verdict("lightning", added, step_s)


def _now() -> tuple[float, float]:
    """Wall clock and this thread's CPU time (torch's own threads excluded)."""
    return time.perf_counter(), time.thread_time()


def _per_step(times: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean (wall, CPU) seconds per step, from the first to the last step-end."""
    steps = len(times) - 1
    return (
        (times[-1][0] - times[0][0]) / steps,
        (times[-1][1] - times[0][1]) / steps,
    )


def measure(name: str, once, reps: int) -> float:
    """Interleaved repetitions with, without and, as a control, without again
    (the same code twice: how far two fits differ by chance); returns the median
    step time without the adapter (seconds)."""
    once(True)  # warm-up: imports, the ledger's creation
    once(False)
    with_steps, without_steps, control_steps = [], [], []
    with_totals, without_totals = [], []
    for _ in range(reps):
        step, total = once(True)
        with_steps.append(step)
        with_totals.append(total)
        step, total = once(False)
        without_steps.append(step)
        without_totals.append(total)
        control_steps.append(once(False)[0])
    for clock, at in (("wall", 0), ("CPU of the training thread", 1)):
        a = statistics.median(s[at] for s in with_steps)
        b = statistics.median(s[at] for s in without_steps)
        # each repetition's pair ran back to back, under the same load
        paired = _paired(with_steps, without_steps, at)
        control = _paired(control_steps, without_steps, at)
        spread = statistics.median(
            abs(c[at] - wo[at]) / wo[at] * 100
            for c, wo in zip(control_steps, without_steps, strict=True)
        )
        fastest = min(s[at] for s in with_steps) / min(s[at] for s in without_steps)
        verdict = "PASS" if paired < 2 else "FAIL"
        print(
            f"{name}, {clock}: per step {a * 1e3:.3f} ms with mltrail, "
            f"{b * 1e3:.3f} ms without (medians of {reps}): "
            f"{(a - b) / b * 100:+.2f} % ({(a - b) * 1e6:+.1f} us); median of the "
            f"pairs {paired:+.2f} % [{verdict}, target < 2 %]; fastest of each "
            f"{(fastest - 1) * 100:+.2f} %"
        )
        print(
            f"  control, the same code twice (without, without): median of the "
            f"pairs {control:+.2f} %, a pair differs by {spread:.2f} % (median): "
            f"differences smaller than that are chance"
        )
    print(
        f"{name}: whole fit {statistics.median(with_totals):.2f} s vs "
        f"{statistics.median(without_totals):.2f} s (run start, end, checkpoint)"
    )
    return statistics.median(s[0] for s in without_steps)


def _paired(first: list, second: list, at: int) -> float:
    """Median of the repetitions' differences, first against second, in %."""
    return statistics.median(
        (f[at] - s[at]) / s[at] * 100 for f, s in zip(first, second, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", choices=["hf", "lightning"])
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (1: all of a step's "
        "work on the training thread, so its CPU time is the step's)",
    )  # fmt: skip
    opts = parser.parse_args()
    print(describe())
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["MLTRAIL_HOME"] = str(work / "audit")
        os.chdir(work)
        if opts.only != "lightning":
            step_s = measure("hf-trainer", hf_pair(opts.steps, work), opts.reps)
            hf_parts(work, step_s)
        if opts.only != "hf":
            step_s = measure("lightning", lightning_pair(opts.steps, work), opts.reps)
            lightning_parts(work, step_s)


if __name__ == "__main__":
    main()
