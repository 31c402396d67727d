"""Run ``mltrail.capture.run.process.run_command`` as a wrapper would, for tests.

Usage: ``process_driver.py RESULT.json [options] -- COMMAND...``

The driver's own fds 0/1/2 are what the wrapped command inherits or is pumped
to, so a test can inspect them. The ``ProcessResult`` is written as JSON to
RESULT.json (stored bytes as hex), together with the driver's peak RSS.

Options:
    --log-limit N       passed to run_command
    --drain S           drain_timeout_s passed to run_command
    --exit-like         end with exit_like(result) instead of exit 0
    --ctty              become the session leader's controlling terminal owner:
                        take fd 0 (a pty slave) as controlling terminal
    --ignore SIG        set SIG (e.g. SIGHUP) to SIG_IGN before running
"""

from __future__ import annotations

import argparse
import fcntl
import json
import resource
import signal
import sys
import termios

from mltrail.capture.run.process import exit_like, run_command


def _load_secret_detector() -> None:
    from mltrail.capture.run import detect

    detect._plugins()


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB.

    On Linux ``ru_maxrss`` survives exec (it starts at the test runner's peak),
    so read the address space's own high-water mark from /proc instead.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("result")
    parser.add_argument("--log-limit", type=int, default=8 * 2**20)
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--exit-like", action="store_true")
    parser.add_argument("--ctty", action="store_true")
    parser.add_argument("--ignore", action="append", default=[])
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    # As an interactive shell would leave them, whatever the test runner inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
        signal.signal(signal.Signals[name], signal.SIG_DFL)
    for name in args.ignore:
        signal.signal(signal.Signals[name], signal.SIG_IGN)
    if args.ctty:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    _load_secret_detector()  # its modules are no output held in memory
    rss_before = peak_rss_kib()
    result = run_command(
        args.command, log_limit=args.log_limit, drain_timeout_s=args.drain
    )
    rss_after = peak_rss_kib()
    streams = {}
    for name in ("stdout", "stderr"):
        capture = getattr(result, name)
        streams[name] = {
            "sha256": capture.sha256,
            "size": capture.size,
            "head": capture.head.hex(),
            "tail": capture.tail.hex(),
            "omitted": capture.omitted,
        }
    summary = {
        "returncode": result.returncode,
        "signal": result.signal,
        "exit_status": result.exit_status,
        "signals_received": list(result.signals_received),
        "interrupted": result.interrupted,
        "tty": result.tty,
        "pid": result.pid,
        "rss_growth_kib": rss_after - rss_before,
        **streams,
    }
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(summary, f)
    if args.exit_like:
        return exit_like(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
