"""``mltrail diff RUN_A RUN_B``: what changed between two runs, section by section."""

from __future__ import annotations

import json
import re
import shlex
from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from mltrail.audit.query import load_run, resolve_run
from mltrail.cli.output import (
    COUNT,
    console,
    emit_json,
    json_option,
    open_from,
    open_index,
)
from mltrail.core.diff import ABSENT, IGNORED, SECTIONS
from mltrail.reproduce import compare_runs
from mltrail.shown import terminal_text

if TYPE_CHECKING:
    from mltrail.audit.query import RunView
    from mltrail.core.diff import Change, DatasetDiff, RunDiff
    from mltrail.core.diff_data import FileChange
    from mltrail.core.rows import RowsDiff

__all__ = ["diff"]

_HEX = re.compile(r"(sha256:)?([0-9a-f]{64})")
_MARKER = re.compile(
    r"<redacted (?:hmac-)?sha256:[0-9a-f]{64} salt:[0-9a-f]*(?: key:[0-9a-f]{16})?>"
)
_STYLE = {"-": "red", "+": "green", "~": "yellow", " ": "dim"}


@click.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--all", "everything", is_flag=True, help="Show unchanged values too.")
@click.option(
    "--files",
    "max_files",
    type=COUNT,
    default=20,
    show_default=True,
    help="List at most N differing files (and rows) per dataset (0: all).",
)
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit 1 when the runs differ, 0 when they do not (like `git diff --exit-code`).",
)
@json_option
@click.pass_context
def diff(
    ctx: click.Context,
    run_a: str,
    run_b: str,
    everything: bool,
    max_files: int,
    exit_code: bool,
    as_json: bool,
) -> None:
    """Show what changed from RUN_A to RUN_B: code, environment, hardware,
    parameters, data (file by file), fine-tuning, outputs and metrics.

    A run is named by its id, a prefix of 4+ characters, or its name (its latest
    run). Lines starting with - are RUN_A's, + RUN_B's. Numbers compare by value
    (8 equals 8.0). A dataset described when both runs read it (--describe or
    --label) names its rows that differ, by file and line. Not compared: start
    and end times, process ids, free memory, stdout/stderr digests and redacted
    secrets. Exits 0 whether or not the runs
    differ, unless --exit-code is given. --json gives every differing file.

    \b
    Examples:
      mltrail diff baseline retrain
      mltrail diff 0193a0c4 0193a0d9 --files 100
      mltrail diff baseline retrain --all
      mltrail diff baseline retrain --json | jq '.sections.params'
      mltrail diff nightly-1 nightly-2 --exit-code || echo "runs differ"
    """
    home = open_from(ctx)
    try:
        index = open_index(home)
        a = load_run(home, index, resolve_run(index, run_a))
        b = load_run(home, index, resolve_run(index, run_b))
        result = compare_runs(home, a, b, everything=everything)
    finally:
        home.close()
    if as_json:
        out = result.to_dict()
        out["names"] = {"a": a.summary.name, "b": b.summary.name}
        out["added_by_others"] = {"a": a.added_by_others(), "b": b.added_by_others()}
        emit_json(out)
    else:
        _print(result, a, b, everything, max_files)
    if exit_code and not result.is_empty:
        ctx.exit(1)


def _label(view: RunView) -> str:
    name = terminal_text(view.summary.name or "unnamed", names=True)
    return f"{name} ({view.id[:13]})"


def _print(
    result: RunDiff, a: RunView, b: RunView, everything: bool, max_files: int
) -> None:
    from mltrail.core.run_owner import describe_others

    console.print(Text(f"- {_label(a)}", style="red"))
    console.print(Text(f"+ {_label(b)}", style="green"))
    for sign, view in (("-", a), ("+", b)):
        others = view.added_by_others()
        for line in describe_others(others) if others else ():
            console.print(Text(terminal_text(f"note: {sign} {line}", names=True)))
    for name in SECTIONS:
        if name == "data":
            if result.data:
                console.print(Text("\ndata", style="bold"))
            for dataset in result.data:
                _print_dataset(dataset, max_files)
        elif changes := result.section(name):
            console.print(Text(f"\n{name}", style="bold"))
            for change in changes:
                _print_change(change)
    if result.is_empty:
        console.print(
            "\nno differences" + ("" if everything else " (--all shows every value)")
        )
    console.print(Text(f"\nnot compared: {', '.join(IGNORED)}", style="dim"))


def _not_nfc(key: str) -> str:
    """For a key not in Unicode's NFC form, a note naming the code points that
    make it so: ``cafe`` + U+0301 prints as ``café`` (U+00E9), and a parameter
    renamed from one to the other would otherwise read as removed and added
    unchanged."""
    import unicodedata

    if key.isascii() or unicodedata.is_normalized("NFC", key):
        return ""
    odd = dict.fromkeys(
        f"U+{ord(c):04X}"
        for c in key
        if unicodedata.category(c)[0] == "M" or unicodedata.normalize("NFC", c) != c
    )
    return f"  [key not in NFC form: {', '.join(odd)}]"


def _print_change(change: Change, indent: str = "  ") -> None:
    source = f"  ({change.source})" if change.source else ""
    source += _not_nfc(change.key)
    # run A's value with run A's source (a value moved from argv into a file)
    old_source = f"  ({change.old_source})" if change.old_source else ""
    old_source = old_source + _not_nfc(change.key) if old_source else source
    note = f"  {change.note}" if change.note else ""
    old, new = _show(change.old), _show(change.new)
    if old == new and change.kind != "same":  # rounded alike: show every digit
        old, new = repr(change.old), repr(change.new)
    if change.kind == "same":
        _line(" ", f"{indent}{change.key}: {old}{old_source}")
        if old_source != source:
            _line(" ", f"{indent}{change.key}: {new}{source}")
        return
    if change.old is not ABSENT:
        _line("-", f"{indent}{change.key}: {old}{old_source}")
    if change.new is not ABSENT:
        _line("+", f"{indent}{change.key}: {new}{source}{note}")


def _line(sign: str, text: str) -> None:
    """A line of changed values, escaped once here (ADR 0040; keys and values
    are names: their look-alike letters are shown as escapes)."""
    shown = terminal_text(text, multiline=True, names=True)
    console.print(Text(f"{sign}{shown}", style=_STYLE[sign]))


def _print_dataset(dataset: DatasetDiff, max_files: int) -> None:
    ids = f"{_short(dataset.old)} -> {_short(dataset.new)}"
    role = terminal_text(dataset.role, names=True)  # a recorded name (ADR 0040)
    console.print(Text(f"  {role}: {dataset.kind}, dataset {ids}"))
    for change in dataset.fields:
        _print_change(change, indent="    ")
    if dataset.rows is not None:
        _print_rows(dataset.rows, max_files)
    files = dataset.files
    if files is None:
        return
    console.print(
        f"    by file: {files.count('changed')} changed, {files.count('added')} added, "
        f"{files.count('removed')} removed, {files.unchanged} unchanged"
    )
    shown = files.changes if max_files <= 0 else files.changes[:max_files]
    for change in shown:
        _print_file(change)
    if len(shown) < len(files.changes):
        more = len(files.changes) - len(shown)
        console.print(f"    ... and {more} more (--files N lists more, --json all)")


def _print_rows(rows: RowsDiff, max_rows: int) -> None:
    console.print(
        f"    by row: {rows.count('changed')} changed, {rows.count('added')} added, "
        f"{rows.count('removed')} removed, {rows.unchanged:,} unchanged"
    )
    shown = rows.changes if max_rows <= 0 else rows.changes[:max_rows]
    for change in shown:
        sign = {"changed": "~", "added": "+", "removed": "-"}[change.kind]
        _line(sign, f"    {change.where()}  {change.kind}")
    if len(shown) < len(rows.changes):
        more = len(rows.changes) - len(shown)
        console.print(
            f"    ... and {more} more rows (--files N lists more, --json all)"
        )


def _print_file(change: FileChange) -> None:
    old, new = _file(change.old), _file(change.new)
    if change.kind == "changed":
        _line("-", f"    {change.path}  {old}")
        _line("+", f"    {change.path}  {new}")
    elif change.kind == "added":
        _line("+", f"    {change.path}  {new}")
    else:
        _line("-", f"    {change.path}  {old}")


def _file(facts: dict[str, Any] | None) -> str:
    if not facts:
        return ""
    if "sha256" in facts:
        return f"{facts['sha256'][:12]} ({facts.get('size', 0):,} bytes)"
    if "link" in facts:
        return f"link -> {facts['link']}"
    return "empty folder"


def _short(value: str | None) -> str:
    return "none" if not value else value[:12]


def _show(value: Any) -> str:
    """A value on one line: hashes shortened, secrets as ``<redacted>``, commands
    as shell words."""
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, dict) and set(value) in (
        {"redacted", "salt"},
        {"redacted", "salt", "key"},
    ):
        return "<redacted>"
    if isinstance(value, str):
        return _show_text(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return shlex.join(_MARKER.sub("<redacted>", v) for v in value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _show_text(value: str) -> str:
    if m := _HEX.fullmatch(value):
        return f"{m[1] or ''}{m[2][:12]}"
    return _MARKER.sub("<redacted>", value)
