"""One self-contained HTML page per run: warnings first (red box), metrics table, figures inlined as base64."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lidcvae.io import atomic_path

__all__ = ["flatten_metrics", "render_report", "write_report"]

_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
.warnings { border: 3px solid #c00; background: #fee; color: #900; padding: .5em 1em; font-weight: bold; }
.notes { border: 1px solid #aaa; background: #f6f6f6; padding: .5em 1em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
td.value { font-family: monospace; text-align: right; }
figure { margin: 1.5em 0; } img { max-width: 100%; border: 1px solid #ddd; }
"""


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


def _image_tag(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{encoded}">'


def _box(css_class: str, heading: str, lines: Sequence[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f'<div class="{css_class}"><h2>{heading}</h2><ul>{items}</ul></div>'


def render_report(
    title: str,
    metrics: Mapping[str, Any],
    figures: Sequence[tuple[str, str | os.PathLike]],
    warnings: Sequence[str] = (),
    notes: Sequence[str] = (),
    sections: Sequence[tuple[str, str]] = (),
) -> str:
    """The report page as one HTML string.

    Args:
        figures: (caption, PNG path) pairs, inlined as base64.
        sections: (heading, trusted HTML fragment) pairs placed after the metrics, e.g. the MNIST size table.
    """
    rows = "".join(
        f'<tr><td>{html.escape(k)}</td><td class="value">{html.escape(v)}</td></tr>' for k, v in flatten_metrics(metrics)
    )
    body = [
        f"<h1>{html.escape(title)}</h1>",
        _box("warnings", "Warnings", warnings),
        _box("notes", "Notes", notes),
        f"<h2>Metrics</h2><table><tr><th>metric</th><th>value</th></tr>{rows}</table>",
        *(f"<h2>{html.escape(heading)}</h2>{fragment}" for heading, fragment in sections),
        "<h2>Figures</h2>",
    ]
    for caption, path in figures:
        body.append(f"<figure>{_image_tag(Path(path))}<figcaption>{html.escape(caption)}</figcaption></figure>")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
    )


def write_report(path: str | os.PathLike, *args, **kwargs) -> Path:
    """Render (see ``render_report``) and write the page atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(render_report(*args, **kwargs), encoding="utf-8")
    return Path(path)
