"""Record a plain PyTorch loop's optimizer and scheduler with ``mltrail.torch``.

Run: python examples/torch_optimizer.py  (needs torch: ``pip install 'mltrail[finetune]'``)
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def main() -> None:
    """Train a linear model a few steps and record its optimizer."""
    try:
        import torch
    except ImportError as e:
        print(f"skipped: {e} (pip install 'mltrail[finetune]')")
        return
    import mltrail
    import mltrail.torch

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "audit"
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
        with mltrail.start_run("plain-torch", home=home) as run:
            recorded = mltrail.torch.log_optimizer(opt, sched)
            for step in range(10):
                loss = model(torch.randn(8, 4)).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                run.log_metrics({"loss": loss.item()}, step=step)
        report = mltrail.verify(home)
        assert report.ok, report.verdict()
        group = recorded["optimizer"]["param_groups"][0]
        print(f"run {run.id}: AdamW lr {group['lr']}; {report.verdict()}")


if __name__ == "__main__":
    main()
