"""``mltrail show RUN``: one run in full, section by section."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mltrail.cli.text_out import Shown, TableColumn, one_line, text_out
from mltrail.core.run_owner import describe_others, run_owner
from mltrail.shown import terminal_text

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mltrail.audit.query import RunView
    from mltrail.core.entry import Record

__all__ = ["render_run", "run_to_dict"]

_SECTIONS = (
    ("run.code", "code"),
    ("run.environment", "environment"),
    ("run.hardware", "hardware"),
    ("run.params", "params"),
    ("run.data", "data"),
    ("run.step", "steps"),
    ("run.finetune", "finetune"),
    ("run.artifact", "outputs"),
    ("run.metrics", "metrics"),
    ("run.ended", "ended"),
)


def run_to_dict(view: RunView) -> dict[str, Any]:
    """The run as JSON: its summary, then every entry body by section, and
    ``added_by_others``: the records (notes aside) another user than the run's
    starter signed (see :func:`mltrail.core.run_owner.added_by_others`), or null."""
    out: dict[str, Any] = {"run": view.summary.to_dict()}
    started = view.body("run.started")
    out["started"] = started
    for kind, section in _SECTIONS:
        bodies = view.bodies(kind)
        out[section] = (
            bodies if kind not in _SINGLE else (bodies[0] if bodies else None)
        )
    out["notes"] = view.bodies("note")
    out["added_by_others"] = view.added_by_others()
    out["purged"] = view.purged
    out["records"] = [
        {"seq": r.seq, "kind": r.entry.kind, "time": r.entry.time} for r in view.records
    ]
    return out


_SINGLE = {"run.code", "run.environment", "run.ended"}


def render_run(view: RunView) -> None:
    """Print the run for a person."""
    s = view.summary
    name = Shown(f"  {terminal_text(s.name, names=True)}") if s.name else ""
    text_out().rule((f"run {s.id}", "bold"), name)
    _pairs(
        [
            (
                "status",
                s.status + ("" if s.exit_code is None else f" (exit {s.exit_code})"),
            ),
            ("started", Shown(f"{s.started} by {terminal_text(s.who(), names=True)}")),
            ("ended", s.ended or "-"),
            ("took", "-" if s.duration_s is None else f"{float(s.duration_s):.2f}s"),
            ("command", one_line(" ".join(s.command))),
            ("cwd", one_line((view.body("run.started") or {}).get("cwd", "-"))),
        ]
    )
    _imported((view.body("run.started") or {}).get("imported"))
    others = view.added_by_others()
    for line in describe_others(others) if others else ():
        text_out().line(("note:", "bold yellow"), f" {line}")
    _purged(view.purged)
    for renderer in (_code, _environment, _hardware, _params, _data, _steps,
                     _finetune, _outputs, _metrics, _ended, _notes):  # fmt: skip
        renderer(view)
    seqs = [r.seq for r in view.records]
    text_out().line(f"\nrecords {seqs[0]}..{seqs[-1]} ({len(seqs)}); "
                    "`mltrail show SEQ` shows one, `mltrail prove SEQ` proves it",
                    style="dim")  # fmt: skip


def _imported(imported: Any) -> None:
    """Say that the run was imported, from where, and that mltrail did not watch
    it: its commit is a tag, its times above are the import's."""
    if not isinstance(imported, dict):
        return
    tracker = {"mlflow": "MLflow"}.get(str(imported.get("from")), "another tracker")
    text_out().line(
        ("imported:", "bold yellow"),
        f" from {tracker} run ",
        one_line(imported.get("run_id")),
        " at ",
        one_line(imported.get("tracking_uri")),
        f"; mltrail did not watch it run (its {tracker} start ",
        one_line(imported.get("start_time") or "-"),
        ", end ",
        one_line(imported.get("end_time") or "-"),
        ", status ",
        one_line(imported.get("status")),
        ", user ",
        one_line(imported.get("user") or "-"),
        ")",
    )


def _purged(purged: list[dict[str, Any]]) -> None:
    """Name each purged blob of the run, and who purged it, when and why."""
    from mltrail.ledger.purged import describe_purged

    for item in purged:
        text_out().line(
            ("erased:", "bold yellow"), " ", one_line(describe_purged(item))
        )


def _heading(title: str) -> None:
    text_out().line(f"\n{title}", style="bold")


def _pairs(rows: Iterable[tuple[str, Any]]) -> None:
    text_out().table(
        _PAIRS,
        [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in rows],
        header=False,
    )


_PAIRS = (TableColumn(style="dim", no_wrap=True), TableColumn(overflow="fold"))


def _columns(*headers: str, overflow: str = "fold") -> list[TableColumn]:
    return [TableColumn(h, overflow=overflow) for h in headers]


def _code(view: RunView) -> None:
    body = view.body("run.code")
    if body is None:
        return
    _heading("code")
    files = [
        (f"file{' (untracked)' if f.get('tracked') is False else ''}",
         f"{f.get('path')} ({f.get('size', '?')} bytes, sha256 "
         f"{str(f.get('sha256') or f.get('error', ''))[:16]})")
        for f in body.get("files") or []
    ]  # fmt: skip
    if not body.get("commit"):
        why = body.get("warning") or body.get("reason") or "not a git work tree"
        _pairs([("git", str(why)), *files])
        return
    # an imported commit (an MLflow tag) says nothing of the work tree or HEAD
    seen = isinstance(body.get("dirty"), bool)
    dirty = ("dirty" if body["dirty"] else "clean") if seen else "state not recorded"
    branch = body.get("branch") or ("detached" if seen else "branch not recorded")
    rows = [
        (
            "commit",
            Shown(
                f"{terminal_text(body['commit'], names=True)} "
                f"({terminal_text(branch, names=True)}"
                f", {dirty})"
            ),
        ),
        ("describe", body.get("describe") or "-"),
    ]
    if body.get("dirty"):
        rows.append(("diff", f"{body.get('diff_size', 0)} bytes, sha256 "
                             f"{str(body.get('diff_sha256', ''))[:16]}"))  # fmt: skip
    if body.get("untracked_count"):
        rows.append(("untracked", f"{body['untracked_count']} files"))
    if body.get("remote"):
        rows.append(("remote", str(body["remote"])))
    rows += _unseen_by_git(body)
    _pairs([*rows, *files])


def _unseen_by_git(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """Rows for the files a commit and diff leave out, and the warning."""
    rows: list[tuple[str, Any]] = [
        (label, f"{f.get('path')} ({f.get('flag', 'ignored')}, sha256 "
                f"{str(f.get('sha256') or f.get('error') or 'deleted')[:16]})")
        for field, label in (("hidden", "hidden"), ("ignored_sources", "ignored"))
        for f in body.get(field) or []
        if isinstance(f, dict)
    ]  # fmt: skip
    if body.get("warning"):
        rows.append(("warning", str(body["warning"])))
    return rows


def _environment(view: RunView) -> None:
    body = view.body("run.environment")
    if body is None:
        return
    _heading("environment")
    python = body.get("python") or {}
    system = body.get("os") or {}
    container = body.get("container") or {}
    cuda = body.get("cuda") or {}
    packages = body.get("packages")
    _pairs(
        [
            ("python", f"{python.get('implementation', '')} {python.get('version', '?')}"),
            ("os", f"{system.get('distribution') or system.get('system', '?')}, "
                   f"{system.get('libc') or ''}"),
            ("container", container.get("image") or container.get("runtime") or "none"),
            ("cuda", cuda.get("version") or cuda.get("driver") or "none"
             if isinstance(cuda, dict) else str(cuda)),
            ("packages", f"{packages.get('count', '?')} (list sha256 "
                         f"{str(packages.get('sha256', ''))[:16]})"
             if isinstance(packages, dict) else "-"),
        ]
    )  # fmt: skip


def _hardware(view: RunView) -> None:
    bodies = view.bodies("run.hardware")
    if not bodies:
        return
    _heading("hardware")
    rows = []
    for body in bodies:
        cpu = body.get("cpu") or {}
        memory = body.get("memory") or {}
        gpus = body.get("gpus") or []
        rank = body.get("rank")
        label = "host" if rank is None else f"rank {rank.get('rank', '?')}"
        gpu_text = ", ".join(str(g.get("name", "?")) for g in gpus) or body.get(
            "gpu_note", "no GPU"
        )
        rows.append((label, f"{cpu.get('model', '?')} x{cpu.get('logical_cores', '?')}, "
                            f"{_gib(memory.get('total_bytes'))} RAM; {gpu_text}"))  # fmt: skip
    _pairs(rows)


def _gib(value: Any) -> str:
    return "?" if not isinstance(value, int) else f"{value / 2**30:.1f} GiB"


def _params(view: RunView) -> None:
    params = view.params()
    if not params:
        return
    _heading("params")
    rows = [
        (one_line(k), json.dumps(params[k][0]), one_line(params[k][1]))
        for k in sorted(params)
    ]
    text_out().table(_columns("key", "value", "from"), rows)


def _data(view: RunView) -> None:
    bodies = view.bodies("run.data")
    if not bodies:
        return
    _heading("data")
    out = text_out()
    out.table(
        _columns("role", "dataset", "files", "bytes", "path"),
        [
            (
                str(body.get("role", "")),
                str(body.get("dataset", ""))[:16],
                str(body.get("files", "")),
                str(body.get("bytes", "")),
                one_line(body.get("path") or body.get("url") or ""),
            )
            for body in bodies
        ],
    )
    for body in bodies:
        stats = body.get("table") or {}
        label = stats.get("label") or {}
        if stats:
            out.line(
                f"  {body.get('role')}: {stats.get('rows')} rows ({stats.get('format')})"
                + (f", {label.get('column')}: {label.get('counts')}" if label else "")
            )
        for overlap in body.get("overlaps") or []:
            out.line(f"  leakage: {overlap.get('rows')} rows also in "
                     f"{overlap.get('role')}", style="yellow")  # fmt: skip


def _steps(view: RunView) -> None:
    for body in view.bodies("run.step"):
        _heading(f"step {body.get('name')}")
        scripts = ", ".join(
            f"{s.get('path')} ({str(s.get('sha256', ''))[:12]})"
            for s in body.get("scripts") or []
        )
        _pairs(
            [
                ("scripts", scripts or "-"),
                ("inputs", _links(body.get("inputs"))),
                ("outputs", _links(body.get("outputs"))),
            ]
        )


def _links(links: Any) -> str:
    return (
        "; ".join(
            f"{link.get('path')} ({str(link.get('dataset') or link.get('sha256') or '-')[:12]})"
            for link in links or []
        )
        or "-"
    )


def _finetune(view: RunView) -> None:
    for body in view.bodies("run.finetune"):
        _heading("fine-tune")
        rows = []
        for role in ("base", "model"):
            part = body.get(role)
            if isinstance(part, dict):
                rows.append((role, _model_line(part)))
        adapter = body.get("adapter")
        if isinstance(adapter, dict):
            rows.append(("adapter", f"{adapter.get('method', '?')} r={adapter.get('r')} "
                                    f"alpha={adapter.get('lora_alpha')} targets="
                                    f"{adapter.get('target_modules')}"))  # fmt: skip
        delta = body.get("delta")
        if isinstance(delta, dict):
            rows.append(
                ("delta", f"{delta.get('share_changed')} of parameters changed")
            )
        if body.get("generation"):
            rows.append(("generation", json.dumps(body["generation"], sort_keys=True)))
        _pairs(rows)


def _model_line(part: dict[str, Any]) -> str:
    return (
        f"{str(part.get('model', ''))[:16]} {part.get('format', '')} "
        f"{part.get('parameters', '?')} params  {part.get('path', '')}"
    )


def _outputs(view: RunView) -> None:
    bodies = view.bodies("run.artifact")
    if not bodies:
        return
    _heading("outputs")
    rows = []
    for body in bodies:
        ident = (
            body.get("model") or body.get("dataset") or body.get("sha256") or "missing"
        )
        size = body.get("bytes", body.get("size", ""))
        rows.append((one_line(body.get("path")), str(ident)[:16], str(size)))
    text_out().table(_columns("path", "content id", "size"), rows)


def _metrics(view: RunView) -> None:
    from mltrail.core.series import merge_series

    # every batch the run wrote, not the last one's summary alone
    series = merge_series(view.bodies("run.metrics"))
    if not series:
        return
    _heading("metrics")
    rows = [
        (name, _num(s.get("last")), _num(s.get("min")), _num(s.get("max")),
         str(s.get("count", "")))
        for name, s in sorted(series.items())
    ]  # fmt: skip
    columns = _columns("series", "last", "min", "max", "points", overflow="ellipsis")
    text_out().table(columns, rows)


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _ended(view: RunView) -> None:
    body = view.body("run.ended")
    if body is None:
        return
    _heading("ended")
    rows = [("status", str(body.get("status")))]
    if body.get("signal"):
        rows.append(("signal", str(body["signal"])))
    for stream in ("stdout", "stderr"):
        info = body.get(stream)
        if isinstance(info, dict):
            rows.append((stream, f"{info.get('size')} bytes, sha256 "
                                 f"{str(info.get('sha256', ''))[:16]}"))  # fmt: skip
    if body.get("error") or body.get("reason"):
        rows.append(("why", str(body.get("error") or body.get("reason"))))
    outcome = body.get("outcome")
    if isinstance(outcome, dict):  # what a recorder saw but could not record
        how = outcome.get("signal") or f"exit {outcome.get('exit_code')}"
        rows.append(("outcome", f"{outcome.get('status')} ({how}), as the "
                                "recorder saw it"))  # fmt: skip
    _pairs(rows)


def _notes(view: RunView) -> None:
    notes = view.all("note")
    if not notes:
        return
    _heading("notes")
    owner = run_owner(view.records)
    _pairs(
        (
            f"seq {r.seq}",
            f"{r.entry.time}  {_by(r, owner)}"
            f"{r.entry.body.get('text') or json.dumps(dict(r.entry.body))}",
        )
        for r in notes
    )


def _by(record: Record, owner: str | None) -> str:
    """``by USER  `` for a note another user than the run's starter wrote."""
    user = record.entry.actor.get("user")
    return "" if owner is None or user == owner else f"by {user}  "
