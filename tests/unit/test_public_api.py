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


def test_ledger_package_exports_the_ledger_names_on_first_use():
    code = (
        "import sys, mltrail.ledger.keystore; "
        "print('mltrail.ledger.ledger' in sys.modules); "
        "from mltrail.ledger import (BlobPurgedError, Clock, Draft, Ledger, "  # regroup: keep
        "SystemClock, UncoveredRecordsError); "
        "print(Ledger.__module__, Draft.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [
        "False",
        "mltrail.ledger.ledger",
        "mltrail.ledger.ledger",
    ]


def test_audit_stays_callable_once_its_package_is_imported(tmp_path):
    # Importing any module of mltrail/audit/ binds the package to mltrail.audit,
    # the name of the function that opens an Audit.
    mltrail.init_home(tmp_path / "home", env={})
    code = (
        "import sys, mltrail, mltrail.audit.query\n"
        "print(type(mltrail.audit).__name__)\n"
        "with mltrail.audit(sys.argv[1]) as a:\n"
        "    print(type(a).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "home")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["_CallablePackage", "Audit"]
