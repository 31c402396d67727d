"""home_folder is resolve_home as a str, without pathlib (ADR 0035)."""

from pathlib import Path

import pytest

from mltrail.home_dir import home_folder, resolve_home


@pytest.mark.parametrize(
    ("home", "env"),
    [
        (None, {}),
        (None, {"MLTRAIL_HOME": ""}),
        (None, {"MLTRAIL_HOME": "~/elsewhere"}),
        (None, {"MLTRAIL_HOME": "/abs/home/"}),
        ("rel/home", {"MLTRAIL_HOME": "/ignored"}),
        (Path("~/x"), {}),
        ("~", {}),
        ("", {}),
    ],
)
def test_home_folder_is_resolve_home(home, env):
    folder = home_folder(home, env)
    assert isinstance(folder, str)
    assert Path(folder) == resolve_home(home, env)
    expected = Path(home).expanduser() if home is not None else None
    if expected is None:
        given = env.get("MLTRAIL_HOME")
        expected = Path(given).expanduser() if given else Path.home() / ".mltrail"
    assert Path(folder) == expected  # as resolve_home was written with pathlib


def test_an_unknown_user_raises_as_pathlib_does():
    with pytest.raises(RuntimeError):
        Path("~no-such-user-mltrail/x").expanduser()
    with pytest.raises(RuntimeError):
        home_folder("~no-such-user-mltrail/x", {})
