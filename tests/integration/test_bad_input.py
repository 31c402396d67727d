"""Bounded reading of user files, and the run API refusing what the ledger cannot hold."""

import os
import threading
from pathlib import Path

import pytest

import mltrail
from mltrail.capture.run.params import load_config
from mltrail.capture.run.userfiles import read_user_file
from mltrail.errors import ConfigError, InputError, SchemaError
from mltrail.ledger.keystore import load_signer

# -- read_user_file ------------------------------------------------------------------


@pytest.mark.parametrize("regular_only", [True, False])
def test_a_file_up_to_the_limit_is_read_whole(tmp_path, regular_only):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_user_file(path, what="f", limit=100, regular_only=regular_only) == (
        b"x" * 100
    )
    assert read_user_file(path, what="f", limit=None) == b"x" * 100
    with pytest.raises(InputError, match=r"f .* is larger than the limit of 99 bytes"):
        read_user_file(path, what="f", limit=99, regular_only=regular_only)


def test_a_device_is_refused_or_read_only_up_to_the_limit():
    with pytest.raises(InputError, match="is a character device, not a regular file"):
        read_user_file("/dev/zero", what="key", limit=10)
    with pytest.raises(InputError, match="/dev/zero is larger than the limit of 10"):
        read_user_file("/dev/zero", what="body", limit=10, regular_only=False)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is a named pipe \\(FIFO\\)"):
        read_user_file(fifo, what="config file", limit=10)


def test_a_fifo_may_be_read_when_asked_for(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(b'{"text": "piped"}')

    writer = threading.Thread(target=write)
    writer.start()
    try:
        data = read_user_file(fifo, what="body", limit=100, regular_only=False)
    finally:
        writer.join()
    assert data == b'{"text": "piped"}'


@pytest.mark.parametrize("regular_only", [True, False])
def test_a_folder_or_a_missing_file_is_one_error(tmp_path, regular_only):
    with pytest.raises(InputError, match="is a directory"):
        read_user_file(tmp_path, what="f", limit=10, regular_only=regular_only)
    with pytest.raises(ConfigError, match=r"cannot read f .*No such file"):
        read_user_file(
            tmp_path / "nope", what="f", limit=10, regular_only=regular_only,
            error=ConfigError,
        )  # fmt: skip


def test_key_and_config_readers_refuse_special_files(tmp_path):
    with pytest.raises(ConfigError, match="signing key /dev/zero is a character"):
        load_signer(Path("/dev/zero"))
    fifo = tmp_path / "conf.yaml"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"config file .* named pipe"):
        load_config(fifo)


# -- the run API -----------------------------------------------------------------------


@pytest.mark.usefixtures("isolated_home")
def test_the_run_api_refuses_what_the_ledger_cannot_hold(tmp_path):
    deep: object = 1
    for _ in range(5000):
        deep = {"k": deep}
    with mltrail.start_run("limits", capture=False) as run:
        opened = mltrail.open_home(tmp_path / "home", writable=False, env={})
        before = opened.ledger.head().size
        with pytest.raises(
            SchemaError, match=r"params\.model\.k.* nests deeper than 200"
        ):
            run.log_params({"model": deep})
        with pytest.raises(SchemaError, match="bytes of canonical JSON"):
            run.log_params({f"p{i}": "x" * 100 for i in range(50_000)})
        with pytest.raises(SchemaError, match="nests deeper than 64"):
            run._writer.write([("note", {"text": "t", "deep": deep})])
        assert opened.ledger.head().size == before
        run.log_params({"lr": 0.1, "big": 2**60})  # ints beyond 2**53 become strings
        opened.close()
    opened = mltrail.open_home(tmp_path / "home", writable=False, env={})
    try:
        assert opened.verify().ok
    finally:
        opened.close()
