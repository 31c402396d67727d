"""Model reports (Markdown, HTML, PDF) gathered from the ledger.

>>> facts = gather_report(home, index, "model:...", verification=report)  # doctest: +SKIP
>>> html = render_html(facts)                                             # doctest: +SKIP
"""

from mltrail.report.gather import bundle_facts, gather_report
from mltrail.report.render import (
    FORMATS,
    REPORT_EXTRA,
    render_html,
    render_markdown,
    render_pdf,
)
from mltrail.report.svg import lineage_svg

__all__ = [
    "FORMATS",
    "REPORT_EXTRA",
    "bundle_facts",
    "gather_report",
    "lineage_svg",
    "render_html",
    "render_markdown",
    "render_pdf",
]
