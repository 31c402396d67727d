"""The demo's small, realistic ML project: data, a preparation step, a trainer.

A credit-default dataset is generated deterministically (no download), prepared
into train/validation/test splits by ``prepare.py``, and ``train.py`` fits a
logistic regression in plain Python (fast on any CPU, no NumPy needed). The trainer
uses ``mltrail.start_run()`` only to log metrics: under ``mltrail run`` it joins the
wrapper's run.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["write_project"]

PREPARE = '''\
"""Clean the raw applications and split them 70/15/15 by a hash of the id."""
import csv
import hashlib
import sys
from pathlib import Path

raw, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = list(csv.DictReader(raw.open()))
clean = [r for r in rows if all(r.values())]
print(f"prepare: {len(rows)} raw rows, {len(rows) - len(clean)} dropped (missing values)")
out.mkdir(parents=True, exist_ok=True)
splits = {"train": [], "validation": [], "test": []}
for row in clean:
    bucket = int(hashlib.sha256(row["id"].encode()).hexdigest(), 16) % 100
    name = "train" if bucket < 70 else "validation" if bucket < 85 else "test"
    splits[name].append(row)
for name, part in splits.items():
    with (out / f"{name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(clean[0]))
        writer.writeheader()
        writer.writerows(part)
    print(f"prepare: {name}: {len(part)} rows")
'''

TRAIN = '''\
"""Fit a logistic regression for credit default, in plain Python."""
import argparse
import csv
import json
import math
from pathlib import Path

import yaml

import mltrail

FEATURES = ["income", "debt_ratio", "age", "late_payments"]


def load(path):
    rows = list(csv.DictReader(open(path)))
    return [[float(r[f]) for f in FEATURES] for r in rows], [int(r["default"]) for r in rows]


def _std(column):
    mean = sum(column) / len(column)
    return math.sqrt(sum((v - mean) ** 2 for v in column) / len(column)) or 1.0


def scale(xs, stats=None):
    cols = list(zip(*xs))
    stats = stats or [(sum(c) / len(c), _std(c)) for c in cols]
    return [[(v - m) / s for v, (m, s) in zip(x, stats)] for x in xs], stats


def predict(w, b, x):
    z = b + sum(wi * xi for wi, xi in zip(w, x))
    return 1 / (1 + math.exp(-max(min(z, 30), -30)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    config = yaml.safe_load(open(args.config))
    xs, ys = load(config["data"]["train"])
    xs, stats = scale(xs)
    vx, vy = load(config["data"]["validation"])
    vx, _ = scale(vx, stats)
    w, b = [0.0] * len(FEATURES), 0.0
    with mltrail.start_run() as run:
        for epoch in range(config["train"]["epochs"]):
            gw, gb, loss = [0.0] * len(w), 0.0, 0.0
            for x, y in zip(xs, ys):
                p = predict(w, b, x)
                loss -= math.log(p if y else 1 - p)
                gw = [g + (p - y) * xi for g, xi in zip(gw, x)]
                gb += p - y
            n = len(xs)
            l2 = config["train"]["l2"]
            w = [wi - args.lr * (g / n + l2 * wi) for wi, g in zip(w, gw)]
            b -= args.lr * gb / n
            acc = sum((predict(w, b, x) > 0.5) == y for x, y in zip(vx, vy)) / len(vy)
            run.log_metrics({"train_loss": loss / n, "val_accuracy": acc}, step=epoch)
    Path(config["output"]).write_text(json.dumps({"weights": w, "bias": b, "scale": stats}))
    print(f"train: lr={args.lr} epochs={config['train']['epochs']} val_accuracy={acc:.3f}")


if __name__ == "__main__":
    main()
'''

CONFIG = """\
data:
  train: data/prepared/train.csv
  validation: data/prepared/validation.csv
train:
  epochs: 25
  l2: 0.001
output: model.json
"""


def _applications(count: int, seed: int = 42) -> str:
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    lines = ["id,income,debt_ratio,age,late_payments,default"]
    for i in range(count):
        income = round(rng.lognormvariate(10.6, 0.5))
        debt = round(rng.betavariate(2, 5), 3)
        age = rng.randint(19, 75)
        late = min(int(rng.expovariate(0.8)), 9)
        risk = -2.0 + 9 * debt + 1.1 * late - income / 25_000 - (age - 40) / 30
        default = int(rng.random() < 1 / (1 + pow(2.718281828, -risk)))
        missing = rng.random() < 0.01
        lines.append(
            f"A{i:05},{'' if missing else income},{debt},{age},{late},{default}"
        )
    return "\n".join(lines) + "\n"


def write_project(root: Path, rows: int = 3000) -> None:
    """Write the demo project's scripts, config and raw data under ``root``."""
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "applications.csv").write_text(_applications(rows))
    (root / "prepare.py").write_text(PREPARE)
    (root / "train.py").write_text(TRAIN)
    (root / "config.yaml").write_text(CONFIG)
    (root / ".gitignore").write_text("data/\nmodel.json\n")
