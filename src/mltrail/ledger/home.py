"""A ledger home on disk: create it, open it, verify it against trust anchors.

The home holds the store, the signing key and (by default) the witness file;
see :mod:`mltrail.ledger.witness`. Anything inside the home can be replaced by someone
who can write it, so verification says which anchors it used and warns when
none lies outside the home: a key pinned with ``--trust-key``, a checkpoint the
auditor kept (``--trust-checkpoint``), or a witness file elsewhere
(``MLTRAIL_WITNESS``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.capture.machine.identity import capture_actor
from mltrail.config import Settings, resolve_home
from mltrail.errors import ConfigError, IntegrityError, MltrailError, StoreError
from mltrail.ledger.ledger import Ledger
from mltrail.ledger.stored import store_options
from mltrail.ledger.witness import Witness
from mltrail.storage.readonly import can_write
from mltrail.storage.registry import (
    check_storable_url,
    display_url,
    is_file_store,
    open_store,
    sqlite_path,
)
from mltrail.values import Frozen, Value, replace

# What only writing, purging or verifying needs (keys, erasure, evidence,
# checkpoint parsing) is imported where it is used: a reading command such as
# `mltrail runs` starts in tens of milliseconds and pays for none of it.
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence

    from mltrail.core.checkpoint import SignedCheckpoint
    from mltrail.core.report import Anchor, Problem, VerificationReport
    from mltrail.evidence.policy import EvidencePolicy
    from mltrail.ledger.erasure import PurgeResult
    from mltrail.ledger.server_trust import ServerTrust

__all__ = [
    "Home",
    "InitResult",
    "init_home",
    "open_home",
    "verify_pinned",
]

DEFAULT_BUSY_TIMEOUT_S = 60.0


class Home(Value):
    """An opened ledger home: its path, settings, ledger and witness."""

    __match_args__ = (
        "path", "settings", "ledger", "witness", "busy_timeout", "trust", "index_file",
        "_synced", "_closed",
    )  # fmt: skip
    _shown = __match_args__[:7]  # not _synced, _closed
    path: Path
    settings: Settings
    ledger: Ledger
    witness: Witness
    busy_timeout: float
    """Seconds a write waits for another process's lock on the store; a run's end
    is retried for as long again (``MLTRAIL_BUSY_TIMEOUT``)."""

    trust: ServerTrust | None
    """Client mode: the server's pinned log keys and the newest checkpoint seen
    (the ledger lives on an mltrail server, see :mod:`mltrail.ledger.client_mode`)."""
    index_file: str
    """The derived index's file in the home (a per-ledger cache in client mode)."""

    _synced: int
    _closed: bool

    def __init__(
        self,
        path: Path,
        settings: Settings,
        ledger: Ledger,
        witness: Witness,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        trust: ServerTrust | None = None,
        index_file: str = "index.db",
        _synced: int = -1,
        _closed: bool = False,
    ) -> None:
        self.path = path
        self.settings = settings
        self.ledger = ledger
        self.witness = witness
        self.busy_timeout = busy_timeout
        self.trust = trust
        self.index_file = index_file
        self._synced = _synced
        self._closed = _closed

    def reload_signer(
        self, *, password: bytes | None = None, env: Mapping[str, str] | None = None
    ) -> bool:
        """Load the signing key ``ledger.json`` names now; True when it changed.

        Another process may have rotated the key (``mltrail keys rotate``) since
        this home was opened: appends signed by the old key are then refused.

        Raises:
            ConfigError: ledger.json or the key cannot be read.
        """
        from mltrail.ledger.keystore import load_signer

        env = os.environ if env is None else env
        settings = Settings.load(self.path)
        signer = load_signer(
            settings.path(self.path, settings.signing_key),
            _password(env, password),
            env=env,
        )
        old = self.ledger.signer
        self.settings = settings
        self.ledger.signer = signer
        self.ledger.keys()
        _take_up_rotated_key(self, password=password, env=env)
        return old is None or old.key_id != self.ledger.signer.key_id

    @property
    def witness_path(self) -> Path:
        """Where the witness checkpoint is kept."""
        return self.witness.path

    def checkpoint(self, *, adopt: bool = False) -> SignedCheckpoint:
        """The checked checkpoint of the whole ledger; the witness moves to it.

        See :meth:`mltrail.ledger.ledger.Ledger.checkpoint` (``adopt`` covers records
        an older mltrail left uncovered, after verifying the whole ledger).
        """
        signed = self.ledger.checkpoint(adopt=adopt and self.trust is None)
        if self.trust is not None:
            self.trust.accept(signed.to_text())
        else:
            self.witness.advance(self.ledger, signed)
        self._synced = signed.checkpoint.size
        return signed

    def purge_blob(
        self, blob: str, *, reason: str, policy: str | None = None
    ) -> PurgeResult:
        """Erase a blob's bytes after a signed ``blob.purged`` record says why.

        See :func:`mltrail.ledger.erasure.purge_blob`: ``blob`` is a digest or a unique
        prefix of 8+ hex digits; the hash cache's copies go too. The home is
        verified first (:meth:`verify`, its witness included): nothing is written
        or erased unless it is intact.
        """
        from mltrail.capture.data.hashcache import default_cache_path
        from mltrail.ledger.erasure import purge_blob

        cache = default_cache_path(self.path)
        return purge_blob(
            self.ledger,
            blob,
            reason=reason,
            policy=policy,
            cache_path=cache,
            verify=self.verify,
        )

    def finish_purges(self) -> list[PurgeResult]:
        """Finish the purges whose erasure was interrupted (``mltrail purge --resume``);
        the home is verified first when one is pending (see
        :func:`mltrail.ledger.erasure.finish_purges`)."""
        from mltrail.capture.data.hashcache import default_cache_path
        from mltrail.ledger.erasure import finish_purges

        return finish_purges(
            self.ledger, cache_path=default_cache_path(self.path), verify=self.verify
        )

    def verify(
        self,
        *,
        trust_keys: Collection[str] = (),
        trust_checkpoints: Sequence[tuple[str, str]] = (),
        progress: Callable[[int, int], None] | None = None,
        workers: int | None = None,
        evidence: EvidencePolicy | None = None,
        in_snapshot: Callable[[], None] | None = None,
    ) -> VerificationReport:
        """Verify the ledger against its own checkpoints and every anchor given.

        ``in_snapshot`` is called first thing in the store's snapshot the
        verification reads (after the anchors kept outside the store were
        read): what it reads is what the verification reads (``verify_pinned``).

        Args:
            trust_keys: key ids to trust instead of the genesis key named in
                ledger.json (which lies inside the home).
            trust_checkpoints: (where it came from, text) of checkpoints kept
                outside the home; the ledger must extend each of them.
            progress: called with (records done, total).
            workers: processes for signature checks.
            evidence: the TSA CAs and witness keys to check the store's
                timestamps and cosignatures against (see
                :mod:`mltrail.evidence.policy`; none: token times are unverified).
        """
        from mltrail.core.report import StoredCheckpoint
        from mltrail.evidence.policy import (
            EvidencePolicy,
            check_ledger_evidence,
            evidence_checkpoints,
        )

        if self.trust is not None:
            kept, notes = self.trust.for_verification(), []
            if self.witness.configured:  # MLTRAIL_WITNESS: read, never written
                named, named_notes = self.witness.for_verification()
                kept, notes = kept + named, named_notes
        else:
            kept, notes = self.witness.for_verification()
        trusted = [
            StoredCheckpoint(
                f"trusted checkpoint ({where})",
                _size_of(text),
                text,
                external=True,
                in_store=False,
            )
            for where, text in trust_checkpoints
        ]
        keys = tuple(trust_keys) or (self.settings.trusted_key,)
        from dataclasses import replace as replace_field  # EvidencePolicy

        policy = evidence or EvidencePolicy()
        if trust_checkpoints and policy.witness_keys:
            policy = replace_field(policy, notes=tuple(trust_checkpoints))
        if policy.now is None:  # a token signed after this clock is named
            policy = replace_field(policy, now=self.ledger.clock.now())
        store = self.ledger.store

        def verified() -> tuple[VerificationReport, list[StoredCheckpoint]]:
            if in_snapshot is not None:
                in_snapshot()
            witness = kept + evidence_checkpoints(store) + trusted
            report = self.ledger.verify(
                trusted_keys=keys, witness=witness, progress=progress, workers=workers
            )
            pinned = bool(trust_keys)
            anchor = _key_anchor(keys, pinned=pinned, client=self.trust)
            report.anchors.insert(0, anchor)
            report.problems.extend(notes)
            check_ledger_evidence(store, report, policy)
            return report, witness

        # the anchors kept outside were read first; the store is read next, in
        # one snapshot, which is at least as new as each of them (begun again
        # when found stale: everything in it is read again)
        report, kept = store.read_in_snapshot(verified)
        if not report.external_anchors:
            report.problems.append(_inside_only_warning())
        elif (
            all(a.kind == "key" for a in report.external_anchors)
            and not any(cp.external for cp in kept)
            and not policy.witness_keys
        ):  # no checkpoint from elsewhere was given (one that fails is an error)
            report.problems.append(_key_only_warning())
        return report

    def close(self) -> None:
        """Move the witness to the newest checkpoint if this session wrote, then close.

        Closing twice is harmless.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self.ledger.writes and self._synced != self.ledger.head().size:
                self.checkpoint()
        finally:
            self.ledger.close()


def verify_pinned(home: Home, **options: Any) -> VerificationReport:
    """``home.verify(**options)`` on the store itself (its derived columns, its
    evidence), then, when the ledger is intact, the check that it verified the
    records ``home``'s ledger is pinned to. A ledger not pinned yet is pinned in
    the snapshot the verification reads, after the anchors kept outside the
    store (a witness file) were read, so that an append by another process
    meanwhile is no reason to refuse, nor a witness newer than the store (and
    again in each new snapshot a verification found stale begins).

    Raises:
        IntegrityError: an intact ledger whose verified records are not the
            pinned ones.
        StoreError: the ledger grew between the pinning and the verification
            (run it again).
    """
    from mltrail.ledger.pinned import PinnedStore

    ledger = home.ledger
    store = ledger.store
    pinned = store if isinstance(store, PinnedStore) else None
    inner = store.inner if isinstance(store, PinnedStore) else store
    same_read = pinned is None  # pinned below, in the verification's snapshot

    def pin() -> None:  # again in each snapshot the verification begins
        nonlocal pinned
        if same_read:
            pinned = PinnedStore(inner)

    ledger.store = inner
    try:
        report = home.verify(in_snapshot=pin, **options)
    finally:
        ledger.store = pinned if pinned is not None else inner
    if pinned is None:  # the verification failed before the snapshot
        pinned = ledger.store = PinnedStore(inner)
    if report.ok:
        pinned.confirm(report, grown_ok=not same_read)
    return report


def _size_of(text: str) -> int:
    from mltrail.core.checkpoint import parse_signed_checkpoint

    try:
        return parse_signed_checkpoint(text).checkpoint.size
    except MltrailError:
        return 0  # the verifier reports it unreadable


def _key_anchor(
    keys: Sequence[str], *, pinned: bool, client: ServerTrust | None = None
) -> Anchor:
    from mltrail.core.report import Anchor

    names = ", ".join(f"{k[:16]}..." for k in keys)
    if client is not None and not pinned:
        return Anchor(
            "key",
            f"genesis key {names} pinned by this client ({client.pinned_by}) in "
            f"{client.path}, outside the server but inside this home (an auditor "
            "of the server pins its key with --trust-key)",
            True,
        )
    if pinned:
        return Anchor("key", f"key {names} (pinned with --trust-key)", True)
    return Anchor(
        "key", f"genesis key {names} named in ledger.json (inside the home)", False
    )


def _inside_only_warning() -> Problem:
    from mltrail.core.report import Problem, Severity

    return Problem(
        None,
        "anchors",
        "every trust anchor used lies inside the ledger home, so someone able to "
        "write the home could have replaced the ledger, or cut records from its "
        "end, without this being seen; verify with --trust-key (printed by "
        "`mltrail keys export`) or a checkpoint kept elsewhere (--trust-checkpoint, "
        "MLTRAIL_WITNESS)",
        Severity.WARNING,
    )


def _key_only_warning() -> Problem:
    from mltrail.core.report import Problem, Severity

    return Problem(
        None,
        "anchors",
        "the only trust anchor kept outside the home is a key: it proves which key "
        "signed these records, not that this is the ledger's newest state; whoever "
        "holds that key, or held it before it was revoked (a leaked key), can cut "
        "the ledger's end or fork it before the revocation and the copy verifies, "
        "since a copy that never holds the revocation cannot show it; pass a "
        "checkpoint kept elsewhere since the last rotation (--trust-checkpoint, "
        "MLTRAIL_WITNESS, --witness-key) to rule that out",
        Severity.WARNING,
    )


class InitResult(Frozen):
    """What ``init_home`` did."""

    __match_args__ = ("home", "created", "origin", "key_id", "store")
    home: Path
    created: bool
    origin: str
    key_id: str
    store: str
    """Where the ledger lives (a path in the home, or a URL without password)."""

    def __init__(
        self,
        home: Path,
        created: bool,
        origin: str,
        key_id: str,
        store: str = "ledger.db",
    ) -> None:
        object.__setattr__(self, "home", home)
        object.__setattr__(self, "created", created)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "key_id", key_id)
        object.__setattr__(self, "store", store)


def _password(env: Mapping[str, str], password: bytes | None) -> bytes | None:
    from mltrail.ledger.keystore import key_password

    return password if password is not None else key_password(env)


def _inside_git_work_tree(path: Path) -> Path | None:
    for parent in [path, *path.parents]:
        if (parent / ".git").exists():
            return parent
    return None


def init_home(
    home: str | Path | None = None,
    *,
    origin: str | None = None,
    key_path: Path | None = None,
    password: bytes | None = None,
    force: bool = False,
    env: Mapping[str, str] | None = None,
    store: str | None = None,
) -> InitResult:
    """Create a ledger home with a new (or given) key and its genesis record.

    Safe to run twice: an existing ledger is left as it is. The ledger lives in
    the store ``store`` names (a URL, see :mod:`mltrail.storage.registry`; else
    ``MLTRAIL_STORE_URL``, else ``ledger.db`` in the home); keys, settings and
    caches stay in the home either way.

    Raises:
        ConfigError: the home is inside a git work tree (unless ``force``), or the key
            cannot be read.
        InputError: ``store`` carries a password, or names an unknown kind of store.
    """
    import secrets

    from mltrail.ledger.keystore import (
        generate_signer,
        load_signer,
        make_private_folder,
        save_signer,
    )

    env = os.environ if env is None else env
    if store is not None:
        check_storable_url(store)
    from mltrail.ledger.client_mode import server_url

    remote = server_url({**env, "MLTRAIL_STORE_URL": store or ""})
    if remote is not None:
        return _init_client_home(
            home, remote, key_path, pw=password, env=env, force=force
        )
    url = store or env.get("MLTRAIL_STORE_URL") or "ledger.db"
    path = resolve_home(home, env).resolve()
    if (path / "ledger.json").exists():
        settings = Settings.load(path)
        return InitResult(
            path, False, settings.origin, settings.trusted_key, settings.store
        )
    work_tree = _inside_git_work_tree(path)
    if work_tree is not None and not force:
        raise ConfigError(
            f"refusing to create a ledger inside the git work tree {work_tree}",
            hint="keep the audit log apart from code and weights, or pass --force",
        )
    origin = origin or f"mltrail.local/{secrets.token_hex(8)}"
    witness = _witness(path, Settings(origin, "", "", ""), env)
    _refuse_foreign_witness(witness, origin)
    if witness.external:
        witness.check_writable()
    pw = _password(env, password)
    signer = load_signer(key_path, pw, env=env) if key_path else generate_signer()
    key_file = str(key_path.resolve()) if key_path else f"keys/{signer.key_id}.key"
    try:
        make_private_folder(path)
        if not key_path:
            save_signer(signer, path / key_file, pw)
    except OSError as e:
        raise ConfigError(
            f"cannot create the ledger home {path}: {e.strerror or e}",
            hint="point MLTRAIL_HOME (or --home) at a folder you can create and write",
        ) from e
    opened = open_store(url, store_options(create=True, base=path))
    if opened.head().size:
        opened.close()
        raise ConfigError(
            f"{opened.location} already holds records but {path / 'ledger.json'} "
            "is missing: an earlier init was interrupted, or another home uses it",
            hint="move the ledger aside (or use another database or schema) and "
            "run `mltrail init` again",
        )
    settings = Settings(
        origin=origin,
        store=display_url(url),
        signing_key=key_file,
        trusted_key=signer.key_id,
    )
    ledger = Ledger.create(opened, signer, origin=origin, actor=capture_actor(env))
    Home(path, settings, ledger, witness).checkpoint()
    settings.save(path)
    ledger.close()
    return InitResult(path, True, origin, signer.key_id, settings.store)


def _init_client_home(
    home: str | Path | None,
    url: str,
    key_path: Path | None,
    *,
    pw: bytes | None,
    env: Mapping[str, str],
    force: bool,
) -> InitResult:
    """Client mode: a home holding only the user's key and settings; the server's
    log keys are pinned on this first contact (nothing is written to the server:
    `mltrail keys register` registers the key)."""
    from mltrail.ledger.client_mode import client_settings, open_remote_ledger
    from mltrail.ledger.keystore import generate_signer, load_signer, save_signer

    path = resolve_home(home, env).resolve()
    if (path / "ledger.json").exists():
        settings = Settings.load(path)
        signer = load_signer(
            settings.path(path, settings.signing_key), _password(env, pw), env=env
        )
        return InitResult(path, False, settings.origin, signer.key_id, settings.store)
    work_tree = _inside_git_work_tree(path)
    if work_tree is not None and not force:
        raise ConfigError(
            f"refusing to create a ledger home inside the git work tree {work_tree}",
            hint="keep keys apart from code and weights, or pass --force",
        )
    password = _password(env, pw)
    signer = load_signer(key_path, password, env=env) if key_path else generate_signer()
    key_file = str(key_path.resolve()) if key_path else f"keys/{signer.key_id}.key"
    remote = open_remote_ledger(path, url, env, None)
    try:
        settings = replace(
            client_settings(path, url, remote.trust), signing_key=key_file
        )
        if not key_path:
            save_signer(signer, path / key_file, password)
        settings.save(path)
    finally:
        remote.ledger.close()
    return InitResult(path, True, settings.origin, signer.key_id, settings.store)


def _witness(home: Path, settings: Settings, env: Mapping[str, str]) -> Witness:
    """The witness file: ``MLTRAIL_WITNESS``, else the one ledger.json names.

    Only the first can be an anchor kept outside the home: ledger.json lies in
    the home, so whoever can write the home chooses the file it names, wherever
    that lies; and so can whoever plants a link in the home that the path
    named passes through.
    """
    override = env.get("MLTRAIL_WITNESS")
    path = (
        Path(override).expanduser()
        if override
        else settings.path(home, settings.witness)
    )
    external = bool(override) and not reached_through(path, home)
    return Witness(path, configured=bool(override), external=external)


def inside_folder(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` (links resolved)."""
    return path.resolve().is_relative_to(folder.resolve())


_MAX_LINKS = 40  # as the kernel's ELOOP limit


def reached_through(path: Path, folder: Path) -> bool:
    """Whether resolving ``path`` passes through ``folder``: the path itself, any
    link on the way, or the file finally read lies in it. A file outside a home
    reached through a link inside it is chosen by whoever can write the home."""
    inside = folder.resolve()
    pending, links = Path.cwd() / path, 0
    while True:
        current = Path(pending.anchor)
        parts = pending.parts[1:]
        for i, name in enumerate(parts):
            # every step before this one is a real folder: its parent is lexical
            current = current.parent if name == ".." else current / name
            if current.is_relative_to(inside):
                return True
            if current.is_symlink():
                links += 1
                if links > _MAX_LINKS:
                    return True  # no answer: trust it no more than the home
                pending = current.parent / os.readlink(current)
                pending = pending.joinpath(*parts[i + 1 :])
                break
        else:
            return False


def _refuse_foreign_witness(witness: Witness, origin: str) -> None:
    """Before creating a ledger: its witness file must not be another ledger's."""
    from mltrail.core.checkpoint import parse_signed_checkpoint

    text = witness.read()
    if text is None:
        return
    try:
        found = parse_signed_checkpoint(text).checkpoint.origin
    except MltrailError:
        found = None
    if found != origin:
        raise ConfigError(
            f"the witness file {witness.path} already holds a checkpoint of "
            f"{found or 'something else'!r}; refusing to overwrite it",
            hint="point MLTRAIL_WITNESS at a file of this ledger's own",
        )


def open_home(
    home: str | Path | None = None,
    *,
    writable: bool = True,
    password: bytes | None = None,
    env: Mapping[str, str] | None = None,
    finish_purges: bool = True,
) -> Home:
    """Open an existing ledger home (with its signing key when ``writable``).

    A writable home is checked before anything can be written: its head must
    be covered by a valid checkpoint whose root the stored tree gives, the
    ledger must extend its witness checkpoint (else it was rolled back or
    forked), and it must not hold records of a newer mltrail. A purge left
    unfinished (its record written, its bytes not yet erased) is finished then,
    unless ``finish_purges`` is False. A home this
    process may not write (a read-only mount, a ``chmod -R a-w`` copy, another
    account's folder) opens for reading and nothing is written into it.

    Raises:
        ConfigError: no ledger there, the key cannot be loaded, or the ledger
            was written by a newer mltrail (when ``writable``).
        IntegrityError: the ledger does not extend the witness (when ``writable``).
        StoreError: the store cannot be opened, or ``writable`` and the home is
            read-only.
    """
    env = os.environ if env is None else env
    path = resolve_home(home, env)
    from mltrail.ledger.client_mode import server_url

    has_settings = (path / "ledger.json").exists()
    remote = server_url(env, Settings.load(path) if has_settings else None)
    if remote is not None:
        return _open_client_home(path, remote, writable=writable, pw=password, env=env)
    settings = Settings.load(path)
    url = env.get("MLTRAIL_STORE_URL") or settings.store
    read_only = False
    if is_file_store(url):
        db = sqlite_path(url, path)
        read_only = db.exists() and not can_write(db)
    if writable and read_only:
        raise StoreError(
            f"the ledger home is read-only: {path}",
            hint="recording needs write access to it; reading commands (verify, "
            "log, show, runs, trace, ...) work as it is",
        )
    signer = None
    if writable:
        from mltrail.ledger.keystore import load_signer

        signer = load_signer(
            settings.path(path, settings.signing_key), _password(env, password), env=env
        )
    busy = _busy_timeout(env)
    store = open_store(
        url, store_options(busy_timeout=busy, read_only=read_only, base=path)
    )
    try:
        meta_origin = store.meta().get("origin")
        if meta_origin is not None and meta_origin != settings.origin:
            raise IntegrityError(
                f"ledger.json says origin {settings.origin} but the store holds "
                f"{meta_origin}: one of the two was edited",
                hint="the origin is signed into every checkpoint; verify a copy "
                "whose ledger.json names the store's origin, with --trust-key",
            )
        ledger = Ledger(
            store,
            signer,
            origin=settings.origin,
            actor=capture_actor(env),
            trusted_key=settings.trusted_key,
        )
        opened = Home(path, settings, ledger, _witness(path, settings, env), busy)
        if writable:
            _refuse_newer_format(ledger)
            ledger.check_head()
            _take_up_rotated_key(opened, password=password, env=env)
            opened.witness.check(ledger)
            if finish_purges:
                _finish_purges_quietly(opened)
    except BaseException:
        store.close()
        raise
    return opened


def _open_client_home(
    path: Path, url: str, *, writable: bool, pw: bytes | None, env: Mapping[str, str]
) -> Home:
    """Client mode (see :mod:`mltrail.ledger.client_mode`): the home's key and caches,
    the server's ledger, checked against the pinned keys and kept checkpoint."""
    from mltrail.ledger.client_mode import client_settings, open_remote_ledger

    signer = None
    if writable:
        from mltrail.ledger.keystore import load_signer

        if not (path / "ledger.json").exists():
            raise ConfigError(
                f"no signing key in {path} for writing to the server's ledger",
                hint="run `mltrail init` (with MLTRAIL_URL set, it makes a home "
                "holding only your key), then `mltrail keys register`",
            )
        settings = Settings.load(path)
        signer = load_signer(
            settings.path(path, settings.signing_key), _password(env, pw), env=env
        )
    remote = open_remote_ledger(path, url, env, signer)
    try:
        settings = client_settings(path, url, remote.trust)
        # the server's newest checkpoint is kept in the trust file; a witness
        # the auditor names (MLTRAIL_WITNESS) is one more anchor to verify
        # against, which client mode never writes
        witness = (
            _witness(path, settings, env)
            if env.get("MLTRAIL_WITNESS")
            else Witness(path / remote.witness_file)
        )
        opened = Home(
            path,
            settings,
            remote.ledger,
            witness,
            _busy_timeout(env),
            trust=remote.trust,
            index_file=remote.index_file,
        )
        if writable:
            _refuse_newer_format(remote.ledger)
            remote.ledger.check_head()
    except BaseException:
        remote.ledger.close()
        raise
    return opened


def _take_up_rotated_key(
    home: Home, *, password: bytes | None, env: Mapping[str, str]
) -> None:
    """Finish a key rotation that stopped after its records were stored.

    ``mltrail keys rotate`` writes the new key file, stores ``key.added`` and
    ``key.revoked``, then names the new key in ledger.json. Killed between the
    last two, it left ledger.json naming the revoked key: every append was
    refused, with no command to mend it. When the ledger (the key ring the head
    check read) revoked the key ledger.json names in exactly the records a
    rotation writes (:meth:`~mltrail.ledger.ledger.Ledger.rotate_key`: the new
    log key's ``key.added`` signed by the named key, then that key's
    ``key.revoked`` naming the new one as ``replaced_by``, signed by it), the
    new key is valid now and its file is at ``keys/<key id>.key``, that key is
    loaded and ledger.json names it. Anything else (a revocation signed by
    some other key, a key someone else added) is no rotation: nothing is taken
    up, and appends are refused as signed by a revoked key. The revoked key
    file is left where it is (the rotation may have been asked to move it);
    the next rotation destroys it.

    Raises:
        ConfigError, AuthError: that key file cannot be loaded.
    """
    ledger = home.ledger
    if ledger.signer is None or not ledger.signer_revoked():
        return
    from mltrail.ledger.keystore import load_signer

    key_id = ledger.rotated_to(ledger.signer.key_id)
    if key_id is None or key_id not in ledger.keys().valid_keys(ledger.head().size):
        return  # no rotation from this key: the append names the revoked key
    path = home.path / "keys" / f"{key_id}.key"
    if not path.exists():
        return
    signer = load_signer(path, _password(env, password), env=env)
    if signer.key_id != key_id:
        return
    ledger.signer = signer
    home.settings = Settings(
        **{**home.settings.__dict__, "signing_key": f"keys/{key_id}.key"}
    )
    home.settings.save(home.path)
    import logging

    logging.getLogger("mltrail").warning(
        "finished an interrupted key rotation: ledger.json now names key %s...",
        key_id[:16],
    )


def _finish_purges_quietly(home: Home) -> None:
    """Finish interrupted purges; one that still cannot be finished, or a
    ledger that fails verification (nothing is then erased), is logged, not
    raised (the write goes on; verification reports the purge as pending)."""
    import logging

    if all(p.erased for p in home.ledger.store.purges()):
        return
    try:
        home.finish_purges()
    except (StoreError, IntegrityError) as e:
        logging.getLogger("mltrail").warning("%s", e)


def _busy_timeout(env: Mapping[str, str]) -> float:
    """``MLTRAIL_BUSY_TIMEOUT`` (seconds), else the default.

    Raises:
        ConfigError: it is not a positive number.
    """
    text = env.get("MLTRAIL_BUSY_TIMEOUT")
    if not text:
        return DEFAULT_BUSY_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 10**6:
        raise ConfigError(
            f"MLTRAIL_BUSY_TIMEOUT={text!r} is not a number of seconds",
            hint="e.g. MLTRAIL_BUSY_TIMEOUT=60",
        )
    return value


def _refuse_newer_format(ledger: Ledger) -> None:
    """A ledger a newer mltrail wrote can be read and verified, never written."""
    from mltrail.core.codec import is_newer_version, parse_json

    found = ledger.store.meta().get("format")
    size = ledger.head().size
    if not is_newer_version(found) and size:
        for row in ledger.store.rows(size - 1, size):
            try:
                found = parse_json(row.data)["entry"]["v"]
            except (MltrailError, KeyError, TypeError):
                found = None
    if is_newer_version(found):
        raise ConfigError(
            f"this ledger was written by a newer mltrail (format {found}): this "
            "version can read and verify it, but will not write to it",
            hint="upgrade mltrail (pip install -U mltrail)",
        )
