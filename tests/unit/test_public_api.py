"""The public surface is curated: __all__ lists exactly the public names."""

import subprocess
import sys
from importlib.metadata import version

import pytest

import mltrail


def test_all_lists_every_public_name():
    names = set(mltrail.__all__) - {"__version__"}
    assert sorted(mltrail.__all__) == sorted(set(mltrail.__all__))
    assert names == set(mltrail._LAZY) | {
        name
        for name in vars(mltrail)
        if not name.startswith("_")
        and name not in {"annotations", "importlib", "TYPE_CHECKING", "Any"}
        and not isinstance(getattr(mltrail, name), type(mltrail))
    }


def test_exported_names_resolve():
    for name in mltrail.__all__:
        assert getattr(mltrail, name) is not None


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        mltrail.no_such_thing  # noqa: B018


def test_version_matches_the_installed_metadata():
    assert mltrail.__version__ == version("mltrail")


def test_import_mltrail_loads_no_heavy_module():
    code = (
        "import sys, mltrail; "
        "print(sorted(m for m in ('jsonschema', 'cryptography', 'nacl', 'rich', "
        "'click', 'yaml', 'sqlite3') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_verify_function_checks_a_real_home(tmp_path):
    mltrail.init_home(tmp_path / "home", env={})
    home = mltrail.open_home(tmp_path / "home", env={})
    home.ledger.append("note", {"text": "hello"})
    home.checkpoint()
    home.close()
    report = mltrail.verify(tmp_path / "home")
    assert report.ok
    assert report.records_checked == 2
