"""Which interpreter start-ups the hook records (``mltrail.hook_boot.hooked_script``)."""

from __future__ import annotations

import os
import sys

import pytest

from mltrail.hook_boot import hooked_script


@pytest.mark.parametrize("first", ["", "-", "-c", "-m"])
def test_no_script_is_never_hooked(first, tmp_path):
    assert hooked_script([first, "x"], (str(tmp_path),)) is None


def test_a_script_is_hooked_only_under_a_project(tmp_path):
    proj, other = tmp_path / "proj", tmp_path / "proj-2"
    (proj / "sub").mkdir(parents=True)
    other.mkdir()
    script = proj / "sub" / "train.py"
    script.write_text("pass\n")
    assert hooked_script([str(script)], (str(proj),)) == os.path.realpath(script)
    assert hooked_script([str(proj / "sub")], (str(proj),)) == str(proj / "sub")
    assert hooked_script([str(other / "train.py")], (str(proj),)) is None
    assert hooked_script([str(script)], ()) is None


def test_pythons_own_scripts_are_not_hooked():
    prefix = os.path.realpath(sys.prefix)
    pip = os.path.join(prefix, "bin", "pip")
    assert hooked_script([pip], (os.path.dirname(prefix),)) is None


def test_the_root_folder_as_project_hooks_every_script(tmp_path):
    # `--project /` was stored as "/", and no script starts with "//".
    script = tmp_path / "train.py"
    script.write_text("pass\n")
    assert hooked_script([str(script)], (os.sep,)) == os.path.realpath(script)


def test_a_script_python_cannot_open_is_not_hooked(tmp_path):
    os.mkfifo(tmp_path / "fifo.py")
    for name in ("missing.py", "fifo.py"):
        assert hooked_script([str(tmp_path / name)], (str(tmp_path),)) is None
