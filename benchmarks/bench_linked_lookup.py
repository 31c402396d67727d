"""`mltrail lineage --up FOLDER` of a Hub-cache-like snapshot: links into `blobs/`.

Records a run writing a folder whose weights (two safetensors shards of SIZE MiB
in all), shard index and config are symbolic links into `blobs/`, then times
`python -m mltrail lineage --up snap --json` (a fresh process each, as users
run it) with this checkout's `src` and, with `--before`, other checkouts' `src`,
repetitions interleaved. Since ADR 0009's amendment "links and shard indexes are
checked before they name a model" such a lookup fingerprints the weights again;
since "a path lookup of unchanged linked weights reads no tensor" only the first
one after a change does (the hash cache is emptied of model ids before the first
repetition, so the first figure of this checkout is that one).

    python benchmarks/bench_linked_lookup.py --size 400 --before ../main/src
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAKE = """
import json, os, pathlib, sys
import numpy as np
from safetensors.numpy import save_file
folder, mib = pathlib.Path(sys.argv[1]), int(sys.argv[2])
folder.mkdir(parents=True)
blobs = pathlib.Path("blobs")
blobs.mkdir()
rng = np.random.default_rng(0)
per = mib * 2**20 // 8 // 4  # float32 values per tensor: 2 shards x 4 tensors
weight_map = {}
for i in range(2):
    name = f"model-0000{i + 1}-of-00002.safetensors"
    tensors = {f"layer{i}.{j}": rng.standard_normal(per, dtype=np.float32) for j in range(4)}
    save_file(tensors, blobs / f"shard{i}")
    os.symlink(os.path.relpath(blobs / f"shard{i}", folder), folder / name)
    weight_map.update(dict.fromkeys(tensors, name))
(blobs / "index").write_text(json.dumps({"weight_map": weight_map}))
os.symlink(os.path.relpath(blobs / "index", folder), folder / "model.safetensors.index.json")
(blobs / "config").write_text('{"model_type": "linear"}')
os.symlink(os.path.relpath(blobs / "config", folder), folder / "config.json")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=400, help="MiB of weights")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--before", nargs="*", default=[], help="other src folders")
    args = parser.parse_args()
    here = str(Path(__file__).resolve().parents[1] / "src")
    sources = [*args.before, here]
    work = Path(tempfile.mkdtemp(prefix="mltrail-bench-linked-"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["MLTRAIL_HOME"] = str(work / "home")
    try:
        (work / "make.py").write_text(MAKE)

        def mltrail(src: str, *argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "mltrail", *argv],
                cwd=work,
                env={**env, "PYTHONPATH": src},
                capture_output=True,
                text=True,
                check=True,
            )

        mltrail(here, "init", "--origin", "bench.mltrail.local/linked")
        mltrail(here, "run", "-q", "--name", "snap", "--output", "snap", "--",
                sys.executable, "make.py", "snap", str(args.size))  # fmt: skip
        time.sleep(2.5)  # older than the hash cache's racy window
        shutil.rmtree(work / "home" / "cache" / "hashes.trees", ignore_errors=True)
        times: dict[str, list[float]] = {src: [] for src in sources}
        roots = set()
        for _ in range(args.reps):
            for src in sources:
                start = time.perf_counter()
                done = mltrail(src, "lineage", "--up", "snap", "--json")
                times[src].append(time.perf_counter() - start)
                roots.add(json.loads(done.stdout)["root"])
        assert len(roots) == 1, roots
        print(f"{args.size} MiB of linked weights, {args.reps} lookups each")
        for src, got in times.items():
            shown = ", ".join(f"{t:.2f}" for t in got)
            print(f"{src}: median {statistics.median(got):.2f} s ({shown})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
