"""A self-contained HTML validation report for one series.

Every value that comes from a file or a validator (UIDs, paths, messages, which can hold
patient-entered text) is escaped; the page has no scripts and no external resources.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape, unescape
from typing import Any

from dicomflow.validation.dciodvfy import Severity
from dicomflow.validation.series import SeriesValidation

__all__ = ["read_report_summary", "render_report_html"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f2f2}
.error{color:#a40000;font-weight:600}.warning{color:#8a5a00}.ok{color:#1b6e1b}
code{font-size:.9em}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def render_report_html(
    result: SeriesValidation,
    *,
    title: str | None = None,
    details: Mapping[str, object] | None = None,
) -> str:
    """Render the validation of a series as an HTML page.

    Parameters
    ----------
    result
        The validation.
    title
        Page heading; defaults to the Series Instance UID.
    details
        Extra key/value lines for the summary (e.g. modality, batch id).

    Returns
    -------
    str
        A complete HTML document: summary first, then every finding with its instance.
    """
    heading = title or f"Validation of series {result.series_instance_uid}"
    state = "error" if result.errors else ("warning" if result.warnings else "ok")
    summary_rows = [
        ("Series Instance UID", result.series_instance_uid),
        ("Checked at", result.checked_at.isoformat()),
        ("Instances validated", f"{len(result.instances)} of {result.total_instances}"),
        ("Errors", result.errors),
        ("Warnings", result.warnings),
        ("Validator crashes", result.crashed),
        (
            "Missing instance numbers",
            ", ".join(str(n) for n in result.missing_instance_numbers) or "none",
        ),
        (
            "Duplicate instance numbers",
            ", ".join(str(n) for n in result.duplicate_instance_numbers) or "none",
        ),
        ("Instances without number", result.instances_without_number),
    ]
    summary_rows += [(str(k), v) for k, v in (details or {}).items()]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(heading)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(heading)}</h1>",
        f'<p class="{state}">{_e(result.errors)} error(s), {_e(result.warnings)} warning(s)'
        f" in {_e(len(result.instances))} validated instance(s).</p>",
        '<table class="summary">',
    ]
    parts += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary_rows]
    parts.append("</table>")

    parts.append("<h2>Findings</h2>")
    if not any(i.findings for i in result.instances):
        parts.append('<p class="ok">No findings.</p>')
    else:
        parts.append(
            '<table class="findings"><tr><th>Instance</th><th>IOD</th>'
            "<th>Severity</th><th>Message</th></tr>"
        )
        for instance in result.instances:
            name = instance.sop_instance_uid or instance.path.name
            for finding in instance.findings:
                css = "error" if finding.severity is Severity.ERROR else "warning"
                parts.append(
                    f"<tr><td><code>{_e(name)}</code><br><small>{_e(instance.path)}</small></td>"
                    f"<td>{_e(instance.iod or '')}</td>"
                    f'<td class="{css}">{_e(finding.severity.value)}</td>'
                    f"<td>{_e(finding.message)}</td></tr>"
                )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


_SUMMARY_ROW = re.compile(r"<tr><th>([^<]*)</th><td>([^<]*)</td></tr>")
_VALIDATED = re.compile(r"^(\d+) of \d+$")


def read_report_summary(page: str) -> dict[str, Any] | None:
    """The counts of a report :func:`render_report_html` wrote, or ``None`` if it is not one.

    Lets the index be rebuilt after it was lost: the report in the object store is then the
    only record of a validation (see :mod:`dicomflow.pipeline.rebuild`).

    Returns
    -------
    dict or None
        ``errors``, ``warnings``, ``instances_checked`` and ``checked_at``, as
        :meth:`~dicomflow.validation.SeriesValidation.summary` gives them.
    """
    rows: dict[str, str] = {}
    for key, value in _SUMMARY_ROW.findall(page):
        # The first row of a name wins: caller-given details come after the counts.
        rows.setdefault(unescape(key), unescape(value))
    try:
        errors = int(rows["Errors"])
        warnings = int(rows["Warnings"])
        checked_at = rows["Checked at"]
    except (KeyError, ValueError):
        return None
    validated = _VALIDATED.match(rows.get("Instances validated", ""))
    return {
        "errors": errors,
        "warnings": warnings,
        "instances_checked": int(validated.group(1)) if validated else 0,
        "checked_at": checked_at,
    }
