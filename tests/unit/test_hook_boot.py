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
    (proj / "app").mkdir()
    (proj / "app" / "__main__.py").write_text("pass\n")
    assert hooked_script([str(proj / "app")], (str(proj),)) == str(proj / "app")
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


def test_a_folder_or_zip_without_a_main_module_is_not_hooked(tmp_path):
    """Python exits 1 ("can't find '__main__' module") for a folder without a
    ``__main__.py`` and for a zip archive (of any name) without ``__main__``:
    the hook started a run of a script that never ran."""
    import zipfile

    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "train.py").write_text("pass\n")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "__main__.py").mkdir()  # no regular file
    with zipfile.ZipFile(tmp_path / "lib.zip", "w") as z:
        z.writestr("train.py", "pass\n")
    with zipfile.ZipFile(tmp_path / "lib.py", "w") as z:  # a zip by its bytes
        z.writestr("train.py", "pass\n")
    for name in ("bare", "odd", "lib.zip", "lib.py"):
        assert hooked_script([str(tmp_path / name)], (str(tmp_path),)) is None, name
    with zipfile.ZipFile(tmp_path / "app.pyz", "w") as z:
        z.writestr("__main__.py", "pass\n")
    app = str(tmp_path / "app.pyz")
    assert hooked_script([app], (str(tmp_path),)) == os.path.realpath(app)
