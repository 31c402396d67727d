"""The mltrail CLI run in this process, as the flag and lineage tests drive it.

from cli_in_process import in_process_cli
cli = in_process_cli(capsys, monkeypatch, tmp_path)
cli("init")
out = cli("sources", "check", "apps", "--json", code=1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.cli.main import main

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pytest

__all__ = ["DUP", "in_process_cli"]

DUP = """
import pathlib, sys
src, dst, tag = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
dst.parent.mkdir(parents=True, exist_ok=True)
dst.write_bytes(b"".join(p.read_bytes() for p in files) + tag.encode())
"""
"""A step's script: ``dup.py SRC DST TAG`` writes DST from the bytes of SRC (a
file, or a folder's files in order) and TAG."""


def in_process_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Callable[..., str]:
    """A function running ``mltrail ARGS`` in this process against the home
    ``tmp_path/home`` (git discovery stops at ``tmp_path``; no outer run or
    witness is inherited): it asserts the exit code (``code=``, 0 by default)
    and answers stdout."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("MLTRAIL_RUN_ID", raising=False)
    monkeypatch.delenv("MLTRAIL_WITNESS", raising=False)
    monkeypatch.setenv("MLTRAIL_HOME", str(tmp_path / "home"))

    def run(*args: str, code: int = 0) -> str:
        capsys.readouterr()
        try:
            main(list(args))
            got = 0
        except SystemExit as e:
            got = e.code or 0
        out, err = capsys.readouterr()
        assert got == code, (args, got, out, err)
        return out

    return run
