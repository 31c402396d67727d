"""The read commands' work (``show``, ``trace``, ``runs``, ``model history``,
``prove``), without click, and :func:`run_plain`: their ``--json`` forms, and
the text forms of the first four, run straight from :mod:`mltrail.cli.main`
without importing click (ADR 0021, ADR 0041).

Click and what it loads (uuid, platform, gettext, its types) cost about a
tenth of a read command's start-up. The click commands call the same
functions, so both print the same bytes; :func:`run_plain` accepts only the
plain forms (the options each command lists, each given once, as ``--opt
VALUE``; text is printed by :mod:`mltrail.cli.text_out`) and leaves
everything else to click: help, errors of usage, ``--debug``, ``--opt=VALUE``,
``--``, text ``prove``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.cli.printing import (
    close_home,
    console,
    emit_json,
    open_index,
    verdict_of_store_error,
)
from mltrail.errors import InputError, MltrailError, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mltrail.audit.query import RunFilter
    from mltrail.core.lineage import LineageGraph
    from mltrail.ledger.home import Home
    from mltrail.record.run_status import RunSummary

__all__ = [
    "find_runs",
    "inclusion_bundle",
    "model_history",
    "run_plain",
    "show_target",
    "trace_model",
    "with_governance",
]

# --- the commands' work ----------------------------------------------------------------


def show_target(
    open_home: Callable[[], Home], target: str, full: bool, as_json: bool
) -> None:
    """``mltrail show``: a run in full, or a record (a number below the size)."""
    home = open_home()
    try:
        if target.isdigit() and int(target) < home.ledger.head().size:
            _show_record(home, int(target), full, as_json)
        else:
            _show_run(home, target, as_json)
    finally:
        home.close()


def _show_run(home: Home, ref: str, as_json: bool) -> None:
    from mltrail.audit.governance import governance_of
    from mltrail.audit.query import load_run, resolve_run
    from mltrail.audit.trace import run_outputs
    from mltrail.cli.show_run import run_to_dict

    index = open_index(home)
    view = load_run(home, index, resolve_run(index, ref))
    found = governance_of(home, index, sorted(run_outputs(index, view.summary.id)))
    if as_json:
        emit_json(run_to_dict(view) | {"governance": found})
    else:
        from mltrail.cli.governance_view import print_governance
        from mltrail.cli.show_run import render_run

        render_run(view)
        print_governance(found)


def _show_record(home: Home, seq: int, full: bool, as_json: bool) -> None:
    import json

    from mltrail.core.codec import find_blob_refs

    record = home.ledger.record(seq)
    out = record.to_dict()
    out["hash"] = record.compute_hash().hex()
    out["blobs"] = {
        ref.digest: _resolve_blob(home, ref.digest, full)
        for ref in find_blob_refs(record.entry.body)
    }
    if as_json:
        emit_json(out)
    else:
        console.print_json(json.dumps(out, ensure_ascii=False))


def _resolve_blob(home: Home, digest: str, full: bool) -> Any:
    import json

    from mltrail.ledger.ledger import BlobPurgedError
    from mltrail.ledger.purged import purge_note

    try:
        data = home.ledger.get_blob(digest)
    except BlobPurgedError as e:
        note = purge_note(home.ledger, digest)
        why = f" ({note.describe()})" if note is not None else ""
        return f"<purged by policy at seq {e.seq}{why}: its bytes were erased>"
    except InputError:
        return "<missing: not in the store and no purge names it; run `mltrail verify`>"
    limit = None if full else 65536
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return f"<binary, {len(data)} bytes>"
    try:
        return json.loads(text)
    except ValueError:
        return (
            text
            if limit is None or len(text) <= limit
            else text[:limit] + "\n<truncated>"
        )


def trace_model(
    open_home: Callable[[], Home], model: str
) -> tuple[dict[str, Any], LineageGraph]:
    """``mltrail trace``: what made ``model``, and the lineage graph behind it."""
    from mltrail.audit.governance import governance_of
    from mltrail.audit.refs import resolve_node
    from mltrail.audit.trace import build_lineage, explain

    home = open_home()
    try:
        index = open_index(home)
        start = resolve_node(index, model, cwd=Path.cwd())
        graph = build_lineage(index, start, upstream=True)
        answer = explain(home, index, start, graph)
        answer["governance"] = governance_of(home, index, [start])
    finally:
        home.close()
    return answer, graph


def model_history(
    open_home: Callable[[], Home], stage: str | None, at: str | None
) -> tuple[list[Any], dict[str, Any]]:
    """``mltrail model history``: the stage events (or holders at ``at``) and the
    governance of their models; each promotion's ``gate`` (whether it met its
    stage's gate as the records before it stood) is under ``gate:<seq>``."""
    from mltrail.audit.governance import (
        gate_at_promotion,
        gate_rows_differ,
        governance_of,
    )
    from mltrail.audit.query import parse_at
    from mltrail.index.check import repaired
    from mltrail.record.stages import stage_history, stage_holders

    home = open_home()
    try:
        index = open_index(home)
        for _ in range(2):  # once more from a rebuilt index when a row disagreed
            if at is not None:
                holders = stage_holders(index, at=parse_at(at))
                events = [p for s, p in sorted(holders.items()) if stage in (None, s)]
            else:
                events = stage_history(index, stage=stage)
            found = governance_of(home, index, [e.model for e in events])
            gated = [(e.seq, e.model, e.stage) for e in events if e.action == "enter"]
            for seq, node, name in gated:
                found[f"gate:{seq}"] = gate_at_promotion(index, seq, node, name)
            if not repaired(index, gate_rows_differ(index, gated)):
                break
    finally:
        home.close()
    return events, found


def inclusion_bundle(home: Home, seq: int) -> dict[str, Any]:
    """``mltrail prove SEQ``: record ``seq``'s inclusion proof to the newest
    checkpoint, checked against the checkpoint's root before it is shown."""
    from mltrail.core.merkle import verify_inclusion

    latest = home.ledger.latest_checkpoint()
    if latest is None or latest[0] <= seq:
        raise InputError(
            f"no checkpoint covers seq {seq} yet", hint="run `mltrail checkpoint` first"
        )
    size, text = latest
    root = _signed_root(home, size, text)
    proof = home.ledger.prove_inclusion(seq, size)
    leaf = home.ledger.leaf_hash(seq)
    verify_inclusion(seq, size, leaf, proof.hashes, root)
    return {
        "type": "inclusion",
        "origin": home.ledger.origin,
        "seq": seq,
        "tree_size": size,
        "leaf_hash": leaf.hex(),
        "root": root.hex(),
        "proof": [h.hex() for h in proof.hashes],
        "checkpoint": text,
    }


def _signed_root(home: Home, size: int, text: str) -> bytes:
    """The root of the newest checkpoint, once it is signed by a log key of this
    ledger valid at its size (and the ledger's genesis key is the one ledger.json
    names). Whoever can write the store without the key can add a checkpoint
    signed by a key of their own, with Merkle nodes that prove any record
    against its root: a proof checked only against that root proves nothing.

    Raises:
        IntegrityError: it is not.
    """
    from mltrail.core.checkpoint import verify_checkpoint
    from mltrail.errors import IntegrityError

    ledger = home.ledger
    ring = ledger.keys()
    trusted = ledger.trusted_key
    problem = None
    if trusted and ring.genesis_key != trusted:
        problem = f"the genesis key is not {trusted[:16]}..., the one ledger.json names"
    keys = list(ring.valid_keys(size).values())
    if problem is None and not keys:
        problem = "no key of this ledger is valid at that size"
    if problem is None:
        try:
            return verify_checkpoint(text, origin=ledger.origin, public_keys=keys).root
        except (MltrailError, ValueError) as e:
            problem = str(e)
    raise IntegrityError(
        f"the newest checkpoint (size {size}) is not signed by a key of this "
        f"ledger valid at that size ({problem}): no proof against it is shown",
        hint="run `mltrail verify`",
    )


def with_governance(event: dict[str, Any], found: dict[str, Any]) -> dict[str, Any]:
    """A stage event with its model's card, open flags and approvals."""
    facts = found.get(event["model"]) or {}
    return event | {
        "card": facts.get("card", {}),
        "open_flags": facts.get("open_flags", []),
        "approvals": facts.get("approvals", []),
        "gate": found.get(f"gate:{event['seq']}"),
    }


def find_runs(
    open_home: Callable[[], Home], filters: dict[str, Any], limit: int
) -> tuple[RunFilter, list[RunSummary], bool]:
    """``mltrail runs``: the filter, the runs shown (newest ``limit``, 0: all) and
    whether older ones were left out."""
    from mltrail.audit.query import RunFilter, search_runs, time_window

    spec = RunFilter(
        window=time_window(filters["since"], filters["until"], filters["week"]),
        user=filters["user"],
        status=filters["status"],
        params=_param(filters["params"]),
        dataset=filters["dataset"],
        name=filters["name"],
        limit=limit + 1 if limit > 0 else None,
    )
    home = open_home()
    try:
        found = search_runs(home, open_index(home), spec)
    finally:
        home.close()
    more = limit > 0 and len(found) > limit
    return spec, found[1:] if more else found, more


def _param(values: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise InputError(
                f"--param {text!r} is not KEY=VALUE", hint="e.g. --param lr=0.001"
            )
        pairs.append((key, value))
    return pairs


# --- the plain forms, without click -----------------------------------------------------


class _Form:
    """What a command accepts on the plain path (a plain class: a named tuple
    costs more to create at import than this module's whole parsing)."""

    __slots__ = ("counts", "flags", "multiple", "options", "positional")

    def __init__(
        self,
        positional: int,
        flags: tuple[str, ...],
        options: tuple[str, ...] = (),  # taking one text value each
        multiple: tuple[str, ...] = (),  # may be given more than once: a tuple
        counts: tuple[str, ...] = (),  # a count, 0 to 10**9 (`COUNT`)
    ) -> None:
        self.positional, self.flags, self.options = positional, flags, options
        self.multiple, self.counts = multiple, counts


_RUNS_OPTIONS = ("--since", "--until", "--week", "--user", "--status", "--dataset",
                 "--name")  # fmt: skip
_FORMS = {
    ("show",): _Form(1, ("--json", "--full"), ()),
    ("trace",): _Form(1, ("--json",), ()),
    ("runs",): _Form(0, ("--json",), _RUNS_OPTIONS, ("--param",), ("-n", "--limit")),
    ("model", "history"): _Form(0, ("--json",), ("--stage", "--at")),
    ("prove",): _Form(1, ("--json",), ()),  # SEQ in digits; --consistency: click
}


def run_plain(args: list[str]) -> bool:
    """Run a read command given as ``args`` (``[--home H] COMMAND ...``) if it is a
    plain form (JSON or text; text ``prove`` is click's); return False (nothing
    done) otherwise, for click.

    Errors are printed and exit as click's path does (``error:``/``hint:`` lines,
    the error's exit code; 130 on Ctrl-C).
    """
    parsed = _parse(args)
    if parsed is None:
        return False
    command, home, values = parsed
    opened: list[Home] = []

    def open_home() -> Home:
        from mltrail.ledger.home import open_home as open_it

        opened.append(open_it(home, writable=False))
        return opened[-1]

    try:
        from mltrail.cli.main import check_arguments

        check_arguments(args)
        try:
            _run(command, open_home, values)
        except StoreError as e:  # what verify says of a tampered store
            verdict_of_store_error(opened[-1] if opened else None, open_home, e)
            raise
        finally:
            for h in opened:
                close_home(h)
    except MltrailError as e:
        from mltrail.cli.app import fail

        fail(e)
    except (EOFError, KeyboardInterrupt):
        from mltrail.cli.app import aborted

        sys.stderr.write("\n")  # as click does before its Abort
        sys.stderr.flush()
        aborted()
    except OSError as e:
        import errno

        if e.errno != errno.EPIPE:
            raise
        from click.utils import PacifyFlushWrapper  # as click's main does

        sys.stdout = PacifyFlushWrapper(sys.stdout)  # type: ignore[assignment]
        sys.stderr = PacifyFlushWrapper(sys.stderr)  # type: ignore[assignment]
        sys.exit(1)
    return True


def _run(
    command: tuple[str, ...], open_home: Callable[[], Home], v: dict[str, Any]
) -> None:
    as_json = v["--json"]
    if command == ("show",):
        show_target(open_home, v["target"], v["--full"], as_json)
    elif command == ("trace",):
        answer, graph = trace_model(open_home, v["target"])
        if as_json:
            emit_json(answer)
        else:
            from mltrail.cli.read_text import print_trace

            print_trace(answer, graph)
    elif command == ("prove",):
        emit_json(inclusion_bundle(open_home(), int(v["target"])))
    elif command == ("model", "history"):
        events, found = model_history(open_home, v["--stage"], v["--at"])
        if as_json:
            emit_json([with_governance(e.to_dict(), found) for e in events])
        else:
            from mltrail.cli.read_text import print_history

            print_history(events, found, v["--at"])
    else:
        filters = {name[2:]: v[name] for name in _RUNS_OPTIONS}
        filters["params"] = v["--param"]
        limit = v["--limit"] if v["--limit"] is not None else v["-n"]
        limit = 20 if limit is None else limit
        spec, shown, more = find_runs(open_home, filters, limit)
        if as_json:
            emit_json([s.to_dict() for s in shown])
        else:
            from mltrail.cli.read_text import print_runs

            print_runs(spec, shown, more, limit)


def _parse(
    args: list[str],
) -> tuple[tuple[str, ...], Path | None, dict[str, Any]] | None:
    """(command, home, values) of a plain form; None for click."""
    rest = list(args)
    home_text: str | None = None
    if rest[:1] == ["--home"]:
        if len(rest) < 2 or rest[1].startswith("-"):
            return None
        home_text, rest = rest[1], rest[2:]
    command = tuple(rest[:2]) if rest[:1] == ["model"] else tuple(rest[:1])
    form = _FORMS.get(command)
    if form is None:
        return None
    if "--json" not in rest and command == ("prove",):
        return None  # text `prove`: click
    values = _values(form, rest[len(command) :])
    if values is None or (command == ("prove",) and not _is_seq(values["target"])):
        return None
    home = _home(home_text)
    if home is False:
        return None
    return command, home, values


def _is_seq(text: str) -> bool:
    """A SEQ in plain digits (click's ``int`` takes more: signs, ``_``, spaces)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _values(form: _Form, tokens: list[str]) -> dict[str, Any] | None:
    """The command's arguments as click would give them; None where click
    alone decides (an unknown token, a repeated option, a value like an option)."""
    values: dict[str, Any] = dict.fromkeys((*form.options, *form.counts))
    values |= dict.fromkeys(form.flags, False) | dict.fromkeys(form.multiple, ())
    positional: list[str] = []
    seen: set[str] = set()
    taking = (*form.options, *form.multiple, *form.counts)
    stream = iter(tokens)
    for token in stream:
        if not token.startswith("-"):
            positional.append(token)
            continue
        if token in form.flags:
            values[token] = True
            continue
        value = next(stream, None) if token in taking else None
        if value is None or value.startswith("-") or token in seen - set(form.multiple):
            return None  # --help, --, --opt=value, unknown, click's "last wins"
        seen.add(token)
        if token in form.multiple:
            values[token] = (*values[token], value)
        elif token not in form.counts:
            values[token] = value
        elif value.isascii() and value.isdigit() and int(value) <= 10**9:
            values[token] = int(value)
        else:
            return None
    if len(positional) != form.positional or {"-n", "--limit"} <= seen:
        return None
    if positional:
        values["target"] = positional[0]
    return values


def _home(text: str | None) -> Path | bool | None:
    """``--home`` (else ``$MLTRAIL_HOME`` when not empty) as click's ``Path`` type
    gives it; False when click would refuse it (unreadable)."""
    if text is None:
        text = os.environ.get("MLTRAIL_HOME") or None
        if text is None:
            return None
    try:
        os.stat(text)
    except OSError:
        return Path(text)
    return Path(text) if os.access(text, os.R_OK) else False
