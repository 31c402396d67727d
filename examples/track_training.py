"""Record a training loop with the Python API: params, data, metrics, artifact.

Run: python examples/track_training.py

Uses a temporary ledger home; in real use leave out ``home=`` (the default is
``$MLTRAIL_HOME``, else ``~/.mltrail``) or run the script under ``mltrail run``,
where ``start_run`` joins the wrapper's run.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import mltrail


def main() -> None:
    """Train a toy model on a temporary dataset and record it."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "train.csv"
        data.write_text("x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(100)))
        params = {"lr": 4e-4, "epochs": 50, "model": {"kind": "linear"}}
        with mltrail.start_run(
            "toy-linear",
            params=params,
            data={"train": data},
            home=work / "audit",
        ) as run:
            w, b = 0.0, 0.0
            rows = [
                tuple(map(float, line.split(",")))
                for line in data.read_text().split()[1:]
            ]
            for epoch in range(params["epochs"]):
                gw = sum((w * x + b - y) * x for x, y in rows) / len(rows)
                gb = sum(w * x + b - y for x, y in rows) / len(rows)
                w, b = w - params["lr"] * gw, b - params["lr"] * gb
                loss = sum((w * x + b - y) ** 2 for x, y in rows) / len(rows)
                run.log_metrics({"loss": loss, "w": w}, step=epoch)
            model = work / "model.json"
            model.write_text(json.dumps({"w": w, "b": b}))
            run.log_artifact(model)
        report = mltrail.verify(work / "audit")
        assert report.ok, report.verdict()
        assert math.isfinite(loss)
        print(f"run {run.id}: loss {loss:.3f}, w {w:.3f}; {report.verdict()}")


if __name__ == "__main__":
    main()
