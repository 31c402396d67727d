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


@pytest.fixture
def isolated_git(tmp_path, monkeypatch):
    """No user or system git config, main as the first branch, a fixed identity,
    no repository discovery above tmp_path, no git or run variables inherited."""
    config = tmp_path / "gitconfig"
    config.write_text("[init]\n\tdefaultBranch = main\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.com")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "MLTRAIL_RUN_ID", "RANK",
                 "WORLD_SIZE", "LOCAL_RANK", "MLTRAIL_WITNESS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real S3 server with Object Lock (SeaweedFS) on free 127.0.0.1 ports, for
    the whole session; skipped (failing under CI=true) without weed or boto3."""
    from optional_extras import require_extra
    from seaweedfs_server import SeaweedFS, find_weed

    require_extra("seal", "boto3")
    find_weed()
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def team_server():
    """A running `mltrail server` (ledgers team-a and team-b) in a throwaway
    database, for the whole session; see tests/server_fixture.py. Skipped
    (failing under CI=true) without PostgreSQL or mltrail[server]."""
    from optional_extras import require_extra
    from server_fixture import running_server

    require_extra("server", "fastapi", "uvicorn", "psycopg")
    with running_server() as server:
        yield server
