"""Record scripts that cannot be wrapped: ``mltrail.autolog()`` and ``python -m mltrail.auto``.

``python -m mltrail.auto [--name NAME] script.py [args ...]`` (or ``-m module``) runs
the script as ``python`` would, inside a run: the command, code, environment,
hardware and every ``argparse`` result are recorded, and the run ends with the
script's exit status. Config files named in its arguments are recorded as for
``mltrail run``. A ``mltrail.start_run()`` inside the script joins this run (one
process, one run: ``recorder.active_run``), so what it logs lands here and its
end does not end the run. ``mltrail.autolog()`` called at the top of a script does the
same from inside it; there the exit code of ``raise SystemExit(n)`` is not visible,
so an uncaught exception is recorded as failed, an exit through ``sys.exit(n)``,
``exit(n)`` or ``quit(n)`` with its status (the last call's), and any other exit
as succeeded. For a script Python runs from its file (``python script.py``, as
the start-up hook records), ``__main__.__file__`` tells the two apart: Python
removes it once the script's code ended, unless an uncaught ``SystemExit`` left
it, which exits from inside. A script left by a ``SystemExit`` that no
``sys.exit``/``exit()`` call made (``raise SystemExit(n)``) is recorded as
aborted, its exit status unknown (ADR 0026, amendment of 2026-12-08); one whose
code ended normally is succeeded, whatever ``sys.exit`` it caught.
"""

from __future__ import annotations

import _sitebuiltins
import argparse
import atexit
import runpy
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.record.lifecycle import ended_by
from mltrail.record.runs import Run, start_run

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

__all__ = ["autolog", "main"]

_active: Run | None = None
_depth = threading.local()
_original_parse = argparse.ArgumentParser.parse_known_args
_original_exit = sys.exit
_original_quit = _sitebuiltins.Quitter.__call__
_exit_seen: list[SystemExit] = []


def autolog(
    name: str | None = None, *, home: str | Path | None = None, params: bool = True
) -> Run:
    """Record this script as a run (joining ``mltrail run``'s when wrapped).

    Parsed ``argparse`` arguments are recorded as ``run.params`` (source
    ``argparse``) unless ``params`` is false; the run ends when the
    interpreter exits. Calling it again returns the same run.
    """
    global _active  # noqa: PLW0603 - one autolog run per process
    if _active is not None and _active.status is None:
        return _active
    _active = start_run(name, home=home, source="autolog")
    if params:
        argparse.ArgumentParser.parse_known_args = _parse_known_args  # type: ignore[method-assign]
    previous_hook = sys.excepthook
    sys.excepthook = _excepthook(previous_hook)
    sys.exit = _exit
    # exit() and quit(): site makes them after the start-up hook has run, so
    # their class is wrapped rather than the builtins.
    _sitebuiltins.Quitter.__call__ = _quit  # type: ignore[method-assign]
    atexit.register(_end_at_exit)
    return _active


def _parse_known_args(
    self: argparse.ArgumentParser, *args: Any, **kwargs: Any
) -> tuple[argparse.Namespace, list[str]]:
    depth = getattr(_depth, "value", 0)
    _depth.value = depth + 1
    try:
        namespace, extras = _original_parse(self, *args, **kwargs)
    finally:
        _depth.value = depth
    if depth == 0 and _active is not None and _active.status is None:
        _active.log_params(namespace)
    return namespace, extras


def _excepthook(previous: Any) -> Any:
    def hook(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if _active is not None:
            _active.end_after(value)
        previous(kind, value, tb)

    return hook


def _exit(status: Any = None) -> None:
    """``sys.exit`` that remembers the status for the run's end."""
    error = SystemExit(status)
    _exit_seen[:] = [error]
    raise error


def _quit(self: _sitebuiltins.Quitter, code: Any = None) -> None:
    """``exit()``/``quit()`` that remember the status, as ``_exit`` does."""
    _exit_seen[:] = [SystemExit(code)]
    _original_quit(self, code)


_EXIT_UNKNOWN = (
    "the script ended by a SystemExit raised without sys.exit (`raise "
    "SystemExit(n)`): its exit status is unknown, Python handles it before the "
    "run's end is recorded"
)


def _end_at_exit() -> None:
    if _active is not None:
        left_by_exit = _left_by_system_exit()
        if left_by_exit is False:
            _active.end("succeeded")  # a sys.exit it caught is not its end
        elif _exit_seen:
            _end(_active, _exit_seen[0])
        elif left_by_exit:
            _active.end("aborted", error=_EXIT_UNKNOWN)
        else:
            _active.end("succeeded")
    argparse.ArgumentParser.parse_known_args = _original_parse  # type: ignore[method-assign]
    sys.exit = _original_exit
    _sitebuiltins.Quitter.__call__ = _original_quit  # type: ignore[method-assign]


def _left_by_system_exit() -> bool | None:
    """Whether the script Python ran from its file (``python script.py``) left
    by an uncaught ``SystemExit``; None when Python did not run one (``-c``,
    ``-m``, a folder or zip, ``python -m mltrail.auto``).

    Python sets ``__main__.__file__`` before the script's code runs and removes
    it once that code returned or raised, but an uncaught ``SystemExit`` exits
    from inside, before the removal (CPython 3.11 to 3.13,
    ``_PyRun_SimpleFileObject``): at ``atexit`` it is still there. Python
    removes ``__cached__`` with it; only one of them gone is the script's own
    doing (``del __file__``), which tells nothing: None.
    """
    main = sys.modules.get("__main__")
    names = getattr(main, "__dict__", None)
    argv = getattr(sys, "argv", None) or [""]
    if not isinstance(names, dict) or argv[0] in ("", "-", "-c", "-m"):
        return None
    if "__spec__" not in names or names["__spec__"] is not None:
        return None  # run through runpy, which removes nothing
    left = "__file__" in names, "__cached__" in names
    if left[0] != left[1]:
        return None  # the script removed one itself (`del __file__`): Python both
    return left[0]


_USAGE = (
    "usage: python -m mltrail.auto [--name NAME] (script.py | -m module) [args ...]"
)


def _parse(argv: Sequence[str]) -> tuple[str | None, bool, str, list[str]]:
    args = list(argv)
    name = None
    if len(args) >= 2 and args[0] == "--name":
        name, args = args[1], args[2:]
    module = bool(args) and args[0] == "-m"
    if module:
        args = args[1:]
    if not args or args[0] in ("-h", "--help"):
        raise SystemExit(_USAGE)
    return name, module, args[0], args[1:]


def main(argv: Sequence[str] | None = None) -> int:
    """Run a script or module as ``__main__`` inside an autolog run."""
    name, module, target, rest = _parse(sys.argv[1:] if argv is None else argv)
    sys.argv = ["-m", target, *rest] if module else [target, *rest]
    run = autolog(name or Path(target).name)  # records `python -m target` as run
    sys.argv = [target, *rest]
    try:
        if module:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, str(Path(target).resolve().parent))
            runpy.run_path(target, run_name="__main__")
    except BaseException as e:
        _end(run, e)
        raise
    _end(run, None)
    return 0


def _end(run: Run, error: BaseException | None) -> None:
    """End the run as the script ended (``lifecycle.ended_by``, exit code known)."""
    ended = ended_by(error, whole_process=True)
    run.end(ended.status, error=ended.error, exit_code=ended.exit_code)


if __name__ == "__main__":
    # Run the importable module's main, so a script calling mltrail.autolog() gets
    # this run rather than a second one.
    from mltrail import auto  # noqa: PLW0406

    sys.exit(auto.main())
