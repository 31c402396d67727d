"""Hyperparameters from a command line and from config files, values keeping their types.

:func:`split_command` finds where the program ends in a command (``python -u train.py``,
``torchrun --nproc-per-node 8 train.py``); :func:`parse_argv` reads the arguments after
it (``--lr 0.1``, ``--layers 64 128``, Hydra ``model.depth=12``); :func:`load_config`
reads a YAML, JSON or TOML file into flat dotted keys::

    >>> args = ["--lr=1e-3", "--layers", "64", "128", "+model.depth=12", "~seed"]
    >>> parsed = parse_argv(args, cwd=Path())
    >>> parsed.params, parsed.removed
    ({'lr': 0.001, 'layers': [64, 128], 'model.depth': 12}, ['seed'])
    >>> flatten({"optimizer": {"lr": 0.1, "betas": [0.9, 0.99]}})
    {'optimizer.lr': 0.1, 'optimizer.betas': [0.9, 0.99]}

Without the program's own parser, arguments are read by convention, and some forms
are ambiguous; each choice is documented where it is made. Every value returned
has been through :func:`json_safe`, so it can be written as canonical JSON. Nothing
here redacts: pass the results through :mod:`mltrail.capture.run.redact` before storing.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal

from mltrail.capture.run.values import _FLOAT, _INT, coerce_value
from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "MAX_CONFIG_BYTES",
    "ConfigFile",
    "ParsedArgs",
    "coerce_value",
    "flatten",
    "json_safe",
    "load_config",
    "parse_argv",
    "parse_config",
    "split_command",
]

# --- splitting a command ------------------------------------------------------------

_PYTHON = re.compile(r"(?:python|pypy)(?:[0-9]+(?:\.[0-9]+)*)?[mwt]?(?:\.exe)?")
_PYTHON_VALUE_LETTERS = "mcWX"  # -m module, -c code, -W arg, -X opt
_PYTHON_LONG_VALUE_OPTIONS = frozenset({"--check-hash-based-pycs"})
# Launchers that run a script after their own options: name -> words before options.
_LAUNCHERS = {"torchrun": 1, "deepspeed": 1}
_LAUNCHER_MODULES = frozenset(
    {
        "torch.distributed.run",
        "torch.distributed.launch",
        "accelerate.commands.launch",
        "deepspeed.launcher.runner",
    }
)
# Launcher options, written with ``_`` (``--nproc-per-node`` is ``nproc_per_node``).
# An option in neither table takes the next token as its value unless that token
# is an option or ends in ``.py`` (then it is the script).
_LAUNCHER_FLAGS = frozenset(
    {
        "standalone", "no_python", "module", "m", "run_path", "use_env", "multi_gpu",
        "cpu", "use_deepspeed", "use_fsdp", "use_megatron_lm", "tpu", "debug",
        "quiet", "q", "no_local_rank", "force_multi", "elastic_training",
        "bind_cores_to_rank", "help", "h",
    }
)  # fmt: skip
_LAUNCHER_VALUE_OPTIONS = frozenset(
    {
        # torchrun
        "nnodes", "nproc_per_node", "node_rank", "master_addr", "master_port",
        "rdzv_backend", "rdzv_endpoint", "rdzv_id", "rdzv_conf", "max_restarts",
        "monitor_interval", "start_method", "role", "log_dir", "redirects", "r",
        "tee", "t", "local_addr", "logs_specs", "local_ranks_filter",
        # accelerate launch
        "config_file", "num_processes", "num_machines", "machine_rank",
        "main_process_ip", "main_process_port", "mixed_precision", "gpu_ids",
        "dynamo_backend", "deepspeed_config_file", "zero_stage",
        "gradient_accumulation_steps", "num_cpu_threads_per_process",
        # deepspeed
        "num_gpus", "num_nodes", "hostfile", "include", "exclude", "launcher",
        "launcher_args", "ssh_port", "autotuning", "min_elastic_nodes",
        "max_elastic_nodes", "bind_core_list",
    }
)  # fmt: skip


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``argv`` as (program part, argument part).

    ``python [options] script.py args`` and ``python -m module args``: the program
    part runs up to and including the script or module (``-c code`` likewise).
    ``torchrun``, ``deepspeed``, ``accelerate launch`` and ``python -m
    torch.distributed.run`` (and friends): up to and including the script after the
    launcher's options. Anything else: the program is ``argv[0]``.
    """
    argv = list(argv)
    if not argv:
        return [], []
    end = _program_end(argv)
    return argv[:end], argv[end:]


def _program_end(argv: list[str]) -> int:
    name = PurePath(argv[0]).name
    if _PYTHON.fullmatch(name):
        return _python_end(argv)
    if name in _LAUNCHERS:
        return _launcher_end(argv, _LAUNCHERS[name])
    if name == "accelerate" and argv[1:2] == ["launch"]:
        return _launcher_end(argv, 2)
    return 1


def _python_end(argv: list[str]) -> int:
    i = 1
    while i < len(argv):
        tok = argv[i]
        if tok == "-" or not tok.startswith("-"):
            return i + 1  # the script (``-`` reads it from stdin)
        if tok.startswith("--"):
            i += 2 if tok in _PYTHON_LONG_VALUE_OPTIONS else 1
            continue
        letter, attached = _python_cluster(tok)
        value_index = i if attached else i + 1
        if letter in ("m", "c"):
            module = attached or (argv[i + 1] if i + 1 < len(argv) else "")
            if letter == "m" and module in _LAUNCHER_MODULES:
                return _launcher_end(argv, value_index + 1)
            return min(value_index + 1, len(argv))
        i = value_index + 1 if letter else i + 1
    return len(argv)


def _python_cluster(tok: str) -> tuple[str, str]:
    """The first value-taking letter in ``-uBm`` style flags, and any attached value."""
    for j, ch in enumerate(tok[1:], start=2):
        if ch in _PYTHON_VALUE_LETTERS:
            return ch, tok[j:]
    return "", ""


def _launcher_end(argv: list[str], start: int) -> int:
    i = start
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            return min(i + 2, len(argv))
        if not tok.startswith("-"):
            return i + 1  # the script (or module, or program with --no-python)
        i += 2 if _launcher_takes_value(tok, argv[i + 1 : i + 2]) else 1
    return len(argv)


def _launcher_takes_value(tok: str, following: list[str]) -> bool:
    name = tok.lstrip("-").replace("-", "_")
    if "=" in tok or name in _LAUNCHER_FLAGS:
        return False
    if name in _LAUNCHER_VALUE_OPTIONS:
        return True
    nxt = following[0] if following else "-"
    return not (nxt.startswith("-") or nxt.endswith(".py"))


# --- values (coerce_value: mltrail.capture.run.values, re-exported) -----------------

_MAX_SAFE_INT = 2**53 - 1


def json_safe(value: Any) -> Any:
    """``value`` made storable as canonical JSON.

    NaN/inf -> ``"nan"``/``"inf"``/``"-inf"``; ints beyond +-(2**53-1) -> decimal
    strings (``0x…`` hex past Python's 4300-digit conversion limit); date/datetime/
    time -> ISO 8601; bytes -> ``"base64:<...>"``; tuples -> lists, sets -> lists
    sorted by ``repr``; non-str dict keys -> ``str(key)`` (so ``1`` and ``"1"``
    collide, the later wins); strings with lone surrogates (undecodable argv bytes) ->
    the surrogates written as ``\\udcxx``; anything else -> ``repr``.
    The input must be acyclic.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, int):
        return int(value) if abs(value) <= _MAX_SAFE_INT else _big_int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    return _json_safe_other(value)


def _big_int(value: int) -> str:
    try:
        return str(value)
    except ValueError:  # beyond sys.get_int_max_str_digits(): hex has no limit
        return hex(value)


def _json_safe_other(value: Any) -> Any:
    if isinstance(value, date | time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {_json_str(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, set | frozenset):
        return [json_safe(v) for v in sorted(value, key=repr)]
    return _json_str(repr(value))


def _json_str(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return str(text)


# --- argv ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedArgs:
    """A command's arguments read as hyperparameters.

    ``params``: key (as written, minus leading ``-``/``+``) -> typed value;
    ``positional``: arguments that are neither options nor overrides; ``removed``: Hydra
    ``~key`` deletions; ``config_files``: existing .yaml/.yml/.json/.toml files named
    by an argument or option value (``cwd / value``), de-duplicated, in order.
    """

    params: dict[str, Any]
    positional: list[str]
    removed: list[str]
    config_files: list[Path]


_OVERRIDE = re.compile(
    r"(?:\+\+|\+)?(?P<key>[A-Za-z_][\w.\-/@]*)=(?P<value>.*)", re.DOTALL
)
_REMOVAL = re.compile(r"~(?P<key>[A-Za-z_][\w.\-/@]*)(?:=.*)?", re.DOTALL)
_CONFIG_SUFFIXES: dict[str, Literal["yaml", "json", "toml"]] = {
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".toml": "toml",
}


@dataclass
class _Reader:
    """What parse_argv has read so far."""

    occurrences: dict[str, list[Any]] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # where config files may be named

    def add(self, key: str, value: Any) -> None:
        self.occurrences.setdefault(key, []).append(json_safe(value))


def _is_option(tok: str) -> bool:
    """``-x``/``--x``; ``-0.1`` and ``-5`` are negative numbers, ``-`` is stdin."""
    return (
        len(tok) > 1
        and tok[0] == "-"
        and not _FLOAT.fullmatch(tok)
        and not _INT.fullmatch(tok)
    )


def _is_value(tok: str) -> bool:
    return not (
        tok == "--"
        or _is_option(tok)
        or _OVERRIDE.fullmatch(tok)
        or _REMOVAL.fullmatch(tok)
    )


def parse_argv(args: Sequence[str], *, cwd: Path) -> ParsedArgs:
    """Read a command's arguments (after the program, see :func:`split_command`).

    Forms: ``--lr 0.1``, ``--lr=0.1``, single-dash ``-lr 0.1`` (any option may have one
    or two dashes; ``-abc`` alone is the flag ``abc``, never split into ``-a -b -c``),
    flags ``--verbose`` -> True and ``--no-cuda`` -> ``{"no-cuda": True}``, Hydra
    ``key=value``, ``+key=value``, ``++key=value``, ``~key`` (-> ``removed``), and
    ``--`` (everything after it is positional). ``--lr -0.1``: negative numbers are
    values. Repeated options give the list of their values in order.

    Ambiguities, decided: every consecutive non-option token after a space-separated
    option belongs to it (one -> that value, several -> a list: ``--layers 64 128``),
    so positionals are only those before the first option or after ``--``; a
    ``key=value`` or ``~key`` token is an override, never the value of the option
    before it (write ``--opt=a=b`` to pass ``a=b``).
    """
    reader = _Reader()
    args = list(args)
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            reader.positional += args[i + 1 :]
            reader.texts += args[i + 1 :]
            break
        i = (
            _read_option(args, i, reader)
            if _is_option(tok)
            else _read_word(args, i, reader)
        )
    return _finish(reader, cwd)


def _read_option(args: list[str], i: int, reader: _Reader) -> int:
    key, eq, text = args[i].lstrip("-").partition("=")
    if not key:  # ``---`` or ``--=x``: not an option after all
        reader.positional.append(args[i])
        reader.texts.append(args[i])
        return i + 1
    if eq:
        reader.add(key, coerce_value(text))
        reader.texts.append(text)
        return i + 1
    j = i + 1
    while j < len(args) and _is_value(args[j]):
        j += 1
    values = args[i + 1 : j]
    reader.texts += values
    if not values:
        reader.add(key, True)
    else:
        typed = [coerce_value(v) for v in values]
        reader.add(key, typed[0] if len(typed) == 1 else typed)
    return j


def _read_word(args: list[str], i: int, reader: _Reader) -> int:
    tok = args[i]
    if m := _OVERRIDE.fullmatch(tok):
        reader.add(m["key"], coerce_value(m["value"]))
        reader.texts.append(m["value"])
    elif m := _REMOVAL.fullmatch(tok):
        reader.removed.append(m["key"])
    else:
        reader.positional.append(tok)
        reader.texts.append(tok)
    return i + 1


def _finish(reader: _Reader, cwd: Path) -> ParsedArgs:
    params = {k: v[0] if len(v) == 1 else v for k, v in reader.occurrences.items()}
    return ParsedArgs(
        params=params,
        positional=reader.positional,
        removed=reader.removed,
        config_files=_config_files(reader.texts, cwd),
    )


def _config_files(texts: list[str], cwd: Path) -> list[Path]:
    found: dict[Path, Path] = {}
    for text in texts:
        if PurePath(text).suffix.lower() not in _CONFIG_SUFFIXES:
            continue
        path = cwd / text
        try:
            if path.is_file():
                found.setdefault(path.resolve(), path)
        except (OSError, ValueError):  # unreadable, or a NUL in the name
            continue
    return list(found.values())


# --- config files -------------------------------------------------------------------

_MAX_NODES = 1_000_000  # YAML aliases can expand a small file into billions of values
_MAX_DEPTH = 200
MAX_CONFIG_BYTES = 8 * 2**20
"""Config files are read only up to this size (their params go inline in an entry)."""


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """One config file: where, what format, its SHA-256 and size, and its flat params.

    ``data`` is the raw content; the recorder masks it (``capture.guard``) before
    storing it as a blob.
    """

    path: str
    format: Literal["yaml", "json", "toml"]
    sha256: str
    size: int
    params: dict[str, Any]
    data: bytes = field(repr=False)


def load_config(path: Path) -> ConfigFile:
    """Read a .yaml/.yml, .json or .toml file into flat dotted params.

    An empty (or whitespace-only) file of any format gives ``{}``. YAML with several
    documents gives keys prefixed ``0.``, ``1.``…; a list at the top level is
    flattened with index keys; a scalar at the top level is refused.

    Raises:
        InputError: the file cannot be read, has an unknown suffix, is malformed
            (naming the line when the parser tells it), holds a scalar, or nests or
            expands too far.
    """
    path = Path(path)
    fmt = _CONFIG_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: not a config file (expected .yaml, .yml, .json or .toml)",
            hint="name a YAML, JSON or TOML file",
        )
    import hashlib  # (not for `runs --param`, which only coerces values)

    data = _read(path)
    return ConfigFile(
        path=str(path),
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        params=parse_config(data, fmt, path=path),
        data=data,
    )


def parse_config(data: bytes, fmt: str, *, path: Path) -> dict[str, Any]:
    """The flat params of a config file's content ``data`` in format ``fmt``
    (``yaml``, ``json`` or ``toml``), as :func:`load_config` reads them; ``path``
    only names the file in errors.

    Raises:
        InputError: as :func:`load_config`, for the content.
    """
    top = {} if not data.strip() else _parse(path, fmt, data)
    _check_size(path, top)
    return {k: json_safe(v) for k, v in flatten(top).items()}


def _read(path: Path) -> bytes:
    from mltrail.capture.run.userfiles import read_user_file

    return read_user_file(
        path,
        what="config file",
        limit=MAX_CONFIG_BYTES,
        hint="record a large file as --data, not --config",
    )


def _parse(path: Path, fmt: str, data: bytes) -> dict[str, Any]:
    import tomllib  # here: `runs --param` coerces values with this module

    import yaml

    try:
        if fmt == "yaml":
            docs = list(yaml.safe_load_all(data))
            if len(docs) == 1:
                return _top_level(path, docs[0])
            return {str(n): _top_level(path, doc) for n, doc in enumerate(docs)}
        if fmt == "json":
            return _top_level(path, json.loads(data))
        return tomllib.loads(data.decode("utf-8-sig"))
    except (yaml.YAMLError, json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise _malformed(path, fmt, e) from e
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start})",
            hint="save the file as UTF-8",
        ) from e
    except (RecursionError, ValueError) as e:  # ValueError: an int of >4300 digits
        raise InputError(
            f"{path}: cannot be read as {fmt.upper()}: {type(e).__name__}: {e}",
            hint="config files must hold plain keys, values and moderate nesting",
        ) from e


def _malformed(path: Path, fmt: str, e: Exception) -> InputError:
    import yaml

    line = None
    if isinstance(e, json.JSONDecodeError):
        line, detail = e.lineno, e.msg
    elif isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        detail = e.problem or e.context or str(e)
    else:  # TOML and YAML reader errors put the position in the message
        detail = str(e).splitlines()[0]
    where = f" at line {line}" if line is not None else ""
    return InputError(
        f"{path}: malformed {fmt.upper()}{where}: {detail}",
        hint=f"fix the file so that a {fmt.upper()} parser accepts it",
    )


def _top_level(path: Path, doc: Any) -> dict[str, Any]:
    if doc is None:
        return {}
    if isinstance(doc, dict):
        return doc
    if isinstance(doc, list):
        return {str(n): v for n, v in enumerate(doc)}
    raise InputError(
        f"{path}: the top level is a {type(doc).__name__}, not a mapping",
        hint="a config file must hold keys and values (or a list of them)",
    )


def _check_size(path: Path, doc: Any) -> None:
    """Refuse cycles (YAML ``&a [*a]``), alias bombs and absurd nesting."""
    count = 0
    stack: list[tuple[Any, int, frozenset[int]]] = [(doc, 0, frozenset())]
    while stack:
        node, depth, ancestors = stack.pop()
        count += 1
        if count > _MAX_NODES or depth > _MAX_DEPTH or id(node) in ancestors:
            raise InputError(
                f"{path}: refers to itself, nests deeper than {_MAX_DEPTH} levels or "
                f"expands to more than {_MAX_NODES} values",
                hint="YAML aliases (*name) may be expanding it; write the values out",
            )
        if isinstance(node, dict | list):
            inner = ancestors | {id(node)}
            children = node.values() if isinstance(node, dict) else node
            stack += [(child, depth + 1, inner) for child in children]


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys (``{"optimizer.lr": 0.1}``).

    Lists with no mapping inside stay lists (``[0.9, 0.99]``, ``[[1, 2], [3]]``); lists
    holding mappings are flattened with indexes (``layers.0.size``); empty mappings are
    kept as ``{}`` under their key. Keys that already hold dots are kept as written, so
    ``{"a.b": 1}`` and ``{"a": {"b": 2}}`` both give ``a.b``: when both occur in one
    mapping the later wins. Non-str keys are written with ``str``. ``prefix`` is
    joined with a dot before every key. The input must be acyclic.
    """
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        _flatten_into(out, _join(prefix, key), value)
    return out


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _flatten_into(out: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten_into(out, _join(key, k), v)
    elif isinstance(value, Mapping):
        out[key] = {}
    elif isinstance(value, list | tuple) and _holds_mapping(value):
        for n, v in enumerate(value):
            _flatten_into(out, f"{key}.{n}", v)
    else:
        out[key] = value


def _holds_mapping(items: list[Any] | tuple[Any, ...]) -> bool:
    return any(
        isinstance(v, Mapping) or (isinstance(v, list | tuple) and _holds_mapping(v))
        for v in items
    )
