"""Record a Hugging Face Trainer run with ``MltrailCallback``.

Run: python examples/hf_trainer.py  (needs ``pip install 'mltrail[huggingface]'``)

Trains a tiny GPT-2 built from a config (nothing downloaded) for a few steps on
CPU, in a temporary folder with a temporary ledger home.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mltrail.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    """Train, then show what the ledger holds."""
    try:
        import torch
        import transformers

        from mltrail.integrations.huggingface import MltrailCallback
    except (ImportError, ConfigError) as e:  # ConfigError names the extra
        print(f"skipped: {e}")
        return
    import mltrail

    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["MLTRAIL_HOME"] = str(work / "audit")
        torch.manual_seed(0)
        config = transformers.GPT2Config(
            n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16,
            bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        rows = [(torch.arange(16) * (i + 1)) % 64 for i in range(32)]
        data = [{"input_ids": r, "labels": r} for r in rows]
        args = transformers.TrainingArguments(
            output_dir=str(work / "out"), max_steps=4, per_device_train_batch_size=8,
            logging_steps=1, save_steps=2, report_to=[], use_cpu=True,
            disable_tqdm=True,
        )  # fmt: skip
        callback = MltrailCallback(name="tiny-gpt2")
        trainer = transformers.Trainer(
            model=transformers.GPT2LMHeadModel(config), args=args,
            train_dataset=data, callbacks=[callback],
        )  # fmt: skip
        trainer.train()
        report = mltrail.verify()
        assert report.ok, report.verdict()
        print(f"run {callback.last_run_id}: {report.verdict()}")


if __name__ == "__main__":
    main()
