"""``write_output_file``: whole or not at all, and never over what is no file."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest

from mltrail.cli.out_file import write_output_file

if TYPE_CHECKING:
    from pathlib import Path


def test_a_new_file_gets_the_bytes_and_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_output_file(tmp_path / "out.json", b"{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "out.json").read_bytes() == b"{}\n"
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp left


def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_bytes(b"old")
    out.chmod(0o600)
    write_output_file(out, b"new")
    assert out.read_bytes() == b"new"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_link_is_kept_and_its_target_replaced(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_bytes(b"old")
    (tmp_path / "link.json").symlink_to("real.json")
    write_output_file(tmp_path / "link.json", b"new")
    assert (tmp_path / "link.json").is_symlink()
    assert (tmp_path / "real.json").read_bytes() == b"new"


def test_what_is_no_regular_file_is_written_in_place(tmp_path: Path) -> None:
    link = tmp_path / "null"
    link.symlink_to(os.devnull)
    write_output_file(link, b"gone")  # never renamed over the device
    assert link.is_symlink()
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_missing_folder_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_output_file(tmp_path / "nowhere" / "out.json", b"x")


def test_a_replaced_private_file_is_never_readable_by_others_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file has the old file's mode before a byte is written: a
    0600 report is never for a moment 0644 beside it (one opened then stays open)."""
    out = tmp_path / "out.json"
    out.write_bytes(b"old")
    out.chmod(0o600)
    modes: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    old = os.umask(0o022)
    try:
        write_output_file(out, b"secret")
    finally:
        os.umask(old)
    assert modes[0] == 0o600
    assert out.read_bytes() == b"secret"


def test_a_name_as_long_as_the_file_system_allows_is_written(tmp_path: Path) -> None:
    """The hidden file beside it is named from a cut of the name: a 250-byte
    name (the limit is 255) was refused, the hidden name being 15 bytes longer."""
    target = tmp_path / ("r" * 246 + ".pdf")
    write_output_file(target, b"report")
    assert target.read_bytes() == b"report"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def _other_group() -> int | None:
    """A group this process may give its files, other than its own: any group
    for root, else one it belongs to."""
    if os.geteuid() == 0:
        return 54321 if os.getegid() != 54321 else 54322
    return next((g for g in os.getgroups() if g != os.getegid()), None)


def test_a_replaced_file_keeps_its_group_and_group_bits(tmp_path: Path) -> None:
    """A report made 0640 for a group lost the group: the new file had the
    writer's group with the group bits of the old, readable by another group."""
    group = _other_group()
    if group is None:
        pytest.skip("this user belongs to no second group")
    out = tmp_path / "report.html"
    out.write_bytes(b"old")
    os.chown(out, -1, group)
    out.chmod(0o640)
    write_output_file(out, b"new")
    found = out.stat()
    assert out.read_bytes() == b"new"
    assert (found.st_gid, stat.S_IMODE(found.st_mode)) == (group, 0o640)


def test_group_bits_never_go_to_another_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the group cannot be given (not a member), the group bits are the
    old file's bits for others: the writer's group read a 0640 file of
    another group before; set-ID bits are never carried over."""
    group = _other_group()
    if group is None:
        pytest.skip("this user belongs to no second group")

    def refuse(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    cases = {0o640: 0o600, 0o664: 0o644, 0o6755: 0o755, 0o606: 0o666}
    for mode, expected in cases.items():
        out = tmp_path / f"{mode:o}.json"
        out.write_bytes(b"old")
        os.chown(out, -1, group)
        out.chmod(mode)
        with monkeypatch.context() as m:
            m.setattr(os, "fchown", refuse)
            write_output_file(out, b"new")
        found = out.stat()
        assert found.st_gid == os.getegid()
        assert stat.S_IMODE(found.st_mode) == expected, oct(mode)
