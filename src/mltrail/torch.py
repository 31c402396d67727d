"""Plain PyTorch: ``mltrail.torch.log_optimizer(optimizer, scheduler, run=None)``.

Example::

    import mltrail, mltrail.torch

    with mltrail.start_run("sgd") as run:
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
        mltrail.torch.log_optimizer(opt, sched)

See ``mltrail.integrations.pytorch`` for what is recorded. torch is never imported
here: the optimizer was made by it already (``pip install 'mltrail[finetune]'``).
"""

from __future__ import annotations

from mltrail.integrations.pytorch import (
    log_optimizer,
    optimizer_params,
    scheduler_params,
)

__all__ = ["log_optimizer", "optimizer_params", "scheduler_params"]
