"""Adapters to the frameworks and tools around mltrail, over its public API.

Each adapter is an optional extra, imported only when used, and names the pip
extra to install when its package is missing:

- ``mltrail.integrations.huggingface.MltrailCallback``: a ``transformers``
  ``TrainerCallback`` (extra ``huggingface``).
- ``mltrail.integrations.lightning.MltrailLogger``: a Lightning logger and callback
  (extra ``lightning``).
- ``mltrail.torch.log_optimizer``: an optimizer's param groups and a scheduler's
  settings (extra ``finetune``, which brings torch).
- ``intoto`` (in-toto Statements with SLSA provenance, in DSSE envelopes),
  ``openlineage`` (OpenLineage RunEvents), ``mlflow`` (import from and mirror to
  MLflow tracking).

The framework adapters record through ``mltrail.start_run`` and ``Run`` only, so
they join a run ``mltrail run`` wraps or one the script opened, and open their
own otherwise.
"""

from __future__ import annotations

__all__: list[str] = []
