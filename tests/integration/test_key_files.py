"""Private key files on a real file system: who may read them, who may swap them.

ADR 0003, amendment "private key files": like ssh, a private key file that
group or others can access, that another user owns, that sits in a folder
others can write, or that is a link another user made, is refused (exit 2,
naming the file and the fix) unless ``MLTRAIL_ALLOW_UNSAFE_KEY_FILE=1``; every
key mltrail writes is 0600 from its creation; destroying a key never writes
through a link.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from typing import TYPE_CHECKING

import pytest

from cli_runner import mltrail
from mltrail.errors import ConfigError
from mltrail.ledger.keystore import (
    COMMITMENT_KEY_FILE,
    destroy_key_file,
    generate_signer,
    load_commitment_key,
    load_signer,
    move_key_file,
    save_signer,
)
from mltrail.ledger.private_files import ALLOW_UNSAFE_ENV

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")

ALLOW = {ALLOW_UNSAFE_ENV: "1"}
as_root = pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0, reason="chown needs root"
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _key(folder: Path, name: str = "k.key", password: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    save_signer(generate_signer(), path, password)
    return path


# -- (a) the key file's own mode --------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660], ids=oct)
def test_a_key_file_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    key = _key(tmp_path / "keys")
    os.chmod(key, mode)
    with pytest.raises(ConfigError) as caught:
        load_signer(key, env={})
    assert str(caught.value) == (
        f"signing key {key} has mode {mode:04o}: other users can access it "
        "(a private key must be readable by its owner only)"
    )
    assert caught.value.hint is not None
    assert caught.value.hint.startswith(f"chmod 600 {key} (or set {ALLOW_UNSAFE_ENV}=1")


def test_an_encrypted_key_file_is_held_to_the_same_rule(tmp_path: Path) -> None:
    key = _key(tmp_path / "keys", password=b"secret")
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="has mode 0644"):
        load_signer(key, b"secret", env={})
    os.chmod(key, 0o600)
    assert load_signer(key, b"secret", env={}).key_id


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=oct)
def test_a_key_file_only_its_owner_can_read_is_used(tmp_path: Path, mode: int) -> None:
    key = _key(tmp_path / "keys")
    os.chmod(key, mode)
    assert load_signer(key, env={}).key_id


def test_the_escape_hatch_uses_it_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = _key(tmp_path / "keys")
    os.chmod(key, 0o644)
    with caplog.at_level(logging.WARNING, logger="mltrail"):
        signer = load_signer(key, env=ALLOW)
    assert signer.key_id
    assert "has mode 0644" in caplog.text
    assert f"used anyway because {ALLOW_UNSAFE_ENV}=1" in caplog.text


def test_the_cli_refuses_an_open_key_file_and_names_the_fix(tmp_path: Path) -> None:
    key = _key(tmp_path / "keys")
    os.chmod(key, 0o644)
    home = tmp_path / "home"
    refused = mltrail(home, "init", "--key", str(key))
    assert refused.returncode == 2, refused.stderr
    assert f"signing key {key} has mode 0644" in refused.stderr
    assert f"chmod 600 {key}" in refused.stderr
    assert not (home / "ledger.json").exists()
    allowed = mltrail(home, "init", "--key", str(key), env=ALLOW)
    assert allowed.returncode == 0, allowed.stderr
    assert f"used anyway because {ALLOW_UNSAFE_ENV}=1" in allowed.stderr


def test_a_home_whose_key_file_was_opened_up_refuses_to_write(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert mltrail(home, "init").returncode == 0
    [key] = (home / "keys").glob("*.key")
    os.chmod(key, 0o644)
    proc = mltrail(home, "append", "--kind", "note", "--body", '{"text": "x"}')
    assert proc.returncode == 2, proc.stderr
    assert f"chmod 600 {key}" in proc.stderr
    assert mltrail(home, "verify").returncode == 0  # reading needs no key


def test_an_open_commitment_key_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    load_commitment_key(home)
    os.chmod(home / COMMITMENT_KEY_FILE, 0o644)
    with pytest.raises(ConfigError, match=r"commitment key .* has mode 0644"):
        load_commitment_key(home)


# -- every key mltrail writes is 0600 from the start ------------------------------


def test_every_key_mltrail_writes_is_0600_even_with_umask_0(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        key = _key(tmp_path / "a")
        moved = tmp_path / "b" / "moved.key"
        move_key_file(_key(tmp_path / "a", "m.key"), moved)
        load_commitment_key(tmp_path / "home")
        home = tmp_path / "cli-home"
        assert mltrail(home, "init").returncode == 0
        out = tmp_path / "bob.key"
        assert mltrail(home, "keys", "new", "--out", str(out)).returncode == 0
        witness = tmp_path / "w.key"
        assert (
            mltrail(home, "witness", "keygen", "--name", "w.example/1", "-o",
                    str(witness)).returncode == 0
        )  # fmt: skip
        assert mltrail(home, "keys", "rotate", "--reason", "test").returncode == 0
    finally:
        os.umask(old)
    files = [key, moved, tmp_path / "home" / COMMITMENT_KEY_FILE, out, witness]
    files += list((home / "keys").iterdir())
    assert len(files) == 6
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert _mode(home / "keys") == 0o700


# -- (b) links and folders ----------------------------------------------------


def test_a_link_of_your_own_to_a_safe_key_is_followed(tmp_path: Path) -> None:
    key = _key(tmp_path / "vault")
    link = tmp_path / "keys" / "k.key"
    link.parent.mkdir()
    link.symlink_to(key)
    assert load_signer(link, env={}).key_id == load_signer(key, env={}).key_id


def test_a_link_to_an_open_key_is_refused_naming_the_link(tmp_path: Path) -> None:
    key = _key(tmp_path / "vault")
    os.chmod(key, 0o644)
    link = tmp_path / "k.key"
    link.symlink_to(key)
    with pytest.raises(
        ConfigError, match=re.escape(f"signing key {link} has mode 0644")
    ):
        load_signer(link, env={})


@pytest.mark.parametrize("mode", [0o777, 0o702, 0o757], ids=oct)
def test_a_key_in_a_folder_others_can_write_is_refused(
    tmp_path: Path, mode: int
) -> None:
    key = _key(tmp_path / "keys")
    os.chmod(key.parent, mode)
    with pytest.raises(ConfigError) as caught:
        load_signer(key, env={})
    assert str(caught.value) == (
        f"signing key {key} lies in {key.parent}, which other users can write "
        f"(mode {mode:04o}): they can swap the key"
    )
    assert caught.value.hint is not None
    assert caught.value.hint.startswith(f"chmod o-w,g-w {key.parent}")


def test_a_key_in_a_folder_its_group_can_write_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = _key(tmp_path / "keys")
    os.chmod(key.parent, 0o770)  # what umask 002 makes
    with caplog.at_level(logging.WARNING, logger="mltrail"):
        assert load_signer(key, env={}).key_id
    assert f"lies in {key.parent}, which its group can write (mode 0770)" in (
        caplog.text
    )
    assert f"chmod g-w {key.parent}" in caplog.text


def test_a_sticky_folder_like_tmp_is_accepted(tmp_path: Path) -> None:
    key = _key(tmp_path / "shared")
    os.chmod(key.parent, 0o1777)
    assert load_signer(key, env={}).key_id


def test_a_link_into_a_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    key = _key(tmp_path / "open")
    os.chmod(key.parent, 0o777)
    link = tmp_path / "keys" / "k.key"
    link.parent.mkdir()
    link.symlink_to(key)
    with pytest.raises(
        ConfigError, match=re.escape(f"lies in {key.parent}, which other")
    ):
        load_signer(link, env={})


@as_root
def test_a_key_file_of_another_user_is_refused(tmp_path: Path) -> None:
    key = _key(tmp_path / "keys")
    os.chown(key, 4321, -1)
    with pytest.raises(ConfigError, match="belongs to uid 4321, not to you"):
        load_signer(key, env={})


@as_root
def test_a_link_another_user_made_is_refused(tmp_path: Path) -> None:
    key = _key(tmp_path / "vault")
    link = tmp_path / "keys" / "k.key"
    link.parent.mkdir()
    link.symlink_to(key)
    os.lchown(link, 4321, -1)
    with pytest.raises(ConfigError, match="is a symbolic link made by uid 4321"):
        load_signer(link, env={})


@as_root
def test_a_key_in_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    key = _key(tmp_path / "keys")
    os.chown(key.parent, 4321, -1)
    with pytest.raises(
        ConfigError, match=re.escape(f"lies in {key.parent}, which belongs to")
    ):
        load_signer(key, env={})


# -- destroying a key never writes through a link ---------------------------------


def test_destroying_a_link_leaves_its_target_alone(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_bytes(b"not a key")
    link = tmp_path / "k.key"
    link.symlink_to(victim)
    destroy_key_file(link)
    assert not link.is_symlink()
    assert victim.read_bytes() == b"not a key"


def test_destroying_a_hard_link_leaves_the_other_name_alone(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_bytes(b"not a key")
    link = tmp_path / "k.key"
    os.link(victim, link)
    destroy_key_file(link)
    assert not link.exists()
    assert victim.read_bytes() == b"not a key"


def test_a_link_planted_in_keys_survives_a_rotation_sweep(tmp_path: Path) -> None:
    """keys/<revoked id>.key planted as a link to another file: the sweep of
    revoked keys after the next rotation removes the link, not the file."""
    home = tmp_path / "home"
    assert mltrail(home, "init").returncode == 0
    [first] = (home / "keys").glob("*.key")
    assert mltrail(home, "keys", "rotate", "--reason", "one").returncode == 0
    victim = tmp_path / "precious.txt"
    victim.write_bytes(b"precious")
    first.symlink_to(victim)  # the revoked key's name, now a link
    done = mltrail(home, "keys", "rotate", "--reason", "two", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["swept"] == [str(first)]
    assert not first.is_symlink()
    assert victim.read_bytes() == b"precious"


# -- (c) what mltrail creates around a new key, and what it finds in its place ---


def _made_folders(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): _mode(p)
        for p in sorted(root.rglob("*"))
        if p.is_dir()
    }


def test_no_folder_mltrail_makes_for_a_key_is_writable_by_others_with_umask_0(
    tmp_path: Path,
) -> None:
    old = os.umask(0)
    try:
        home = tmp_path / "h" / "i" / "home"
        assert mltrail(home, "init").returncode == 0
        out = tmp_path / "a" / "b" / "bob.key"
        assert mltrail(home, "keys", "new", "--out", str(out)).returncode == 0
        witness = tmp_path / "w" / "x" / "w.key"
        assert (
            mltrail(home, "witness", "keygen", "--name", "w.example/1", "-o",
                    str(witness)).returncode == 0
        )  # fmt: skip
        moved = tmp_path / "m" / "n" / "old.key"
        rotated = mltrail(home, "keys", "rotate", "--move-old-key", str(moved))
        assert rotated.returncode == 0, rotated.stderr
    finally:
        os.umask(old)
    folders = _made_folders(tmp_path)  # the home's inside is behind its 0700
    outside = {n: m for n, m in folders.items() if not n.startswith("h/i/home/")}
    assert {"h", "h/i", "a", "a/b", "w", "w/x", "m", "m/n"} <= set(outside)
    assert {n: oct(m) for n, m in outside.items() if m & 0o022} == {}
    for key in (out, witness, moved):
        assert _mode(key) == 0o600
        assert _mode(key.parent) == 0o700
    assert _mode(home) == 0o700
    assert _mode(home / "keys") == 0o700


@pytest.mark.parametrize("command", ["keys new", "witness keygen"])
def test_a_dangling_link_where_a_new_key_goes_is_refused_without_a_traceback(
    tmp_path: Path, command: str
) -> None:
    target = tmp_path / "elsewhere" / "planted"
    target.parent.mkdir()
    link = tmp_path / "new.key"
    link.symlink_to(target)
    args = {
        "keys new": ("keys", "new", "--out", str(link)),
        "witness keygen": (
            "witness",
            "keygen",
            "--name",
            "w.example/1",
            "-o",
            str(link),
        ),
    }[command]
    proc = mltrail(tmp_path / "home", *args)
    assert proc.returncode == 2, proc.stderr
    assert f"{link} is already a symbolic link" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not target.exists()


def test_a_rotation_refuses_a_dangling_link_as_the_old_keys_place_before_rotating(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    assert mltrail(home, "init").returncode == 0
    target = tmp_path / "planted"
    link = tmp_path / "old.key"
    link.symlink_to(target)
    proc = mltrail(home, "keys", "rotate", "--move-old-key", str(link))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not target.exists()
    listed = mltrail(home, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [k["revoked_seq"] for k in json.loads(listed.stdout)] == [None]


def test_a_commitment_key_being_written_is_never_read_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two first runs of a fresh home make the commitment key at once: the one
    that arrives while the other writes it must get the whole key, not an empty
    file ("not a commitment key (0 bytes)")."""
    home = tmp_path / "home"
    real_fdopen = os.fdopen
    arrived: list[bytes] = []

    def other_process_arrives(fd: int, *args: object, **kwargs: object) -> object:
        if not arrived:  # once: while the first writer holds its file open
            arrived.append(b"")
            arrived.append(load_commitment_key(home).secret)
        return real_fdopen(fd, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "fdopen", other_process_arrives)
    first = load_commitment_key(home)
    monkeypatch.undo()
    assert arrived[1] == first.secret == load_commitment_key(home).secret
    assert [p.name for p in (home / "keys").iterdir()] == ["commitment.hmac-key"]
    assert _mode(home / COMMITMENT_KEY_FILE) == 0o600


def test_a_commitment_key_is_made_where_hard_links_are_not_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    made = load_commitment_key(tmp_path / "home")
    monkeypatch.undo()
    assert load_commitment_key(tmp_path / "home").secret == made.secret
    assert [p.name for p in (tmp_path / "home" / "keys").iterdir()] == [
        "commitment.hmac-key"
    ]
    assert _mode(tmp_path / "home" / COMMITMENT_KEY_FILE) == 0o600
