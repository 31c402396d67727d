"""Client mode: the ledger lives on an mltrail server, the home keeps the rest.

With ``MLTRAIL_URL`` (``https://host/ledgers/team-a``) and ``MLTRAIL_TOKEN``
set, or a home whose ``ledger.json`` names such a URL as its store, the home
keeps the user's own signing key, settings, the derived index (a cache synced
from the server's records, ``server-cache/<ledger>@<origin hash>.index.db``) and
the server trust (``server-trust/<ledger>@<origin hash>.json``: pinned log keys,
the server URLs that serve the log and the newest checkpoint seen, see
:mod:`mltrail.ledger.server_trust`). The ledger's store is an
:class:`~mltrail.storage.http.HttpStore`; its origin comes from the server, and
the actor's ``user`` is the identity the token names (the server refuses any
other). The OS account is kept beside it as ``actor.os_user``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mltrail.capture.machine.identity import capture_actor
from mltrail.config import SETTINGS_FILE, Settings
from mltrail.errors import ConfigError
from mltrail.ledger.stored import store_options
from mltrail.storage.registry import is_server_url, open_store
from mltrail.values import Value, replace

# `server_url` is asked on every open of a home: the ledger and the server trust
# are imported where a server's ledger is opened.
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from mltrail.core.signing import Signer
    from mltrail.ledger.ledger import Ledger
    from mltrail.ledger.server_trust import ServerTrust
    from mltrail.storage.http import HttpStore

__all__ = [
    "RemoteLedger",
    "client_settings",
    "open_remote_ledger",
    "server_url",
]

URL_ENV = "MLTRAIL_URL"
TRUST_KEY_ENV = "MLTRAIL_TRUST_KEY"
CACHE_DIR = "server-cache"


def server_url(env: Mapping[str, str], settings: Settings | None = None) -> str | None:
    """The server ledger URL this home works against, if any (client mode).

    ``MLTRAIL_URL`` first, then an http(s) ``MLTRAIL_STORE_URL``, then the
    store ``ledger.json`` names.
    """
    for url in (env.get(URL_ENV), env.get("MLTRAIL_STORE_URL")):
        if url and is_server_url(url):
            return url
    if settings is not None and is_server_url(settings.store):
        return settings.store
    return None


class RemoteLedger(Value):
    """A server's ledger opened for this client, with what was pinned for it."""

    __match_args__ = ("ledger", "trust", "store", "identity", "role")
    ledger: Ledger
    trust: ServerTrust
    store: HttpStore
    identity: str | None
    role: str | None

    def __init__(
        self,
        ledger: Ledger,
        trust: ServerTrust,
        store: HttpStore,
        identity: str | None,
        role: str | None,
    ) -> None:
        self.ledger = ledger
        self.trust = trust
        self.store = store
        self.identity = identity
        self.role = role

    @property
    def index_file(self) -> str:
        """The home's cache of the derived index of this log (one per trust
        file: two servers' ledgers of one name never share a cache)."""
        return f"{CACHE_DIR}/{self.trust.path.stem}.index.db"

    @property
    def witness_file(self) -> str:
        """A witness path no one writes: client mode keeps the newest checkpoint
        in the trust file instead (``Home`` checks ``trust`` first)."""
        from mltrail.ledger.server_trust import TRUST_DIR

        return f"{TRUST_DIR}/{self.trust.ledger}.no-witness"


def open_remote_ledger(
    home: Path,
    url: str,
    env: Mapping[str, str],
    signer: Signer | None,
    *,
    token: str | None = None,
    trust_keys: str | None = None,
) -> RemoteLedger:
    """Open the server ledger ``url`` names, pin or check its log keys and newest
    checkpoint in ``home``, and wrap it in a ``Ledger`` that signs with ``signer``.

    Raises:
        AuthError: the token is missing, unknown or lacks the role to read.
        IntegrityError: the server's keys or checkpoint contradict what was pinned.
        StoreError: the server cannot be reached.
        ConfigError: ``signer`` is given but the server does not say who the
            token belongs to.
    """
    from mltrail.ledger.keystore import make_private_folder
    from mltrail.ledger.ledger import Ledger
    from mltrail.ledger.server_trust import ServerTrust, parse_trust_keys
    from mltrail.storage.readonly import can_write

    token = token or env.get("MLTRAIL_TOKEN")
    if not token:
        from mltrail.errors import AuthError

        raise AuthError(
            f"{URL_ENV} names an mltrail server but MLTRAIL_TOKEN is not set",
            hint="ask the ledger's admin for a token (mltrail tokens create) and "
            "export MLTRAIL_TOKEN",
        )
    store: HttpStore = open_store(url, store_options(token=token))  # type: ignore[assignment]
    try:
        keys = parse_trust_keys(trust_keys or env.get(TRUST_KEY_ENV))
        make_private_folder(home)
        if can_write(home):  # a read-only home: its index is built in memory
            (home / CACHE_DIR).mkdir(exist_ok=True, mode=0o700)
        trust = ServerTrust.open(home, store, keys)
        info = store.info()
        identity = info.get("identity")
        if signer is not None and not identity:
            raise ConfigError(
                "the server does not say whose token this is, so entries cannot "
                "name their author",
                hint="upgrade the mltrail server",
            )
        ledger = Ledger(
            store,
            signer,
            origin=trust.origin,
            actor=client_actor(env, identity),
            trusted_key=trust.genesis_key,
            remote_trust=trust,
        )
    except BaseException:
        store.close()
        raise
    return RemoteLedger(ledger, trust, store, identity, info.get("role"))


def client_actor(env: Mapping[str, str], identity: str | None) -> dict[str, Any]:
    """The actor of entries written through a server: the token's identity as
    ``user``, the OS account as ``os_user``, plus uid, host and CI."""
    actor = capture_actor(env)
    if identity:
        actor["os_user"] = actor["user"]
        actor["user"] = identity
        actor.pop("claimed_user", None)
    return actor


def client_settings(home: Path, url: str, trust: ServerTrust) -> Settings:
    """The settings of a client-mode home: the home's own (its key, options)
    with the server's origin, URL and genesis key; a home with no
    ``ledger.json`` (an auditor who only reads) gets them alone."""
    from mltrail.storage.http import parse_server_url

    shown = parse_server_url(url).url
    if (home / SETTINGS_FILE).exists():
        settings = Settings.load(home)
        return replace(
            settings, origin=trust.origin, store=shown, trusted_key=trust.genesis_key
        )
    return Settings(trust.origin, shown, "", trust.genesis_key)
