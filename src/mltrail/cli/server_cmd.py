"""``mltrail server``: serve the team ledgers of a PostgreSQL database over HTTP."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from mltrail.cli.output import emit_json, json_option
from mltrail.errors import ConfigError

__all__ = ["require_server_extra", "server"]


def require_server_extra() -> None:
    """Raise ConfigError naming the extra when FastAPI, uvicorn or psycopg is missing."""
    import importlib.util

    for module in ("fastapi", "uvicorn", "psycopg"):
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"the team server needs {module}, which is not installed",
                hint="pip install 'mltrail[server]'",
            )


@click.command()
@click.option(
    "--db",
    "url",
    required=True,
    envvar="MLTRAIL_SERVER_DB",
    help="postgresql:// URL the server connects with (the application role of "
    "`mltrail db init`; default: $MLTRAIL_SERVER_DB).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
@click.option(
    "--keys",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MLTRAIL_SERVER_KEYS",
    help="Folder of the ledgers' log keys, <ledger>.key "
    "(default: $MLTRAIL_HOME/server-keys). Password: $MLTRAIL_KEY_PASSWORD.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (appends of all workers queue on the ledger's lock).",
)
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="NAME=N",
    help="A bound of docs/server.md#limits, e.g. holds_per_user=4 (repeatable; "
    "default: $MLTRAIL_SERVER_LIMITS, comma-separated, over the documented defaults). "
    "Per user (429 past it), per ledger and per process (503): holds, "
    "holds_per_ledger, holds_per_user (run holds); verifies, verifies_per_ledger, "
    "verifies_per_user, verify_pause (POST /verify); large_bodies, "
    "large_bodies_per_user, large_body_bytes (bodies and answers from that size); "
    "error_lines, error_interval (log lines of a kind per interval).",
)
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))  # fmt: skip
@json_option
def server(
    url: str,
    host: str,
    port: int,
    keys: Path | None,
    workers: int,
    limits: tuple[str, ...],
    log_level: str,
    as_json: bool,
) -> None:
    """Run the team server: the API of docs/server.md under /api/v1.

    Plain HTTP: put it behind a TLS proxy (nginx, Caddy) for anything but
    127.0.0.1. Tokens come from `mltrail tokens create`.

    \b
    Examples:
      mltrail db init --db postgresql://postgres@db/audit --ledger team-a \\
          --origin example.com/team-a
      mltrail tokens create --db postgresql://postgres@db/audit --ledger team-a \\
          --role admin --name alice
      mltrail server --db postgresql://mltrail_app@db/audit --port 8080
    """
    require_server_extra()
    import uvicorn

    from mltrail.ledger.keystore import key_password, load_signer
    from mltrail.server.control import Control, default_keys_dir, load_log_key
    from mltrail.server.limits import LIMITS_ENV, parse_limits
    from mltrail.server.log_key import key_paths

    keys = keys or default_keys_dir()
    bounds = ",".join((os.environ.get(LIMITS_ENV, ""), *limits)).strip(",")
    try:
        parse_limits(bounds)
    except ValueError as e:
        raise ConfigError(str(e), hint="see docs/server.md#limits") from e
    control = Control(url)
    try:
        served = control.ledgers()
    except Exception as e:
        raise ConfigError(
            f"no mltrail server tables in {control.location}",
            hint="run `mltrail db init --db URL --ledger NAME --origin ORIGIN` first",
        ) from e
    finally:
        control.close()
    for row in served:  # fail now, not at the first request: key missing or locked
        key, new, _ = key_paths(keys, row.name)
        if key.exists() or not new.exists():
            load_log_key(keys, row.name)
        else:  # a rotation killed before its rename: the server takes it up
            load_signer(new, key_password())
    os.environ["MLTRAIL_SERVER_DB"] = url
    os.environ["MLTRAIL_SERVER_KEYS"] = str(keys)
    os.environ[LIMITS_ENV] = bounds
    address = f"http://{host}:{port}/api/v1"
    if as_json:  # where it listens, as JSON on stdout, before the server's log
        emit_json({"listening": address, "ledgers": [r.name for r in served]})
        sys.stdout.flush()
    else:
        names = ", ".join(r.name for r in served) or "none yet"
        click.echo(f"mltrail server on {address} (ledgers: {names})", err=True)
    uvicorn.run(
        "mltrail.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=log_level in ("info", "debug"),
        server_header=False,
    )
