"""MLflow import speed (runs/s) beside MLflow's own search_runs on the same store.

    python benchmarks/bench_mlflow_import.py [RUNS]   # default 200

Makes a SQLite MLflow store of RUNS runs (5 params, 2 metrics x 10 steps, a git
commit tag each) in a temporary folder, then times, in this process:
MLflow's search_runs over all of them (pages of 1000), MLflow's search_runs plus
get_metric_history for every metric (what an import must read), and
`import_mlflow` into a fresh ledger (reads the same, hashes, signs, appends).
Needs pip install -e '.[mlflow]'.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=DeprecationWarning)


def main() -> None:
    import mlflow

    from mltrail.index import open_index
    from mltrail.integrations.mlflow import import_mlflow
    from mltrail.ledger.home import init_home, open_home

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        exp = client.create_experiment(
            "bench", artifact_location=str(Path(tmp) / "art")
        )
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
        t = time.perf_counter()
        found = client.search_runs([exp], max_results=1000)
        search = time.perf_counter() - t
        t = time.perf_counter()
        for run in client.search_runs([exp], max_results=1000):
            for key in run.data.metrics:
                client.get_metric_history(run.info.run_id, key)
        read_all = time.perf_counter() - t
        init_home(Path(tmp) / "home", origin="bench.mltrail.local/mlflow")
        home = open_home(Path(tmp) / "home")
        index = open_index(home)
        t = time.perf_counter()
        result = import_mlflow(home, index, uri)
        imported = time.perf_counter() - t
        index.close()
        home.close()
        assert len(found) == runs == len(result.imported)
        print(f"{runs} runs")
        print(f"  mlflow search_runs:                     {runs / search:9.0f} runs/s")
        print(
            f"  mlflow search_runs + metric histories:  {runs / read_all:9.0f} runs/s"
        )
        print(
            f"  mltrail import mlflow:                  {runs / imported:9.0f} runs/s"
        )


if __name__ == "__main__":
    main()
