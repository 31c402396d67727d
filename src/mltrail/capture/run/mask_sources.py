"""Where a run's mask set comes from: its environment, arguments and config files.

At the start of a run, every value recognised as a secret is collected, with a
name for its marker, into a :class:`~mltrail.capture.run.mask.MaskSet`:

* every environment variable (not only those recorded): a secret name
  (``HF_TOKEN``, ``PGPASSWORD``), a credential-shaped value, the password and
  secret query values of a URL (``DATABASE_URL``) and the secret parts of a
  connection string (``AccountKey=…``), named after the variable;
* the command line (``capture.argv_secrets``): ``--password X``, ``-p X``,
  ``NAME=X``, secrets inside ``sh -c '…'``, named after the option;
* config files' flattened keys (``db.password``), named after the key.

A URL password also brings the Basic ``Authorization`` form of ``user:password``
(base64), which HTTP clients print in debug output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mltrail.capture.run.argv_secrets import redact_argv
from mltrail.capture.run.mask import MaskSet
from mltrail.capture.run.redact import redact_tree

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from mltrail.capture.run.allowlist import AllowList

__all__ = ["collect_mask_set", "named_secrets"]


def named_secrets(
    *,
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] = (),
    params: Iterable[Mapping[str, Any]] = (),
) -> list[tuple[str, str]]:
    """``(name, value)`` for every secret found in these sources."""
    named: list[tuple[str, str]] = []
    for name, value in (env or {}).items():
        named += [(name, s) for s in redact_tree({name: value}).secrets]
    named += _argv_secrets(argv)
    for flat in params:
        for key, value in flat.items():
            named += [(str(key), s) for s in redact_tree({key: value}).secrets]
    return named


def _argv_secrets(argv: Sequence[str]) -> list[tuple[str, str]]:
    secrets = redact_argv(argv).secrets
    return [(_option_of(argv, s), s) for s in secrets]


def _option_of(argv: Sequence[str], secret: str) -> str:
    """The option or variable a secret of ``argv`` was given to, else ``argv``."""
    for i, arg in enumerate(argv):
        if secret not in arg:
            continue
        name, eq, value = arg.partition("=")
        if eq and secret in value and name and " " not in name:
            return name
        if i and argv[i - 1].startswith("-") and arg == secret:
            return argv[i - 1]
        return "argv"
    return "argv"


def collect_mask_set(
    *,
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] = (),
    params: Iterable[Mapping[str, Any]] = (),
    allow: AllowList | None = None,
) -> MaskSet:
    """The mask set of a run with this environment, command and config params."""
    return MaskSet.build(named_secrets(env=env, argv=argv, params=params), allow)
