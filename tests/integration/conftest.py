"""Fixtures shared by the integration tests."""

import pytest


@pytest.fixture
def isolated_home(monkeypatch, tmp_path):
    """A fresh ledger home in tmp_path as $MLTRAIL_HOME, cwd there, no outer run."""
    for name in ("MLTRAIL_RUN_ID", "RANK", "WORLD_SIZE", "MLTRAIL_WITNESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLTRAIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"
