"""``mltrail push``: entries per second uploaded from an embedded home to a server.

Makes an embedded home in a temporary folder, appends N notes to it (about
300 canonical bytes each, 100 per append, as a busy offline job would), starts
``mltrail server`` on a throwaway PostgreSQL database (tests/server_fixture.py:
$MLTRAIL_TEST_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test),
then times what ``mltrail push`` does: the local verification, and the push
itself (key registration, the batches of 500 with their ``ledger.pushed``
headers, every answer checked: consistency and inclusion proofs). Prints
entries/s of both, the batches, the server's size, and the machine.

Run: ``python benchmarks/bench_push.py [--entries 20000] [--batch-size 500]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

from mltrail.capture.machine.identity import os_account
from mltrail.ledger.client_mode import open_remote_ledger
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft
from mltrail.ledger.push import push_ledger

TESTS = Path(__file__).resolve().parents[1] / "tests"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    from server_fixture import running_server

    with tempfile.TemporaryDirectory() as tmp, running_server() as server:
        url = f"http://127.0.0.1:{server.port}/ledgers/team-a"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")} | {
            "MLTRAIL_TOKEN": server.token("writer", os_account(os.getuid()))
        }
        path = Path(tmp) / "laptop"
        init_home(path, env=env)
        home = open_home(path, env=env)
        text = "epoch finished; loss 0.1234, accuracy 0.9876 " * 4
        for start in range(0, args.entries, 100):
            drafts = [
                Draft("note", {"text": f"{n} {text}"})
                for n in range(start, min(args.entries, start + 100))
            ]
            home.ledger.append_many(drafts)
        began = time.perf_counter()
        assert home.verify().ok
        verified = time.perf_counter() - began
        remote = open_remote_ledger(path, url, env, home.ledger.signer)
        began = time.perf_counter()
        result = push_ledger(home, remote, batch_size=args.batch_size)
        pushed = time.perf_counter() - began
        remote.ledger.close()
        home.close()
    print(describe())
    print(
        f"local verify: {args.entries + 1} records in {verified:.2f} s "
        f"({(args.entries + 1) / verified:,.0f} records/s)"
    )
    print(
        f"push: {result.pushed} entries in {result.batches} batches of "
        f"{args.batch_size} in {pushed:.2f} s ({result.pushed / pushed:,.0f} "
        f"entries/s); server ledger size {result.server_size}"
    )


if __name__ == "__main__":
    main()
