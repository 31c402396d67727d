"""A gathered model report as Markdown, HTML (Jinja2, autoescaped) or PDF (WeasyPrint).

Jinja2 and WeasyPrint are the optional extra ``mltrail[report]``, imported only
here. Every value comes from the ledger and is untrusted: the HTML template
escapes everything it prints (autoescape); Markdown escapes the characters that
would start markup, HTML or a table cell; the SVG escapes its labels. In all
three, control, bidi and invisible characters are shown as escapes (``\x1b``,
``\u202e``: :func:`mltrail.shown.terminal_text`), so a value cannot reorder or
hide text in a browser, a PDF or a terminal (ADR 0040).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from mltrail.audit.governance import gate_text
from mltrail.core.run_owner import describe_others
from mltrail.errors import ConfigError
from mltrail.report.svg import lineage_svg
from mltrail.shown import terminal_text

__all__ = [
    "FORMATS",
    "REPORT_EXTRA",
    "bundle_check_text",
    "not_intact_text",
    "render_html",
    "render_markdown",
    "render_pdf",
]

FORMATS = ("md", "html", "pdf")
REPORT_EXTRA = "pip install 'mltrail[report]'"


def _jinja() -> Any:
    try:
        import jinja2
    except ImportError as e:
        raise ConfigError(
            f"HTML and PDF reports need jinja2: {REPORT_EXTRA}", hint=REPORT_EXTRA
        ) from e
    return jinja2


def render_html(report: dict[str, Any], *, version: str = "") -> str:
    """The report as one self-contained HTML page (inline CSS and SVG); ``version``
    (mltrail's) goes in its generator tag."""
    jinja2 = _jinja()
    markup = jinja2.utils.markupsafe.Markup

    def visible(value: Any) -> Any:
        """Every ``{{ value }}`` printed: a string's control, bidi and invisible
        characters as escapes (then autoescaped); Markup (the SVG) as it is."""
        if isinstance(value, str) and not isinstance(value, markup):
            return terminal_text(value, multiline=True)
        return value

    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        keep_trailing_newline=True,
        finalize=visible,
    )
    source = resources.files("mltrail.report").joinpath("templates/model.html.j2")
    template = env.from_string(source.read_text(encoding="utf-8"))
    svg = markup(lineage_svg(report["lineage"]))
    return template.render(
        r=report,
        svg=svg,
        version=version,
        timestamp_text=timestamp_text,
        not_intact=not_intact_text(report["record_keeping"]),
        described=described_text,
        gate_text=gate_text,
        approver=approver_text,
        bundle_check=bundle_check_text,
        others_lines=lambda found: describe_others(found) if found else [],
    )


def render_pdf(report: dict[str, Any], *, version: str = "") -> bytes:
    """The HTML report laid out as PDF by WeasyPrint."""
    html = render_html(report, version=version)
    try:
        import weasyprint
    except (ImportError, OSError) as e:  # OSError: pango/cairo libraries missing
        raise ConfigError(
            f"PDF reports need WeasyPrint and its system libraries (pango): {e}",
            hint=REPORT_EXTRA,
        ) from e
    pdf: bytes = weasyprint.HTML(string=html).write_pdf()
    return pdf


def timestamp_text(stamp: dict[str, Any]) -> str:
    """One timestamp token of the listing (``list_timestamps``), in words.

    Its size is the stamped checkpoint's, or the token is marked unverified:
    the evidence row's own size column is never shown (ADR 0015).
    """
    kept = f"kept {stamp.get('added')}"
    if stamp.get("size") is None:
        return (
            f"RFC 3161 token #{stamp.get('id')}: unverified, its size cannot be "
            "derived (the token does not stamp its checkpoint, or the ledger's "
            f"records do not hold that checkpoint); {kept}."
        )
    if stamp.get("token") != "verified":
        trust = "not checked against a TSA CA"
    elif stamp.get("ca_external") is False:
        trust = (
            f"checked against the TSA CA {stamp.get('ca')}, which lies inside the "
            "home: whoever can write the home chooses that CA, so this time is "
            "not an anchor; pass --tsa-ca FILE kept elsewhere"
        )
    else:
        trust = f"checked against the TSA CA {stamp.get('ca') or ''}".rstrip()
    return (
        f"RFC 3161 token #{stamp.get('id')} on the checkpoint of size "
        f"{stamp['size']} (size from the stamped checkpoint), by "
        f"{stamp.get('issuer')} at {stamp.get('time')} ({trust}); {kept}."
    )


# -- Markdown -------------------------------------------------------------------

_MARKUP = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def _md(value: Any) -> str:
    """A value as inert Markdown text on one line."""
    if value is None or value == "":
        return "_not recorded_"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = terminal_text(" ".join(str(value).split()))
    text = text.replace("&", "&amp;")
    return _MARKUP.sub(r"\\\1", text)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _kv(pairs: list[tuple[str, Any]]) -> list[str]:
    return _table(["", ""], [[k, v] for k, v in pairs])


def _field(described: dict[str, Any], name: str) -> Any:
    item = described.get(name)
    return described_text(item) if item else None


def described_text(item: dict[str, Any]) -> str:
    """A described field's value with the record that set it: ``high (seq 12,
    by bob)``."""
    value = item.get("value")
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return f"{value} (seq {item.get('seq')}, by {item.get('user') or '(no user)'})"


def render_markdown(report: dict[str, Any]) -> str:
    """The report as GitHub-flavoured Markdown (the lineage as a list of edges)."""
    m, rk = report["model"], report["record_keeping"]
    out = [
        f"# Model report: {_md(m['label'])}",
        "",
        f"Model `{m['id']}` ({_md(m['type'])}), file {_md(m.get('path'))}. "
        f"Ledger {_md(rk['origin'])}, {rk['records']} records.",
        "",
        f"**Verdict:** {_md(rk.get('verdict') or 'not verified')}",
        "",
        *_not_intact(rk),
    ]
    for section in (_description, _development, _data, _training, _finetune,
                    _validation, _approvals, _promotions, _flags, _lineage,
                    _record_keeping):  # fmt: skip
        out += section(report)
    return "\n".join(out)


def approver_text(approval: dict[str, Any]) -> str:
    """Who decided, and whether they trained the model (never counted then)."""
    user = approval.get("user") or "(no user)"
    return f"{user} (trained it: not counted)" if approval.get("trained_it") else user


def bundle_check_text(bundle: dict[str, Any]) -> str:
    """What checking a ``--bundle`` file found, in words."""
    if "verdict" not in bundle:
        return "not checked"
    text = f"{bundle['verdict']}; subject {bundle.get('subject') or '(none)'}"
    if not bundle.get("of_this_model"):
        text += " (NOT the model of this report)"
    return text


def not_intact_text(rk: dict[str, Any]) -> str | None:
    """The warning that heads a report of a ledger that fails verification,
    or None when it verified (or was not verified)."""
    if rk.get("ok") is not False:
        return None
    first = rk.get("first_bad_seq")
    where = f" from seq {first} on" if first is not None else ""
    return (
        "THE LEDGER IS NOT INTACT: verification found altered, removed or "
        f"replaced records{where}. The values below are read from the records as "
        "stored and may not be what was signed; do not rely on this report. "
        "Every error is listed under Record-keeping."
    )


def _not_intact(rk: dict[str, Any]) -> list[str]:
    text = not_intact_text(rk)
    return [] if text is None else [f"> **{_md(text)}**", ""]


def _description(r: dict[str, Any]) -> list[str]:
    d = r["description"]
    return [
        "## 1. Description and intended purpose",
        "",
        *_kv(
            [
                ("Intended purpose", _field(d, "purpose")),
                ("Limitations", _field(d, "limitations")),
            ]
        ),
        "## 2. Owner and risk tier",
        "",
        *_kv([("Owner", _field(d, "owner")), ("Risk tier", _field(d, "risk_tier"))]),
    ]


def _development(r: dict[str, Any]) -> list[str]:
    dev = r["development"]
    out = ["## 3. Development process and code", ""]
    if dev is None:
        return [*out, "_No run in the ledger wrote this model._", ""]
    run, code, env = dev["run"], dev["code"], dev["environment"]
    claims = r["model"].get("made_by") or []
    count = r["model"].get("made_by_count", len(claims))
    if count > 1:
        rows = [[c["id"], c.get("name"), f"{c.get('user')}@{c.get('host')}",
                 c.get("started"), c.get("status")] for c in claims]  # fmt: skip
        if count > len(claims):  # the oldest and the latest claims are listed
            half = len(claims) // 2
            rows.insert(half, [f"... {count - len(claims)} more", "", "", "", ""])
        out += [
            f"**{count} runs say they wrote this model.** Sections 3 to 7 "
            f"describe the latest claim, run {_md(run['id'])}; each run, oldest "
            "claim first:",
            "",
            *_table(["run", "name", "started by", "started", "status"], rows),
        ]
    out += _kv(
        [
            ("Run", f"{run['id']} ({run.get('name') or 'unnamed'})"),
            ("Started / ended", f"{run.get('started')} / {run.get('ended')}"),
            ("By", f"{run.get('user')}@{run.get('host')}"),
            ("Status", run.get("status")),
            ("Command", " ".join(dev.get("command") or [])),
            ("Program", dev.get("program")),
            ("Git commit", code.get("commit")),
            ("Branch", code.get("branch")),
            ("Uncommitted changes (dirty)", code.get("dirty")),
            ("Diff SHA-256", code.get("diff_sha256")),
            ("Python", env.get("python")),
            ("Packages", env.get("packages")),
            ("Package list SHA-256", env.get("packages_sha256")),
        ]
    )
    others = dev.get("added_by_others")
    for line in describe_others(others) if others else ():
        out += [f"**Note:** {_md(line)}", ""]
    if code.get("warning"):
        out += [f"**Code warning:** {_md(code['warning'])}", ""]
    if dev["scripts"]:
        out += _table(
            ["script", "SHA-256", "bytes"],
            [[s["path"], s["sha256"], s["size"]] for s in dev["scripts"]],
        )
    return out


def _data(r: dict[str, Any]) -> list[str]:
    out = ["## 4. Data and data governance", ""]
    for ds in r["data"]:
        out += [
            f"### {_md(ds.get('role'))}: {_md(ds.get('path') or ds.get('url'))}",
            "",
        ]
        out += _kv(
            [
                ("Dataset id", ds.get("dataset")),
                ("Files", ds.get("files")),
                ("Bytes", ds.get("bytes")),
                ("Manifest", ds.get("manifest")),
            ]
        )
        if ds["file_hashes"]:
            out += _table(
                ["file", "SHA-256", "bytes"],
                [[f["path"], f["sha256"], f["size"]] for f in ds["file_hashes"]],
            )
        table = ds.get("table")
        if table:
            label = table.get("label") or {}
            counts = ", ".join(
                f"{k} = {v}" for k, v in (label.get("counts") or {}).items()
            )
            out += [f"Split: {_md(table.get('rows'))} rows; label {_md(label.get('column'))}: "
                    f"{_md(counts)}", ""]  # fmt: skip
        for overlap in ds.get("overlaps") or []:
            out += [
                f"**Rows shared with {_md(overlap['role'])}:** {_md(overlap['rows'])}",
                "",
            ]
    if not r["data"]:
        out += ["_No dataset recorded._", ""]
    out += ["### Preprocessing chain", ""]
    if r["preprocessing"]:
        out += _table(
            ["step", "run", "started", "scripts", "inputs", "outputs"],
            [
                [
                    s["name"],
                    s["run"],
                    s["started"],
                    "; ".join(f"{c['path']} {c['sha256']}" for c in s["scripts"]),
                    "; ".join(f"{i['path']} {i['id']}" for i in s["inputs"]),
                    "; ".join(f"{o['path']} {o['id']}" for o in s["outputs"]),
                ]
                for s in r["preprocessing"]
            ],
        )
    else:
        out += ["_No preprocessing step recorded upstream._", ""]
    return out


def _training(r: dict[str, Any]) -> list[str]:
    out = ["## 5. Training choices and hyperparameters", ""]
    if not r["training"]:
        return [*out, "_No parameters recorded._", ""]
    return out + _table(
        ["parameter", "value", "source"],
        [[p["name"], p["value"], p["source"]] for p in r["training"]],
    )


def _finetune(r: dict[str, Any]) -> list[str]:
    out = ["## 6. Fine-tuning: base and delta", ""]
    ft = r["finetune"]
    if ft is None:
        return [*out, "_Not a fine-tune (no base model recorded)._", ""]
    return out + _kv(
        [
            ("Base model", ft["base"].get("model")),
            ("Base path", ft["base"].get("path")),
            ("Adapter", ft["adapter"] or None),
            ("Delta", ft["delta"]),
        ]
    )


def _validation(r: dict[str, Any]) -> list[str]:
    out = ["## 7. Validation and metrics", ""]
    if not r["validation"]:
        return [*out, "_No metrics recorded._", ""]
    return out + _table(
        ["metric", "last", "min", "max", "points"],
        [[m["name"], m.get("last"), m.get("min"), m.get("max"), m.get("count")]
         for m in r["validation"]],
    )  # fmt: skip


def _approvals(r: dict[str, Any]) -> list[str]:
    out = ["## 8. Approvals", ""]
    if not r["approvals"]:
        return [*out, "_No approval recorded._", ""]
    return out + _table(
        ["seq", "time", "approver", "stage", "decision", "note"],
        [[a["seq"], a["time"], approver_text(a), a.get("stage"), a.get("decision"),
          a.get("note")] for a in r["approvals"]],
    )  # fmt: skip


def _promotions(r: dict[str, Any]) -> list[str]:
    out = ["## 9. Promotions and deployment", ""]
    if not r["promotions"]:
        return [*out, "_Never promoted._", ""]
    return out + _table(
        ["seq", "time", "by", "stage", "action", "note", "gate"],
        [[p["seq"], p["time"], p["user"], p.get("stage"), p.get("action"),
          p.get("note"), gate_text(p.get("gate")) or "-"] for p in r["promotions"]],
    )  # fmt: skip


def _flags(r: dict[str, Any]) -> list[str]:
    out = ["## 10. Open flags", ""]
    if not r["flags"]:
        out += ["No open flag.", ""]
    else:
        out += _table(
            ["seq", "time", "source", "reason"],
            [[f["seq"], f["time"], f.get("source"), f.get("reason") or f.get("note")]
             for f in r["flags"]],
        )  # fmt: skip
    cleared = r.get("cleared_flags") or []
    if cleared:
        out += ["Cleared flags (each with the record that cleared it):", ""]
        out += _table(
            ["seq", "time", "source", "reason", "cleared at seq", "cleared by",
             "note"],
            [[f["seq"], f["time"], f.get("source"), f.get("reason") or f.get("note"),
              f["cleared"]["seq"], f["cleared"]["user"], f["cleared"].get("note")]
             for f in cleared],
        )  # fmt: skip
    for sealed in r["sealed"]:
        out += [f"Sealed at seq {sealed['seq']} by {_md(sealed['user'])}: "
                f"{_md(sealed.get('reason'))}", ""]  # fmt: skip
    return out


def _lineage(r: dict[str, Any]) -> list[str]:
    graph = r["lineage"]
    labels = {n["id"]: n["label"] for n in graph["nodes"]}
    out = ["## 11. Lineage", ""]
    out += [
        f"- {_md(labels.get(e['from'], e['from']))} → {_md(e['relation'])} → "
        f"{_md(labels.get(e['to'], e['to']))}"
        for e in graph["edges"]
    ]
    return [*out, ""]


def _record_keeping(r: dict[str, Any]) -> list[str]:
    rk = r["record_keeping"]
    bundle = rk.get("bundle")
    out = ["## 12. Record-keeping", ""]
    out += _kv(
        [
            ("Verification verdict", rk.get("verdict")),
            (
                "Bundle SHA-256",
                f"{bundle['sha256']} ({bundle['path']}, {bundle['size']} bytes)"
                if bundle
                else None,
            ),
            ("Bundle check", bundle_check_text(bundle) if bundle else None),
            ("Timestamps kept (RFC 3161)", len(rk["timestamps"])),
        ]
    )
    for anchor in rk.get("anchors") or []:
        where = "outside" if anchor["external"] else "inside"
        out.append(f"- anchor ({where} the home): {_md(anchor['description'])}")
    for error in rk.get("errors") or []:
        out.append(f"- error: {_md(error)}")
    for warning in rk.get("warnings") or []:
        out.append(f"- warning: {_md(warning)}")
    for stamp in rk.get("timestamps") or []:
        out.append(f"- {_md(timestamp_text(stamp))}")
    checkpoint = rk.get("checkpoint")
    if checkpoint:
        text = checkpoint["text"].replace("`", "'")
        out += ["", f"Newest checkpoint (size {checkpoint['size']}):", "", "```",
                text.rstrip("\n"), "```"]  # fmt: skip
    return [*out, ""]
