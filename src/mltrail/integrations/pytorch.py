"""Plain PyTorch: record an optimizer's param groups and a scheduler's settings.

``log_optimizer(opt, scheduler)`` records one ``run.params`` entry::

    optimizer.class                     torch.optim.adamw.AdamW
    optimizer.param_groups.0.lr         0.001
    optimizer.param_groups.0.betas      [0.9, 0.999]
    optimizer.param_groups.0.params     2        (how many tensors, not their values)
    optimizer.param_groups.0.numel      4160     (how many numbers they hold)
    scheduler.class                     torch.optim.lr_scheduler.StepLR
    scheduler.step_size                 10
    scheduler.gamma                     0.5

Every key of every param group but ``params`` is recorded as PyTorch holds it (a
tensor of one value as its number). A scheduler's settings are its
``state_dict()`` without private keys (``_last_lr``, ``_step_count``) and without
functions (a ``LambdaLR``'s lambdas, recorded by name).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mltrail.errors import InputError
from mltrail.integrations._common import number_items

if TYPE_CHECKING:
    from mltrail.record.runs import Run

__all__ = ["log_optimizer", "optimizer_params", "scheduler_params"]


def optimizer_params(optimizer: Any) -> dict[str, Any]:
    """The class and every param group's hyperparameters of ``optimizer``."""
    groups = []
    for group in optimizer.param_groups:
        settings = {k: _plain(v) for k, v in group.items() if k != "params"}
        tensors = list(group["params"])
        settings["params"] = len(tensors)
        settings["numel"] = sum(int(t.numel()) for t in tensors)
        groups.append(settings)
    return {"class": _class_name(optimizer), "param_groups": groups}


def scheduler_params(scheduler: Any) -> dict[str, Any]:
    """The class and settings (public ``state_dict`` keys) of ``scheduler``."""
    state = scheduler.state_dict()
    settings = {k: _plain(v) for k, v in state.items() if not k.startswith("_")}
    return {"class": _class_name(scheduler), **settings}


def log_optimizer(
    optimizer: Any, scheduler: Any = None, run: Run | None = None
) -> dict[str, Any]:
    """Record ``optimizer`` (and ``scheduler``) as ``run.params``; return them.

    ``run`` defaults to the run of this process (``mltrail.start_run``) or of
    ``mltrail run``.

    Raises:
        InputError: no ``run`` given and none is active.
    """
    params: dict[str, Any] = {"optimizer": optimizer_params(optimizer)}
    if scheduler is not None:
        params["scheduler"] = scheduler_params(scheduler)
    if run is not None:
        run.log_params(params)
        return params
    from mltrail.record.recorder import RUN_ID_ENV, active_run
    from mltrail.record.runs import start_run

    if active_run() is None and not os.environ.get(RUN_ID_ENV):
        raise InputError(
            "no run to record the optimizer into",
            hint="pass run=, or call it inside `with mltrail.start_run():` "
            "or under `mltrail run`",
        )
    joined = start_run()  # a handle on the active or wrapped run
    joined.log_params(params)
    joined.end()  # a joined handle's end only flushes
    return params


def _plain(value: Any) -> Any:
    """A setting as JSON can hold it: tensors as numbers, functions by name."""
    if hasattr(value, "numel"):
        found = number_items({"v": value})
        return found.get("v", repr(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if callable(value):
        return getattr(value, "__qualname__", repr(value))
    return value


def _class_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"
