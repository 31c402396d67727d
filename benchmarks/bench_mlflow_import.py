"""MLflow import speed (runs/s) beside MLflow's own search_runs on the same store.

    python benchmarks/bench_mlflow_import.py [--runs N] [--reps N] [--profile]

Makes a SQLite MLflow store of N runs (5 params, 2 metrics x 10 steps, a git
commit tag each) in a temporary folder, then times, in this process and on
that store, repetitions interleaved:

- ``mlflow.search_runs`` (the fluent API, ``output_format="list"``: no pandas
  needed) over all of them;
- ``MlflowClient.search_runs`` reading every run with all its params and the
  full history of every metric (``get_metric_history`` per metric): what an
  import must read;
- ``import_mlflow`` into a fresh ledger (reads the same, hashes, signs, appends
  durably; the ledger is made before the clock starts).

Prints runs/s of each (medians of the repetitions) and the import's ratio to
each read. Target: the import at >= 0.3x ``mlflow.search_runs``. ``--profile``
prints a cProfile of one more import. Needs pip install -e '.[mlflow]'.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=DeprecationWarning)
sys.path.insert(0, str(Path(__file__).parent))

from machine import describe  # noqa: E402


def make_store(tmp: Path, runs: int) -> tuple[str, str]:
    """A SQLite MLflow store of ``runs`` runs; its URI and experiment id."""
    import mlflow

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bench", artifact_location=str(tmp / "art"))
    for n in range(runs):
        run = client.create_run(exp, tags={"mlflow.source.git.commit": "a" * 40})
        rid = run.info.run_id
        client.log_batch(
            rid,
            params=[mlflow.entities.Param(f"p{i}", str(n + i)) for i in range(5)],
            metrics=[
                mlflow.entities.Metric(k, step * 0.1, 0, step)
                for k in ("loss", "acc")
                for step in range(10)
            ],
        )
        client.set_terminated(rid, "FINISHED")
    return uri, exp


def fluent_search(uri: str, exp: str) -> int:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return len(mlflow.search_runs([exp], max_results=100_000, output_format="list"))


def client_read_all(uri: str, exp: str) -> int:
    """Every run, its params and every metric's full history."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    found, token = 0, None
    while True:
        page = client.search_runs([exp], max_results=1000, page_token=token)
        for run in page:
            dict(run.data.params)
            for key in run.data.metrics:
                client.get_metric_history(run.info.run_id, key)
            found += 1
        token = page.token
        if not token:
            return found


def import_once(tmp: Path, uri: str, rep: int) -> tuple[tuple[float, float], int]:
    """``timed`` of ``import_mlflow`` into a fresh ledger, made before the clock
    starts (creating a ledger is not part of an import)."""
    from mltrail.index import open_index
    from mltrail.integrations.mlflow import import_mlflow
    from mltrail.ledger.home import init_home, open_home

    where = tmp / f"home{rep}"
    init_home(where, origin="bench.mltrail.local/mlflow")
    home = open_home(where)
    index = open_index(home)
    try:
        return timed(lambda: len(import_mlflow(home, index, uri).imported))
    finally:
        index.close()
        home.close()


def timed(work, *args) -> tuple[tuple[float, float], int]:
    """(wall, CPU) seconds of ``work(*args)``, and what it returned."""
    start, cpu = time.perf_counter(), time.process_time()
    found = work(*args)
    return (time.perf_counter() - start, time.process_time() - cpu), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    opts = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        uri, exp = make_store(tmp, opts.runs)
        fluent_search(uri, exp)  # warm-up: imports, the store's engine
        client_read_all(uri, exp)
        search, read, imported = [], [], []
        for rep in range(opts.reps):
            for times, (seconds, found) in (
                (search, timed(fluent_search, uri, exp)),
                (read, timed(client_read_all, uri, exp)),
                (imported, import_once(tmp, uri, rep)),
            ):
                assert found == opts.runs, found
                times.append(seconds)
        names = (
            "mlflow.search_runs",
            "MlflowClient.search_runs + params + metric histories",
            "mltrail import mlflow",
        )
        print(f"{opts.runs} runs, medians of {opts.reps} interleaved repetitions "
              "(runs/s by wall clock; by the process's CPU time):")  # fmt: skip
        rates = []
        for name, times in zip(names, (search, read, imported), strict=True):
            wall = opts.runs / statistics.median(t[0] for t in times)
            cpu = opts.runs / statistics.median(t[1] for t in times)
            rates.append((wall, cpu))
            print(f"  {name:54s} {wall:7.0f} runs/s  (CPU: {cpu:7.0f})")
        (fluent, _), (full, _), (own, _) = rates
        verdict = "PASS" if own >= 0.3 * fluent else "FAIL"
        print(f"  import / mlflow.search_runs: {own / fluent:.3f}x "
              f"(CPU: {rates[2][1] / rates[0][1]:.3f}x) [{verdict}, target >= 0.3x]")  # fmt: skip
        print(f"  import / reading every run in full: {own / full:.3f}x "
              f"(CPU: {rates[2][1] / rates[1][1]:.3f}x)")  # fmt: skip
        if opts.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.runcall(import_once, tmp, uri, opts.reps)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
