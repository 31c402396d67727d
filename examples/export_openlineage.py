"""Record a tiny run and write its OpenLineage RunEvents (START, COMPLETE) to a file.

The same events come from ``mltrail export openlineage --run RUN -o FILE``.

Run: python examples/export_openlineage.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path


def main() -> None:
    """Record a run reading a dataset and writing a model, then export its events."""
    import mltrail
    from mltrail.index import open_index
    from mltrail.integrations.openlineage import compute_events

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, model = root / "train.csv", root / "model.bin"
        data.write_text("x,y\n1,2\n")
        with mltrail.start_run(
            "tiny", data={"train": data}, home=root / "audit"
        ) as run:
            model.write_bytes(b"weights")
            run.log_artifact(model)
        home = mltrail.open_home(root / "audit")
        index = open_index(home)
        try:
            events = compute_events(home, index, [run.id], version=mltrail.__version__)
        finally:
            index.close()
        out = root / "events.jsonl"
        out.write_text("".join(json.dumps(e) + "\n" for e in events))
        lines = out.read_text().splitlines()
        print(f"wrote {len(lines)} events; the last one:")
        print(json.dumps(json.loads(lines[-1]), indent=2))


if __name__ == "__main__":
    main()
