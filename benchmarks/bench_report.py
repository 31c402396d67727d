"""Time `mltrail report` (md, html, pdf) on the loan case study's model.

Builds the case study of tests/e2e/test_case_loan.py in a temporary folder (four
weekly fine-tunes on 3 x 200-row CSV files, each promoted to production), then
times `mltrail report model/weights.bin` in each format, end to end (the CLI's
start, the full verify the report includes, gathering, rendering, writing).

    python benchmarks/bench_report.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FINETUNE = """
import argparse, hashlib, pathlib
p = argparse.ArgumentParser()
p.add_argument("--data"); p.add_argument("--lr", type=float); p.add_argument("--config")
a = p.parse_args()
digest = hashlib.sha256(str(a.lr).encode())
for f in sorted(pathlib.Path(a.data).glob("*.csv")):
    digest.update(f.read_bytes())
out = pathlib.Path("model"); out.mkdir(exist_ok=True)
(out / "weights.bin").write_bytes(digest.digest() * 64)
"""


def cli(home: Path, cwd: Path, *args: str) -> float:
    env = {**os.environ, "MLTRAIL_HOME": str(home), "GIT_CEILING_DIRECTORIES": str(cwd)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mltrail", *args], cwd=cwd, env=env,
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - start


def build(base: Path) -> tuple[Path, Path]:
    project, home = base / "loan-model", base / "ledger"
    project.mkdir()
    (project / "finetune.py").write_text(FINETUNE)
    (project / "finetune.yaml").write_text("epochs: 3\nbatch_size: 64\n")
    cli(home, project, "init", "--origin", "bank.example/loan-team")
    for week, lr in {10: 0.01, 11: 0.01, 12: 0.02, 13: 0.02}.items():
        data = project / "data" / f"week-{week}"
        data.mkdir(parents=True)
        for part in range(3):
            rows = [f"{week}{part}{i},{(i * week) % 7},{i % 2}" for i in range(200)]
            text = "id,x,label\n" + "\n".join(rows) + "\n"
            (data / f"customers-{part}.csv").write_text(text)
        cli(home, project, "run", "-q", "--name", "loan-finetune", "--data",
            f"train={data}", "--label", "label", "--config", "finetune.yaml",
            "--output", "model", "--", sys.executable, "finetune.py", "--data",
            str(data), "--lr", str(lr), "--config", "finetune.yaml")  # fmt: skip
        cli(home, project, "model", "promote", "model/weights.bin", "--stage",
            "production", "--note", f"weekly release {week}")  # fmt: skip
    return project, home


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project, home = build(Path(tmp))
        baseline = [cli(home, project, "verify", "-q") for _ in range(args.repeat)]
        print(
            f"verify (included in every report): median {statistics.median(baseline):.3f}s"
        )
        for fmt in ("md", "html", "pdf"):
            out = Path(tmp) / f"report.{fmt}"
            times = [cli(home, project, "report", "model/weights.bin", "-o", str(out))
                     for _ in range(args.repeat)]  # fmt: skip
            print(f"report --format {fmt}: median {statistics.median(times):.3f}s "
                  f"(min {min(times):.3f}s, {out.stat().st_size:,} bytes)")  # fmt: skip


if __name__ == "__main__":
    main()
