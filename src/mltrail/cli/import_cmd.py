"""``mltrail import``: runs recorded by other trackers, into the ledger (ADR 0024)."""

from __future__ import annotations

from pathlib import Path

import click

from mltrail.cli.output import (
    console,
    emit_json,
    err_console,
    json_option,
    open_from,
    open_index,
)
from mltrail.shown import terminal_text

__all__ = ["import_group"]


@click.group(name="import")
def import_group() -> None:
    """Import runs recorded by another tracker (MLflow), marked as imported.

    \b
    Examples:
      mltrail import mlflow --tracking-uri sqlite:///mlflow.db
      mltrail import mlflow --tracking-uri http://mlflow:5000 --experiment churn
    """


@import_group.command()
@click.option("--tracking-uri", required=True, metavar="URI",
              help="The MLflow tracking URI (sqlite:///mlflow.db, http://HOST:5000, "
              "a folder of mlruns).")  # fmt: skip
@click.option("--experiment", "experiments", multiple=True, metavar="E",
              help="Only this experiment (name or id). Repeatable; default: all.")  # fmt: skip
@click.option("--artifact-root", "artifact_roots", multiple=True, metavar="DIR",
              type=click.Path(path_type=Path, file_okay=False),
              help="Also hash artifact folders inside DIR (default: only a run's "
              "own RUN_ID/artifacts inside the folder of a local store). "
              "Repeatable.")  # fmt: skip
@json_option
@click.pass_context
def mlflow(
    ctx: click.Context,
    tracking_uri: str,
    experiments: tuple[str, ...],
    artifact_roots: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Import MLflow runs: params, metric histories, tags, git commit, artifacts.

    \b
    Each MLflow run becomes one mltrail run, written atomically and marked
    `imported` in its run.started (MLflow run id, experiment, user, start and
    end times, status, tags). Artifacts on this machine are hashed
    (run.artifact) when they are a run's own RUN_ID/artifacts inside the
    store's folder (a sqlite file's, a file store's), or lie inside an
    --artifact-root: the store says where they are, and
    a store someone else wrote could name any folder of this machine.
    Importing again adds nothing: runs already imported are skipped, and one
    whose name, user, times, status, experiment or tags changed in MLflow
    since is named in a warning (--json: changed), and so is one imported
    before its command was read as a command line, whose secrets the ledger
    keeps in clear (--json: command_in_clear). A run MLflow does not say ended
    (FINISHED, FAILED, KILLED) is not imported until it has. Needs
    pip install 'mltrail[mlflow]'.

    \b
    Examples:
      mltrail import mlflow --tracking-uri sqlite:///mlflow.db
      mltrail import mlflow --tracking-uri sqlite:///mlflow.db --experiment churn --json
    """
    from mltrail.integrations.mlflow import import_mlflow, imported_run_id

    home = open_from(ctx, writable=True)
    index = open_index(home)
    try:
        result = import_mlflow(
            home, index, tracking_uri, experiments=experiments,
            artifact_roots=artifact_roots,
        )  # fmt: skip
    finally:
        index.close()
    if as_json:
        emit_json(
            {
                "imported": [
                    {"mlflow_run_id": r, "run": imported_run_id(r)}
                    for r in result.imported
                ],
                "skipped": result.skipped,
                "unfinished": result.unfinished,
                "changed": result.changed,
                "command_in_clear": result.command_in_clear,
                "artifacts_elsewhere": [
                    {"mlflow_run_id": r, "path": path}
                    for r, path in result.artifacts_elsewhere
                ],
            }
        )
        return
    waiting = (
        f", {len(result.unfinished)} not ended in MLflow, not imported "
        "(import again once they end; one that died stays RUNNING until "
        "it is marked KILLED in MLflow)"
        if result.unfinished
        else ""
    )
    console.print(
        f"imported {len(result.imported)} MLflow run(s), "
        f"{len(result.skipped)} already imported{waiting}",
        markup=False,
    )
    if result.changed:
        err_console.print(
            f"warning: {len(result.changed)} of the runs already imported changed "
            f"in MLflow since (first {terminal_text(result.changed[0])}: its name, "
            "user, times, status, experiment or tags): not imported again, the "
            "ledger keeps what was imported first",
            style="yellow",
            markup=False,
        )
    if result.command_in_clear:
        err_console.print(
            f"warning: {len(result.command_in_clear)} of the runs already imported "
            f"keep secrets of their command in clear (first "
            f"{terminal_text(result.command_in_clear[0])}): they were imported "
            "before mlflow.source.name was read as a command line; the ledger "
            "cannot drop them, rotate those credentials",
            style="yellow",
            markup=False,
        )
    if result.artifacts_elsewhere:
        _, first = result.artifacts_elsewhere[0]
        err_console.print(
            f"warning: {len(result.artifacts_elsewhere)} run(s) imported without "
            f"their artifacts: their folder (first {terminal_text(first)}) is "
            "not a run's own folder inside the store's folder; give "
            "--artifact-root DIR to hash them",
            style="yellow",
            markup=False,
        )
