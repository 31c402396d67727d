"""Adapters to the tools around mltrail, over its public API and read side.

Each module speaks one outside format or tool: ``intoto`` (in-toto Statements
with SLSA provenance, in DSSE envelopes), ``openlineage`` (OpenLineage
RunEvents), ``mlflow`` (import from and mirror to MLflow tracking),
``dvc_pipeline`` (DVC pipeline stages as steps). A module that needs an
optional package imports it inside the function that uses it and names the
pip extra to install when it is missing.
"""
