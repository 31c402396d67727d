"""The public surface is curated: __all__ lists exactly the public names."""

import mltrail


def test_all_lists_every_public_name():
    public = sorted(
        name
        for name in vars(mltrail)
        if not name.startswith("_")
        and name
        not in {"annotations", "version", "TYPE_CHECKING", "PackageNotFoundError"}
        and not isinstance(getattr(mltrail, name), type(mltrail))
    )
    assert sorted(set(mltrail.__all__) - {"__version__"}) == public


def test_exported_names_resolve():
    for name in mltrail.__all__:
        assert getattr(mltrail, name) is not None


def test_verify_function_checks_a_real_home(tmp_path):
    mltrail.init_home(tmp_path / "home", env={})
    home = mltrail.open_home(tmp_path / "home", env={})
    home.ledger.append("note", {"text": "hello"})
    home.checkpoint()
    home.close()
    report = mltrail.verify(tmp_path / "home")
    assert report.ok
    assert report.records_checked == 2
