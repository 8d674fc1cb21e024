"""One self-contained HTML page per run: headline, warnings, then sections that each answer one question.

Figures are inlined as base64 data URIs, so the page is one file that opens anywhere. Every section
is a ``<section id=...>`` so a test (or a link) can find it; the full metrics.json dump comes last.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Section", "flatten_metrics", "figure_html", "table_html", "render_report"]

_STYLE = """
body { font-family: sans-serif; max-width: 1150px; margin: 1.5em auto; color: #222; line-height: 1.35; }
.headline { border: 2px solid #246; background: #f3f7fb; padding: .3em 1.2em 1em; }
.headline h1 { margin-bottom: .2em; }
.keynumbers td.value { font-size: 1.1em; font-weight: bold; white-space: nowrap; }
.facts { display: flex; gap: 1.5em; align-items: flex-start; } .facts p { margin-top: .4em; }
.convention { font-style: italic; font-size: .9em; }
.warnings { border: 3px solid #c00; background: #fee; color: #900; padding: .5em 1em; font-weight: bold; }
.notes { border: 1px solid #aaa; background: #f6f6f6; padding: .5em 1em; font-size: .92em; }
.unhealthy { color: #a40; font-weight: bold; }
.healthy { color: #262; }
.demo { border: 2px solid #a80; background: #fff8e0; padding: .4em .8em; }
table.greyed, table.greyed td, table.greyed th { color: #888; }
.skipped { color: #a40; font-weight: bold; }
section { border-top: 1px solid #bbb; margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
td.value { font-family: monospace; text-align: right; }
figure { margin: 1.2em 0; } img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .92em; color: #333; }
"""


@dataclass
class Section:
    """One part of the report: ``heading`` states its question, ``body`` is trusted HTML."""

    id: str
    heading: str
    body: str


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "", max_list: int = 10) -> list[tuple[str, str]]:
    """Nested metrics → [(dotted key, formatted value)]; long lists (per-dimension KL) are left to figures."""
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(flatten_metrics(value, f"{name}.", max_list))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if len(value) <= max_list and all(not isinstance(v, (Mapping, list)) for v in value):
                rows.append((name, ", ".join(_format(v) for v in value)))
        else:
            rows.append((name, _format(value)))
    return rows


def figure_html(png: bytes, caption: str, alt: str) -> str:
    """A ``<figure>`` with the PNG bytes inlined as a data URI, ``alt`` its text, and an escaped caption."""
    encoded = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "") -> str:
    """An escaped HTML table; float cells are shown to 4 significant digits."""
    def cell(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return html.escape(text)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><tr>{head}</tr>{body}</table>'


def _box(css_class: str, heading: str, lines: Sequence[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f'<div class="{css_class}"><h2>{heading}</h2><ul>{items}</ul></div>'


def render_report(title: str, headline: str, sections: Sequence[Section], metrics: Mapping[str, Any],
                  warnings: Sequence[str] = (), notes: Sequence[str] = ()) -> str:
    """The report page as one HTML string.

    Args:
        headline: trusted HTML of the headline block (what was trained on what, the key numbers).
        sections: the question-answering sections, in reading order.
        metrics: metrics.json's content, listed in full at the end.
    """
    flat = flatten_metrics(metrics)
    rows = "".join(f'<tr><td>{html.escape(k)}</td><td class="value">{html.escape(v)}</td></tr>' for k, v in flat)
    body = [
        f'<div class="headline" id="headline"><h1>{html.escape(title)}</h1>{headline}</div>',
        _box("warnings", "Warnings", warnings),
        *(f'<section id="{s.id}"><h2>{html.escape(s.heading)}</h2>{s.body}</section>' for s in sections),
        _box("notes", "Notes: what each number is computed on", notes),
        '<section id="all-numbers"><h2>All numbers (metrics.json)</h2><details><summary>show the '
        f'{len(flat)} values</summary><table><tr><th>metric</th><th>value</th></tr>{rows}'
        "</table></details></section>",
    ]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>")
