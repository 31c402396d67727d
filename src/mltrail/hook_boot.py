"""The start-up hook ``mltrail hook install`` copies into site-packages.

``mltrail hook install`` writes this file's source as ``_mltrail_hook.py`` beside
``zz-mltrail-hook.pth`` (one line, ``import _mltrail_hook``), after a header that
sets ``PROJECTS``, ``HOME`` and ``MLTRAIL_PATH``. Python imports it at every
start-up, so it imports nothing but ``os`` and ``sys`` (both loaded already)
until it knows the script lies in a chosen project folder; only then does it
import mltrail and record the script as ``python -m mltrail.auto`` would
(``mltrail.auto.autolog``). It never stops Python: any error becomes one
stderr line and the script runs unrecorded.
"""

import os
import sys

PROJECTS: tuple[str, ...] = ()
HOME: str | None = None
MLTRAIL_PATH: str | None = None
OFF_ENV = "MLTRAIL_HOOK"


def hooked_script(argv: list[str], projects: tuple[str, ...]) -> str | None:
    """The script this interpreter runs when it lies in a project folder, else None.

    Not for ``-c``, ``-m``, stdin or an interactive session (``sys.argv[0]`` is
    then ``-c``, ``-m``, ``-`` or empty), nor for scripts inside Python's own
    prefixes (pip, the ``mltrail`` command and other console scripts of a
    virtual environment kept in the project), nor for a path that is no
    readable file, a folder without a readable ``__main__.py`` or a zip
    archive without a ``__main__`` module (Python will not run it).
    """
    first = argv[0] if argv else ""
    if first in ("", "-", "-c", "-m") or not projects:
        return None
    script = os.path.realpath(first)
    # rstrip: a project "/" is every folder, not "//".
    if not any(script.startswith(p.rstrip(os.sep) + os.sep) for p in projects):
        return None
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for prefix in prefixes:
        if script.startswith(os.path.realpath(prefix) + os.sep):
            return None
    # One Python cannot open (a typo, a symlink loop, no read access, a pipe)
    # makes it exit 2 at once: no run. A folder runs its __main__.py, and one
    # without (or with one Python cannot read) makes it exit 1: no run either.
    if os.path.isdir(script):
        return script if _readable_file(os.path.join(script, "__main__.py")) else None
    if not _readable_file(script) or _zip_without_main(script):
        return None
    return script


def _readable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.R_OK)


def _zip_without_main(script: str) -> bool:
    """True when ``script`` is a zip archive (of any name: Python asks its zip
    importer first) that holds no ``__main__`` module: Python exits 1 ("can't
    find '__main__' module"). A file that is no zip archive runs as a script."""
    import zipimport  # frozen, loaded already at start-up

    try:
        archive = zipimport.zipimporter(script)
    except zipimport.ZipImportError:
        return False
    except OSError:
        return True
    try:
        return archive.find_spec("__main__") is None
    except (ImportError, OSError):
        return True


def boot() -> None:
    """Start recording this script when it is hooked; never raise."""
    try:
        if os.environ.get(OFF_ENV) == "0":
            return
        script = hooked_script(list(getattr(sys, "argv", [])), PROJECTS)
        if script is not None:
            _record(script)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        sys.stderr.write(f"mltrail hook: not recording this script: {reason}\n")


def _record(script: str) -> None:
    try:
        from mltrail.hook_run import start_hooked
    except ImportError:
        if MLTRAIL_PATH is None or MLTRAIL_PATH in sys.path:
            raise
        sys.path.append(MLTRAIL_PATH)
        from mltrail.hook_run import start_hooked
    start_hooked(script, HOME)
