"""``mltrail.capture.run.process``: the wrapped command runs as it would without us.

Real subprocesses throughout. Where the wrapper's own fds 0/1/2 matter (pass-through,
signals, terminals) the runner runs inside ``helpers/process_driver.py``, a small
wrapper process whose fds the test owns; it writes the ``ProcessResult`` as JSON.
Every wait has a timeout so a regression fails instead of hanging CI.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mltrail.capture.run.process import (
    ProcessResult,
    exit_like,
    resolve_command,
    run_command,
)
from mltrail.errors import CommandNotFoundError

HELPERS = Path(__file__).parent / "helpers"
DRIVER = HELPERS / "process_driver.py"
CHILD = HELPERS / "signal_child.py"
PY = sys.executable
TIMEOUT = 30


# -- helpers -----------------------------------------------------------------------


def driver_argv(result: Path, command: list[str], *options: str) -> list[str]:
    return [PY, str(DRIVER), str(result), *options, "--", *command]


def run_driver(
    tmp_path: Path, command: list[str], *options: str, **kwargs: Any
) -> tuple[subprocess.CompletedProcess[bytes], dict[str, Any]]:
    result = tmp_path / "result.json"
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    done = subprocess.run(
        driver_argv(result, command, *options),
        timeout=TIMEOUT,
        start_new_session=True,
        **kwargs,
    )
    return done, json.loads(result.read_text())


@contextmanager
def started_driver(
    tmp_path: Path, command: list[str], *options: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A driver with no terminal (new session), stdout piped to the test."""
    result = tmp_path / "result.json"
    proc = subprocess.Popen(
        driver_argv(result, command, *options),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()


def read_until(fd: int, marker: bytes, timeout: float = TIMEOUT) -> bytes:
    """Read from ``fd`` until ``marker`` shows up (or fail after ``timeout``)."""
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while marker not in data:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} after {timeout} s; got {data!r}"
            if sel.select(remaining):
                chunk = os.read(fd, 65536)
                assert chunk, f"EOF before {marker!r}; got {data!r}"
                data += chunk
    return data


def finish(proc: subprocess.Popen[bytes], seen: bytes) -> tuple[int, bytes]:
    assert proc.stdout is not None
    rest, _ = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, seen + rest


def load(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "result.json").read_text())


def stored(stream: dict[str, Any]) -> bytes:
    return bytes.fromhex(stream["head"]) + bytes.fromhex(stream["tail"])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pycmd(code: str) -> list[str]:
    return [PY, "-c", code]


def run_in_pty(
    tmp_path: Path,
    command: list[str],
    *,
    size: tuple[int, int] = (24, 80),
    on_ready: Callable[[int], None] | None = None,
) -> tuple[int, bytes]:
    """Run the driver with a fresh pty as its stdin/stdout/stderr and controlling tty.

    Output post-processing is off on the outer pty too, so the bytes read from
    its master are exactly the bytes the driver wrote. ``on_ready(master)`` runs
    once, when the output first contains ``ready``.
    """
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    proc = subprocess.Popen(
        driver_argv(tmp_path / "result.json", command, "--ctty"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    try:
        out = drain_pty(master, on_ready)
        return proc.wait(timeout=TIMEOUT), out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=TIMEOUT)
        os.close(master)


def drain_pty(master: int, on_ready: Callable[[int], None] | None) -> bytes:
    # Read while the driver runs (a full pty would block it), until EIO at the end.
    data = b""
    deadline = time.monotonic() + TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(master, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(1.0):
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every slave closed
                return data
            if not chunk:
                return data
            data += chunk
            if on_ready is not None and b"ready" in data:
                on_ready(master)
                on_ready = None
    raise AssertionError(f"pty still open after {TIMEOUT} s: {data!r}")


# -- exit status ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3])
def test_exit_code_is_returned_and_handlers_restored(code: int) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    result = run_command(["sh", "-c", f"exit {code}"])
    assert (result.returncode, result.signal, result.exit_status) == (code, None, code)
    assert result.signals_received == ()
    assert not result.interrupted
    assert result.pid > 0
    assert result.duration_s >= 0
    assert exit_like(result) == code
    assert {s: signal.getsignal(s) for s in before} == before


def test_child_killed_by_sigkill() -> None:
    result = run_command(["sh", "-c", "kill -KILL $$"])
    assert result.returncode == -signal.SIGKILL
    assert result.signal == "SIGKILL"
    assert result.exit_status == 137
    assert result.interrupted


def test_cwd_and_env_are_given_to_the_child(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "MLTRAIL_PROBE": "x y"}
    result = run_command(
        ["sh", "-c", 'pwd; echo "$MLTRAIL_PROBE"'], cwd=tmp_path, env=env
    )
    assert result.stdout.stored == f"{tmp_path.resolve()}\nx y\n".encode()


@pytest.mark.parametrize("exit_code", [-signal.SIGTERM, 3])
def test_exit_like_ends_the_wrapper_as_the_child_ended(
    tmp_path: Path, exit_code: int
) -> None:
    script = "kill -TERM $$" if exit_code < 0 else f"exit {exit_code}"
    done, result = run_driver(tmp_path, ["sh", "-c", script], "--exit-like")
    assert result["returncode"] == exit_code
    assert done.returncode == exit_code


# -- output ----------------------------------------------------------------------------


def test_output_passes_through_live_and_is_hashed(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "for i in range(1000): print('line', i)\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    done, result = run_driver(tmp_path, pycmd(code))
    expected = "".join(f"line {i}\n" for i in range(1000)).encode()
    assert done.stdout == expected
    assert done.stderr == b"to stderr\n"
    for stream, data in (("stdout", expected), ("stderr", b"to stderr\n")):
        assert result[stream]["sha256"] == sha(data)
        assert result[stream]["size"] == len(data)
        assert result[stream]["omitted"] == 0
        assert stored(result[stream]) == data
    assert result["tty"] is False


def test_binary_output_is_byte_exact(tmp_path: Path) -> None:
    data = bytes(range(256)) * 3 + b"\xff\xfe\r\n\x00\x80 not utf-8 \xc3\x28"
    code = f"import sys; sys.stdout.buffer.write({data!r})"
    done, result = run_driver(tmp_path, pycmd(code))
    assert done.stdout == data
    assert stored(result["stdout"]) == data
    assert result["stdout"]["sha256"] == sha(data)


@pytest.mark.parametrize("size", [0, 4, 10, 11, 25])
def test_head_and_tail_are_capped(size: int) -> None:
    data = bytes(range(65, 65 + size))
    result = run_command(
        pycmd(f"import sys; sys.stdout.buffer.write({data!r})"), log_limit=10
    )
    out = result.stdout
    assert (out.size, out.sha256) == (size, sha(data))
    assert out.head == data[:5]
    assert out.tail == data[5:][-5:]  # after the head, never overlapping it
    assert out.omitted == max(0, size - 10)
    assert out.truncated == (size > 10)
    assert (out.stored == data) == (size <= 10)


def test_large_output_is_hashed_whole_in_bounded_memory(tmp_path: Path) -> None:
    blocks = 48  # 48 MiB, each MiB distinct so head and tail positions matter
    code = (
        "import sys\n"
        f"for i in range({blocks}): sys.stdout.buffer.write(i.to_bytes(4, 'big') * 262144)\n"
    )
    data = b"".join(i.to_bytes(4, "big") * 262144 for i in range(blocks))
    limit = 1_000_001
    with (tmp_path / "out.bin").open("wb") as out:
        _, result = run_driver(
            tmp_path, pycmd(code), "--log-limit", str(limit), stdout=out
        )
    stream = result["stdout"]
    assert stream["size"] == len(data)
    assert stream["sha256"] == sha(data)
    assert (tmp_path / "out.bin").read_bytes() == data
    half = limit // 2
    assert bytes.fromhex(stream["head"]) == data[:half]
    assert bytes.fromhex(stream["tail"]) == data[-half:]
    assert stream["omitted"] == len(data) - 2 * half
    assert result["rss_growth_kib"] < 16 * 1024, "output was held in memory"


def test_output_is_still_hashed_when_the_wrappers_stdout_is_closed(
    tmp_path: Path,
) -> None:
    data = b"x" * 1_000_000
    code = f"import sys; sys.stdout.buffer.write(b'x' * {len(data)})"
    with started_driver(tmp_path, pycmd(code)) as proc:
        assert proc.stdout is not None
        proc.stdout.close()  # the reader went away: EPIPE for the driver
        assert proc.wait(timeout=TIMEOUT) == 0
    result = load(tmp_path)
    assert result["returncode"] == 0
    assert (result["stdout"]["size"], result["stdout"]["sha256"]) == (
        len(data),
        sha(data),
    )


def test_stdin_is_inherited(tmp_path: Path) -> None:
    done, result = run_driver(tmp_path, ["cat"], input=b"abc")
    assert done.stdout == b"abc"
    assert result["stdout"]["sha256"] == sha(b"abc")


def test_grandchild_holding_stdout_does_not_hang_the_runner(tmp_path: Path) -> None:
    done, result = run_driver(
        tmp_path, ["sh", "-c", "sleep 60 & echo $!"], "--drain", "0.3"
    )
    grandchild = int(stored(result["stdout"]))
    try:
        assert result["returncode"] == 0
        assert done.stdout == f"{grandchild}\n".encode()
    finally:
        os.kill(grandchild, signal.SIGKILL)


# -- signals ---------------------------------------------------------------------------


def test_sigterm_is_forwarded_to_the_child(tmp_path: Path) -> None:
    with started_driver(tmp_path, [PY, str(CHILD), "term"]) as proc:
        assert proc.stdout is not None
        seen = read_until(proc.stdout.fileno(), b"ready\n")
        proc.send_signal(signal.SIGTERM)
        driver_rc, out = finish(proc, seen)
    result = load(tmp_path)
    assert driver_rc == 0
    assert out == b"ready\ngot TERM\n"
    assert result["returncode"] == 7
    assert result["signals_received"] == ["SIGTERM"]
    assert result["interrupted"] is True


def test_sigint_without_a_terminal_is_forwarded_once(tmp_path: Path) -> None:
    with started_driver(tmp_path, [PY, str(CHILD), "count", "SIGINT"]) as proc:
        assert proc.stdout is not None
        seen = read_until(proc.stdout.fileno(), b"ready\n")
        proc.send_signal(signal.SIGINT)
        driver_rc, out = finish(proc, seen)
    result = load(tmp_path)
    assert driver_rc == 0, "the wrapper died of the SIGINT"
    assert out == b"ready\ncount=1\n"
    assert result["signals_received"] == ["SIGINT"]
    assert result["returncode"] == 0


def test_a_signal_the_wrapper_ignores_stays_ignored(tmp_path: Path) -> None:
    code = "import signal; print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)"
    done, _ = run_driver(tmp_path, pycmd(code), "--ignore", "SIGHUP")
    assert done.stdout == b"True\n"


# -- terminals ---------------------------------------------------------------------------


def test_pty_mode_keeps_tty_bytes_and_window_size(tmp_path: Path) -> None:
    code = (
        "import os, sys\n"
        "size = os.get_terminal_size()\n"
        "print(f'tty={os.isatty(1)},{os.isatty(2)} size={size.columns}x{size.lines}')\n"
        "sys.stdout.flush()\n"
        "sys.stdout.buffer.write(b'a\\nb\\r\\n\\x1b[31mred\\x1b[0m\\n')\n"
    )
    rc, out = run_in_pty(tmp_path, pycmd(code), size=(33, 123))
    result = load(tmp_path)
    expected = b"tty=True,True size=123x33\na\nb\r\n\x1b[31mred\x1b[0m\n"
    assert rc == 0
    assert result["tty"] is True
    assert stored(result["stdout"]) == expected, "the inner pty changed the bytes"
    assert out == expected


def test_pty_window_resize_reaches_the_child(tmp_path: Path) -> None:
    code = (
        "import os, signal\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})\n"
        "print('ready', flush=True)\n"
        "size = os.get_terminal_size()\n"
        "while (size.columns, size.lines) != (100, 20):\n"
        "    if signal.sigtimedwait({signal.SIGWINCH}, 10) is None: break\n"
        "    size = os.get_terminal_size()\n"
        "print(f'size={size.columns}x{size.lines}')\n"
    )

    def resize(master: int) -> None:
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 20, 100, 0, 0))

    rc, out = run_in_pty(tmp_path, pycmd(code), size=(24, 80), on_ready=resize)
    assert rc == 0
    assert out == b"ready\nsize=100x20\n"


def test_ctrl_c_at_the_terminal_reaches_the_child_exactly_once(tmp_path: Path) -> None:
    rc, out = run_in_pty(
        tmp_path,
        [PY, str(CHILD), "count", "SIGINT"],
        on_ready=lambda m: os.write(m, b"\x03"),
    )
    result = load(tmp_path)
    assert rc == 0, "the wrapper died of the Ctrl-C"
    assert out == b"ready\ncount=1\n", "forwarded a second time, or not at all"
    assert result["signals_received"] == ["SIGINT"]


# -- command resolution ----------------------------------------------------------------


def make_file(path: Path, mode: int, text: str = "#!/bin/sh\necho ok\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_command_not_found_is_127() -> None:
    with pytest.raises(CommandNotFoundError) as info:
        run_command(["mltrail-test-no-such-command"])
    assert info.value.exit_code == 127
    assert info.value.hint is not None
    assert "PATH" in info.value.hint


def test_missing_path_is_127(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFoundError) as info:
        run_command([str(tmp_path / "nope")])
    assert info.value.exit_code == 127


@pytest.mark.parametrize(
    "kind", ["not-executable", "on-path-not-executable", "directory"]
)
def test_found_but_not_executable_is_126(tmp_path: Path, kind: str) -> None:
    env = {"PATH": str(tmp_path / "bin")}
    tool = make_file(tmp_path / "bin" / "tool", 0o644)
    argv = {
        "not-executable": [str(tool)],
        "on-path-not-executable": ["tool"],
        "directory": [str(tmp_path / "bin")],
    }[kind]
    with pytest.raises(CommandNotFoundError) as info:
        resolve_command(argv, env=env)
    assert info.value.exit_code == 126


def test_bad_interpreter_is_126(tmp_path: Path) -> None:
    tool = make_file(tmp_path / "tool", 0o755, "#!/nonexistent/interpreter\n")
    with pytest.raises(CommandNotFoundError) as info:
        run_command([str(tool)])
    assert info.value.exit_code == 126


def test_resolution_uses_the_given_env_and_cwd(tmp_path: Path) -> None:
    tool = make_file(tmp_path / "bin" / "tool", 0o755)
    assert resolve_command(["tool"], env={"PATH": str(tool.parent)}) == str(tool)
    assert resolve_command(["./tool"], env={}, cwd=tool.parent) == str(tool)
    result: ProcessResult = run_command(["./tool"], cwd=tool.parent)
    assert result.stdout.stored == b"ok\n"
