"""Record a Lightning run with ``MltrailLogger`` (a logger and a callback).

Run: python examples/lightning_logger.py  (needs ``pip install 'mltrail[lightning]'``)

Fits a small network for two epochs on CPU, with a temporary ledger home.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from mltrail.errors import ConfigError


def main() -> None:
    """Fit, then show what the ledger holds."""
    try:
        import lightning
        import torch

        from mltrail.integrations.lightning import MltrailLogger
    except (ImportError, ConfigError) as e:  # ConfigError names the extra
        print(f"skipped: {e}")
        return
    import mltrail

    warnings.filterwarnings("ignore")  # Lightning's hints about workers

    class Regression(lightning.LightningModule):
        def __init__(self, lr: float = 0.05) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch: list, _: int) -> torch.Tensor:
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["MLTRAIL_HOME"] = str(work / "audit")
        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
        data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
        tracker = MltrailLogger(name="regression")
        trainer = lightning.Trainer(
            max_epochs=2, logger=tracker, callbacks=[tracker], accelerator="cpu",
            enable_progress_bar=False, enable_model_summary=False,
            log_every_n_steps=1, default_root_dir=str(work / "out"),
        )  # fmt: skip
        trainer.fit(Regression(), torch.utils.data.DataLoader(data, batch_size=16))
        report = mltrail.verify()
        assert report.ok, report.verdict()
        print(f"run {tracker.version}: {report.verdict()}")


if __name__ == "__main__":
    main()
