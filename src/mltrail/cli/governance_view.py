"""Printing a model's governance (card, open flags, approvals) beside other output."""

from __future__ import annotations

from typing import Any

from mltrail.cli.text_out import one_line, text_out

__all__ = ["print_governance"]


def print_governance(found: dict[str, Any], *, indent: str = "") -> None:
    """Model card fields, open flags (in yellow) and approvals of each model."""
    out = text_out()
    for node, facts in found.items():
        out.line(f"\n{indent}", ("model ", "bold"), (one_line(node), "bold"))
        for field, value in facts["card"].items():
            out.line(
                f"{indent}  {field.replace('_', ' ')}: {value['value']} (by ",
                one_line(value["user"]),
                f", {value['time'][:10]})",
            )
        for flag in facts["open_flags"]:
            out.line(
                f"{indent}  ",
                ("OPEN FLAG", "yellow"),
                f" since {flag['time'][:19]}: upstream source {flag['source']} "
                f"changed (`mltrail flags clear {node} --note ...` after review)",
            )
        for a in facts["approvals"]:
            counted = (
                "" if a["counts"] else (" (self, not counted)" if a["self"] else "")
            )
            out.line(
                f"{indent}  {a['decision']} for ",
                one_line(a["stage"]),
                " by ",
                one_line(a["user"]),
                f"{counted}, {a['time'][:10]}: {a['note']}",
            )
