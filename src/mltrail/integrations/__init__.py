"""Adapters for training frameworks, built on the public run API.

Each adapter is an optional extra, imported only when used:

- ``mltrail.integrations.huggingface.MltrailCallback``: a ``transformers``
  ``TrainerCallback`` (extra ``huggingface``).
- ``mltrail.integrations.lightning.MltrailLogger``: a Lightning logger and callback
  (extra ``lightning``).
- ``mltrail.torch.log_optimizer``: an optimizer's param groups and a scheduler's
  settings (extra ``finetune``, which brings torch).

They record through ``mltrail.start_run`` and ``Run`` only, so they join a run
``mltrail run`` wraps or one the script opened, and open their own otherwise.
"""

from __future__ import annotations

__all__: list[str] = []
