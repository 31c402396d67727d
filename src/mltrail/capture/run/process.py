"""Run the wrapped command the way a shell would, and record how it went.

``run_command(argv)`` starts ``argv`` and returns a ``ProcessResult``: exit code
or fatal signal, duration, the signals the wrapper received, and for stdout and
stderr a ``StreamCapture`` (SHA-256 and size of every byte, plus a size-capped
head and tail for the record)::

    result = run_command(["python", "train.py"], log_limit=1 << 20)
    record(result.exit_status, result.stdout.sha256, result.stdout.stored)
    raise SystemExit(exit_like(result))   # end the way the child ended

What the child sees is what it would see without the wrapper:

* **stdin** is inherited untouched (pipes, files and interactive input work).
* **stdout / stderr**, each on its own: when the wrapper's fd is a terminal, the
  child gets a pseudo-terminal with the terminal's window size (kept in sync on
  ``SIGWINCH``) and output post-processing turned off, so colours, progress bars
  and line buffering are unchanged and the bytes recorded are the bytes written;
  otherwise it gets a pipe. A pump thread per stream copies the bytes live to
  the wrapper's own fd, hashes them and keeps head and tail (bounded memory). If
  the wrapper's fd is gone (``EPIPE``), pumping and hashing go on without it.
* **process group and session** are the wrapper's, so job control (Ctrl-Z, fg)
  and reads from a terminal stdin behave as usual.
* **signals**: while the child runs, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to
  the wrapper are forwarded to the child. SIGINT and SIGQUIT are forwarded too,
  except when the wrapper is in the terminal's foreground process group: then
  the terminal has already sent them to the child, and a second Ctrl-C would make
  many trainers abort without saving. (So a ``kill -INT`` aimed at a wrapper in
  the foreground is not forwarded; the terminal case wins.) A signal the wrapper
  ignores (``nohup``, a background job of a non-interactive shell) stays ignored
  and so is inherited as ignored by the child. Every signal caught is recorded in
  order; the wrapper never dies of KeyboardInterrupt while the child runs.
  A signal that arrives while the child is being spawned is forwarded once it
  exists; forwarding uses a pidfd where there is one, so it can never hit a
  recycled pid. Handlers are installed only when called from the main thread,
  and the previous handlers are always restored.

After the child exits, the pumps get ``drain_timeout_s`` (2 s) to reach end of
file; a grandchild that still holds stdout or stderr open would otherwise hang
the wrapper. Then they stop once nothing more is immediately readable (reading
for at most another ``drain_timeout_s``): later output of such a grandchild is
neither shown nor recorded, and it gets ``EPIPE`` / ``SIGPIPE`` if it writes.
Output the child did write is never dropped to save time: a pump blocked on a
slow reader of the wrapper's stdout is waited for, as the child would have been.
If the wrapper itself fails while waiting (another signal handler raises), the
child is killed rather than left running with nobody reading its output.

POSIX only (Linux, macOS).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mltrail.capture.run.log_capture import LogCapture, LogMasking, StreamCapture
from mltrail.errors import CommandNotFoundError, InputError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path
    from types import FrameType

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT_S",
    "DEFAULT_LOG_LIMIT",
    "ProcessResult",
    "StreamCapture",
    "exit_like",
    "resolve_command",
    "run_command",
]

DEFAULT_LOG_LIMIT = 8 * 2**20
DEFAULT_DRAIN_TIMEOUT_S = 2.0
_CHUNK = 64 * 1024
_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_FROM_TERMINAL = (signal.SIGINT, signal.SIGQUIT)
_INTERRUPTS = frozenset({"SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"})
_CORE_SIGNALS = frozenset(
    {signal.SIGQUIT, signal.SIGILL, signal.SIGABRT, signal.SIGFPE, signal.SIGSEGV}
    | {signal.SIGBUS, signal.SIGSYS, signal.SIGTRAP, signal.SIGXCPU, signal.SIGXFSZ}
)


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How a wrapped command ended.

    ``returncode`` follows ``subprocess``: ``-N`` when the child died of signal N,
    whose name is then in ``signal``. ``signals_received`` names, in order, the
    signals the wrapper caught while the child ran (forwarded or not). ``tty``
    says whether the child got a pseudo-terminal for stdout or stderr.
    """

    returncode: int | None
    signal: str | None
    pid: int
    duration_s: float
    stdout: StreamCapture
    stderr: StreamCapture
    signals_received: tuple[str, ...]
    tty: bool

    @property
    def exit_status(self) -> int:
        """The shell's ``$?``: the exit code, or 128 + N after death by signal N."""
        if self.returncode is not None and self.returncode >= 0:
            return self.returncode
        if self.returncode is not None:
            return 128 - self.returncode
        if self.signal is not None:
            return 128 + signal.Signals[self.signal].value
        raise ValueError("ProcessResult has neither a returncode nor a signal")

    @property
    def interrupted(self) -> bool:
        """Whether the run was cut short: an interrupt signal arrived or the child was killed."""
        return self.signal is not None or bool(_INTERRUPTS & set(self.signals_received))


def resolve_command(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None
) -> str:
    """Find the program ``argv[0]`` names, as ``execvp`` in the child would.

    A name with a slash is taken as a path (relative to ``cwd``); any other is
    searched on ``env["PATH"]`` (``os.defpath`` when unset).

    Returns:
        The absolute path of the program.

    Raises:
        CommandNotFoundError: exit code 127 when nothing is found, 126 when the
            file found is a directory or not executable.
    """
    name = argv[0] if argv else ""
    if not name:
        raise CommandNotFoundError("no command given", hint="put the command after --")
    if "/" in name:
        return _check_executable(os.path.join(cwd or os.getcwd(), name), name)
    search = env.get("PATH", os.defpath)
    found = shutil.which(name, path=search)
    if found is None:
        return _not_on_path(name, search)
    return os.path.abspath(os.path.join(cwd or os.getcwd(), found))


def _check_executable(path: str, name: str) -> str:
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise CommandNotFoundError(f"{name}: no such file", hint="check the path")
    if os.path.isdir(path):
        raise CommandNotFoundError(f"{name}: is a directory", code=126)
    if not os.access(path, os.X_OK):
        raise CommandNotFoundError(
            f"{name}: permission denied", hint=f"chmod +x {path}", code=126
        )
    return path


def _not_on_path(name: str, search: str) -> str:
    # Like bash: a non-executable file of that name on PATH gives 126, not 127.
    for folder in search.split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate):
            return _check_executable(candidate, name)
    raise CommandNotFoundError(
        f"{name}: command not found",
        hint=f"check the spelling or PATH ({search or 'empty'})",
    )


def run_command(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log_limit: int = DEFAULT_LOG_LIMIT,
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    masking: LogMasking | None = None,
    pass_fds: Sequence[int] = (),
) -> ProcessResult:
    """Run ``argv`` to completion as described in the module docstring.

    Args:
        argv: the command and its arguments; ``argv[0]`` is resolved first.
        cwd: working directory of the child (default: the wrapper's).
        env: the child's whole environment (default: the wrapper's).
        log_limit: bytes of each stream to keep, half head and half tail.
        drain_timeout_s: how long to wait for end of output after the child exits.
        masking: the secrets to mask in what is kept and hashed of the output
            (``capture.log_capture``); the wrapper's own stdout and stderr get
            the bytes as written.
        pass_fds: descriptors the child inherits (``capture.run.mask_channel``).

    Raises:
        CommandNotFoundError: the command cannot be found (127) or run (126).
        InputError: ``cwd`` is not a directory.
    """
    if log_limit < 0:
        raise ValueError(f"log_limit must be >= 0, got {log_limit}")
    if cwd is not None and not os.path.isdir(cwd):
        raise InputError(f"working directory {cwd} does not exist")
    program = resolve_command(argv, env=os.environ if env is None else env, cwd=cwd)
    _flush_python_streams()
    with contextlib.ExitStack() as stack:
        channels = [stack.enter_context(_channel(fd)) for fd in (1, 2)]
        forwarder = stack.enter_context(_forwarding(channels))
        start = time.monotonic()
        proc = _spawn(argv, program, cwd, env, channels, pass_fds)
        captures = [LogCapture(log_limit, masking) for _ in channels]
        return _supervise(proc, start, channels, forwarder, captures, drain_timeout_s)


def exit_like(result: ProcessResult) -> int:
    """End the wrapper the way the child ended; call it last, it may not return.

    After death by signal N, this resets N to its default action (and the
    core-size limit to 0, so the wrapper leaves no core file of its own) and sends
    N to the wrapper itself, so the caller's shell sees the same death (``$?`` of
    128 + N, "Terminated", job control). If that does not end the process (N's
    default action is not fatal), it returns ``128 + N``. Otherwise it returns
    the child's exit code. Either way the caller passes the value to ``sys.exit``,
    after the run has been recorded.
    """
    if result.returncode is None or result.returncode >= 0:
        return result.exit_status
    signum = -result.returncode
    with contextlib.suppress(OSError, ValueError):
        if signum in _CORE_SIGNALS:
            _, hard = resource.getrlimit(resource.RLIMIT_CORE)
            resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
    return result.exit_status


# -- streams ---------------------------------------------------------------------


@dataclass(slots=True)
class _Channel:
    """One output stream: the wrapper's fd, our read end, and the child's end."""

    wrapper_fd: int
    read_fd: int
    child_fd: int | None
    is_pty: bool

    def close_child_end(self) -> None:
        if self.child_fd is not None:
            os.close(self.child_fd)
            self.child_fd = None


@contextlib.contextmanager
def _channel(wrapper_fd: int) -> Iterator[_Channel]:
    if os.isatty(wrapper_fd):
        read_fd, child_fd = os.openpty()
        channel = _Channel(wrapper_fd, read_fd, child_fd, is_pty=True)
    else:
        read_fd, child_fd = os.pipe()
        channel = _Channel(wrapper_fd, read_fd, child_fd, is_pty=False)
    try:
        if channel.is_pty:
            _configure_pty(child_fd, wrapper_fd)
        yield channel
    finally:
        channel.close_child_end()
        os.close(read_fd)


def _configure_pty(slave_fd: int, terminal_fd: int) -> None:
    attrs = termios.tcgetattr(slave_fd)
    attrs[1] &= ~(termios.OPOST | termios.ONLCR)  # bytes written are bytes read
    termios.tcsetattr(slave_fd, termios.TCSANOW, attrs)
    _copy_window_size(terminal_fd, slave_fd)


def _copy_window_size(src_fd: int, dst_fd: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)


def _flush_python_streams() -> None:
    # Keep what the caller printed before the child's output on the same fd.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()


class _Passthrough:
    """Writes everything to the wrapper's fd until that fd fails, then nothing."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.open = True

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while self.open and view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:  # someone set O_NONBLOCK on a shared terminal
                _wait_writable(self.fd)
            except OSError:  # EPIPE, EBADF, EIO after a hangup: keep draining
                self.open = False


def _wait_writable(fd: int) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_WRITE)
        selector.select(1.0)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except OSError as e:
        if e.errno == errno.EIO:  # a pty master once every slave is closed (Linux)
            return b""
        raise


class _Pump(threading.Thread):
    """Copies one channel to the wrapper's fd and into a ``LogCapture``.

    If that fails unexpectedly, the error is kept for the main thread and the
    channel is still drained, so the child never blocks on a full pipe.
    """

    def __init__(
        self, channel: _Channel, capture: LogCapture, stop_fd: int, grace: float
    ) -> None:
        super().__init__(name=f"mltrail-pump-{channel.wrapper_fd}", daemon=True)
        self.capture = capture
        self.error: BaseException | None = None
        self._out = _Passthrough(channel.wrapper_fd)
        self._source = channel.read_fd
        self._stop_fd = stop_fd
        self._grace = grace
        self._stop_by: float | None = None

    def run(self) -> None:
        try:
            self._pump(self._copy)
        except BaseException as e:  # re-raised in the main thread
            self.error = e
            with contextlib.suppress(OSError):
                self._pump(lambda data: None)

    def _copy(self, data: bytes) -> None:
        self.capture.update(data)
        self._out.write(data)

    def _pump(self, sink: Callable[[bytes], None]) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._source, selectors.EVENT_READ)
            selector.register(self._stop_fd, selectors.EVENT_READ)
            while data := self._next_chunk(selector):
                sink(data)

    def _next_chunk(self, selector: selectors.BaseSelector) -> bytes:
        """The next bytes, or ``b""`` at end of output or once told to stop."""
        timeout = None if self._stop_by is None else 0
        ready = {key.fd for key, _ in selector.select(timeout)}
        if self._stop_by is None and self._stop_fd in ready:
            self._stop_by = time.monotonic() + self._grace
        if self._source not in ready:
            return b""  # told to stop, and nothing left right now
        if self._stop_by is not None and time.monotonic() > self._stop_by:
            return b""  # told to stop, and a grandchild keeps writing
        return _read(self._source)


# -- signals ---------------------------------------------------------------------


class _Forwarder:
    """Signal handler state: records every signal, forwards the right ones."""

    def __init__(self, terminal_fd: int | None, channels: Sequence[_Channel]) -> None:
        self.received: list[str] = []
        self._terminal_fd = terminal_fd
        self._ptys = [c for c in channels if c.is_pty]
        self._send: Callable[[int], None] | None = None
        self._pending: list[int] = []

    def attach(self, send: Callable[[int], None]) -> None:
        """Start forwarding to the child, first what arrived while it was spawning."""
        self._send = send
        while self._pending:
            send(self._pending.pop(0))

    def detach(self) -> None:
        self._send = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum).name)
        if signum in _FROM_TERMINAL and self._in_foreground():
            return  # the terminal sent it to the child's process group already
        self._forward(signum)

    def handle_winch(self, signum: int, frame: FrameType | None) -> None:
        for channel in self._ptys:
            _copy_window_size(channel.wrapper_fd, channel.read_fd)
        self._forward(signum)  # again, so the child reads the size just copied

    def _forward(self, signum: int) -> None:
        if self._send is not None:
            self._send(signum)
        elif signum != signal.SIGWINCH:
            self._pending.append(signum)

    def _in_foreground(self) -> bool:
        if self._terminal_fd is None:
            return False
        try:
            return os.tcgetpgrp(self._terminal_fd) == os.getpgrp()
        except OSError:
            return False


@contextlib.contextmanager
def _forwarding(channels: Sequence[_Channel]) -> Iterator[_Forwarder]:
    if threading.current_thread() is not threading.main_thread():
        yield _Forwarder(None, channels)  # signal.signal works in the main thread only
        return
    with contextlib.ExitStack() as stack:
        terminal_fd = stack.enter_context(_controlling_terminal())
        forwarder = _Forwarder(terminal_fd, channels)
        for signum in (*_FORWARDED, *_FROM_TERMINAL):
            stack.enter_context(_handler(signum, forwarder.handle))
        if any(c.is_pty for c in channels):
            stack.enter_context(_handler(signal.SIGWINCH, forwarder.handle_winch))
        yield forwarder


@contextlib.contextmanager
def _handler(
    signum: int, handler: Callable[[int, FrameType | None], None]
) -> Iterator[None]:
    previous = signal.getsignal(signum)
    if previous is None or previous == signal.SIG_IGN:
        # Ignored by the wrapper: the child inherits it ignored, as without us.
        # None: a handler set outside Python, which could not be put back.
        yield
        return
    signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)


@contextlib.contextmanager
def _controlling_terminal() -> Iterator[int | None]:
    """An fd on the controlling terminal (to ask for its foreground group), if any."""
    fd = _standard_terminal_fd()
    if fd is not None:
        yield fd
        return
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _standard_terminal_fd() -> int | None:
    for fd in (0, 1, 2):
        try:
            os.tcgetpgrp(fd)  # fails unless fd is our controlling terminal
        except OSError:
            continue
        return fd
    return None


def _sender(pid: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A race-free ``kill`` for the child (pidfd on Linux), and its closer."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return lambda signum: _quiet(os.kill, pid, signum), lambda: None
    return (
        lambda signum: _quiet(signal.pidfd_send_signal, pidfd, signum),
        lambda: os.close(pidfd),
    )


def _quiet(kill: Callable[[int, int], None], target: int, signum: int) -> None:
    with contextlib.suppress(OSError):  # already gone: nothing to forward to
        kill(target, signum)


# -- the child -------------------------------------------------------------------


def _spawn(
    argv: Sequence[str],
    program: str,
    cwd: Path | None,
    env: Mapping[str, str] | None,
    channels: Sequence[_Channel],
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    out, err = channels
    try:
        proc = subprocess.Popen(  # noqa: S603 - running the user's command is the job
            list(argv),
            executable=program,
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=out.child_fd,
            stderr=err.child_fd,
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )
    except OSError as e:
        raise _spawn_error(argv[0], program, e) from e
    for channel in channels:
        channel.close_child_end()
    return proc


def _spawn_error(name: str, program: str, error: OSError) -> CommandNotFoundError:
    if isinstance(error, FileNotFoundError) and not os.path.exists(program):
        return CommandNotFoundError(f"{name}: command not found", hint="check PATH")
    reason = error.strerror or str(error)
    hint = None
    if isinstance(error, FileNotFoundError):
        hint = "the #! interpreter or the program's loader is missing"
    return CommandNotFoundError(
        f"{name}: cannot execute: {reason}", hint=hint, code=126
    )


def _supervise(
    proc: subprocess.Popen[bytes],
    start: float,
    channels: Sequence[_Channel],
    forwarder: _Forwarder,
    captures: Sequence[LogCapture],
    drain_timeout_s: float,
) -> ProcessResult:
    send, close_sender = _sender(proc.pid)
    stop_r, stop_w = os.pipe()
    pumps = [
        _Pump(c, capture, stop_r, drain_timeout_s)
        for c, capture in zip(channels, captures, strict=True)
    ]
    try:
        returncode = _wait(proc, pumps, forwarder, send)
        duration = time.monotonic() - start
    finally:
        forwarder.detach()
        _stop(pumps, stop_w, drain_timeout_s)
        close_sender()
        os.close(stop_r)
        os.close(stop_w)
    for pump in pumps:
        if pump.error is not None:
            raise pump.error
    return _result(proc.pid, returncode, duration, pumps, forwarder, channels)


def _wait(
    proc: subprocess.Popen[bytes],
    pumps: Sequence[_Pump],
    forwarder: _Forwarder,
    send: Callable[[int], None],
) -> int:
    try:
        forwarder.attach(send)
        for pump in pumps:
            pump.start()
        return proc.wait()  # in the main thread, where the signal handlers run
    except BaseException:
        _kill(proc)
        raise


def _stop(pumps: Sequence[_Pump], stop_w: int, grace: float) -> None:
    """Let the pumps reach end of output for ``grace`` s, then tell them to stop."""
    started = [pump for pump in pumps if pump.ident is not None]
    deadline = time.monotonic() + grace
    for pump in started:
        pump.join(max(0.0, deadline - time.monotonic()))
    if any(pump.is_alive() for pump in started):
        os.write(stop_w, b"x")  # a grandchild holds the stream open: stop waiting
    for pump in started:
        pump.join()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """The wrapper is failing: do not leave the child running with nobody reading."""
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


def _result(
    pid: int,
    returncode: int,
    duration: float,
    pumps: Sequence[_Pump],
    forwarder: _Forwarder,
    channels: Sequence[_Channel],
) -> ProcessResult:
    return ProcessResult(
        returncode=returncode,
        signal=_signal_name(-returncode) if returncode < 0 else None,
        pid=pid,
        duration_s=duration,
        stdout=pumps[0].capture.result(),
        stderr=pumps[1].capture.result(),
        signals_received=tuple(forwarder.received),
        tty=any(c.is_pty for c in channels),
    )


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"
