"""Everything one evaluation made, written together when it is done: figures/, projector/, metrics.json and
report.html, each file atomically and the page last, so a failed evaluation leaves no half-written set
beside an old report."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lidcvae.evaluate.figures import Drawn
from lidcvae.evaluate.projector import write_projector
from lidcvae.intensity import HUWindow
from lidcvae.io import atomic_path

__all__ = ["write_figures", "write_outputs"]


def write_figures(figure_dir: str | os.PathLike, drawn: Sequence[Drawn]) -> list[Path]:
    """Write every figure as ``figure_dir``/name, each atomically; the paths in order."""
    paths = []
    for figure in drawn:
        with atomic_path(Path(figure_dir) / figure.name) as tmp:
            tmp.write_bytes(figure.png)
        paths.append(Path(figure_dir) / figure.name)
    return paths


def write_outputs(out_dir: Path, metrics: dict, drawn: Sequence[Drawn],
                  projected: tuple[np.ndarray, pd.DataFrame, np.ndarray] | None, hu_window: HUWindow | None, page: str) -> None:
    """figures/ (``drawn``), projector/ (when ``projected`` holds the (codes, table, images) to show),
    metrics.json, then ``page`` (the rendered report) as report.html."""
    write_figures(out_dir / "figures", drawn)
    if projected is not None:
        write_projector(*projected, out_dir / "projector", hu_window)
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    with atomic_path(out_dir / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
