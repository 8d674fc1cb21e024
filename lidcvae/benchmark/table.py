"""The benchmark's long score table (``score_benchmark``) as markdown: test scores, paired differences, val scores.

Cells: ``0.83 [0.77, 0.89]`` (score and patient-bootstrap 95 % interval); ``—`` where the row (or, for a
paired difference, its reference) skips the target (its features contain it); ``n/a`` where it could not be
scored (no test patient, one class, ...), each such cell's reason listed under the test table. Minus is
written "−"; a value under 0.005 in size keeps a third decimal (``−0.003``), since which side of 0 an
interval's bound lies on is the verdict, and one under 0.0005 is ``0.00``, never ``−0.00``. A row scored on fewer test
nodules than the target has (missing features) says so in its cell.
"""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["CONTAINS_TARGET", "format_number", "format_markdown"]

DIRECTION = "AUC: 0.5 chance, higher better; R²: 1 perfect, 0 = mean, higher better."
SKIPPED, UNSCORED = "—", "n/a"
#: The reason of a skipped cell whose row's features contain the target (shown "—"; other skipped cells "n/a").
CONTAINS_TARGET = "the row's features contain the target"


def format_number(value: float, signed: bool = False) -> str:
    """Two decimals (three under 0.005, so a bound near 0 shows its side) with a true minus sign; ``signed``
    adds "+" to positives; a value that rounds to zero is always ``0.00``."""
    if value is None or not math.isfinite(value):
        return UNSCORED
    digits = 3 if abs(value) < 0.005 else 2
    rounded = round(float(value), digits) + 0.0  # + 0.0 turns −0.0 into 0.0
    text = f"{abs(rounded):.{digits}f}" if rounded else "0.00"
    if rounded < 0:
        return "−" + text
    return ("+" + text) if signed and rounded > 0 else text


def _contains(records: pd.Series | pd.DataFrame):
    """Whether a record (or each of a table's) is skipped because the row's features contain the target."""
    return (records["status"] == "skipped") & (records["reason"] == CONTAINS_TARGET)


def _cell(record: pd.Series, point: str, low: str, high: str, signed: bool, target_n: int) -> str:
    if _contains(record):
        return SKIPPED
    if record["status"] == "skipped" or not math.isfinite(record[point]):
        return UNSCORED
    cell = format_number(record[point], signed)
    if math.isfinite(record[low]):
        cell += f" [{format_number(record[low], signed)}, {format_number(record[high], signed)}]"
    return cell + (f" (n = {int(record['n_test_nodules'])})" if record["n_test_nodules"] < target_n else "")


def _targets(table: pd.DataFrame) -> pd.DataFrame:
    """One line per target in table order: its title, metric and the test split's n (nodules, patients)."""
    grouped = table.groupby("target", sort=False)
    return pd.DataFrame({"title": grouped["target_title"].first(), "metric": grouped["metric"].first(),
                         "n": grouped["n_test_nodules"].max(), "patients": grouped["n_test_patients"].max(),
                         "n_val": grouped["n_val_nodules"].max()})


def _grid(table: pd.DataFrame, targets: pd.DataFrame, cell) -> list[str]:
    header = ["row", *(f"{t.title} ({t.metric})" for t in targets.itertuples())]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, records in table.groupby("row", sort=False):
        by_target = records.set_index("target")
        cells = [str(records["title"].iloc[0])]
        cells += [cell(by_target.loc[target], int(t.n)) for target, t in targets.iterrows()]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _unscored_lines(table: pd.DataFrame) -> list[str]:
    """The cells not scored ("n/a"), one line per reason and set of rows: the targets, the rows, the reason."""
    scorable = table[~_contains(table)]
    unscored = scorable[scorable["status"] == "skipped"]
    every_row = scorable.groupby("target_title", sort=False)["title"].agg(tuple)
    groups: dict[tuple[str, str], list[str]] = {}
    for (target, reason), cells in unscored.groupby(["target_title", "reason"], sort=False):
        rows = tuple(cells["title"])
        groups.setdefault((reason, "every row" if rows == every_row[target] else "; ".join(rows)), []).append(target)
    all_targets = list(dict.fromkeys(table["target_title"]))
    lines = [f"- {'every target' if targets == all_targets else ', '.join(targets)} — {rows}: {reason}."
             for (reason, rows), targets in groups.items()]
    return ["Not scored (n/a), why:", "", *lines, ""] if lines else []


def _n_line(targets: pd.DataFrame) -> str:
    counts = "; ".join(f"{t.title} {int(t.n)} nodules / {int(t.patients)} patients" for t in targets.itertuples())
    return f"Test split, n per target: {counts}."


def format_markdown(table: pd.DataFrame, control: str, diameter: str, bootstrap_samples: int,
                    radiomics_row: str) -> str:
    """Markdown: the test-score table, the paired differences (vs control, vs diameter, vs radiomics where the
    table has that row) and the val scores.

    Args:
        table: ``score_benchmark``'s long table. control, diameter, radiomics_row: the reference rows' names
            (radiomics_row's section is left out when the table has no such row).
        bootstrap_samples: the number of patient resamples behind each interval (for the header).
    """
    targets = _targets(table)
    titles = dict(zip(table["row"], table["title"]))
    intervals = f"Intervals: patient-bootstrap 95 % ({bootstrap_samples} resamples of the test patients)."
    test = _grid(table, targets, lambda r, n: _cell(r, "test", "ci_low", "ci_high", False, n))
    parts = ["## Test split: each row scored once (probe fitted on train + val)", "", _n_line(targets),
             f"{DIRECTION} {intervals}", "", *test, "", *_unscored_lines(table)]
    parts += ["## Paired differences on the test split", "", _n_line(targets),
              f"Row's score minus the reference's on the same test nodules and resamples; positive = the row "
              f"scores higher. {intervals}", ""]
    references = [("diff_vs_control", control), ("diff_vs_diameter", diameter)]
    references += [("diff_vs_radiomics", radiomics_row)] if radiomics_row in titles else []
    for column, reference in references:
        skipped = set(table.loc[(table["row"] == reference) & _contains(table), "target"])
        parts += [f"### Row − {titles[reference]}", ""]
        parts += _grid(table[table["row"] != reference], targets,  # a reference minus itself is 0 by construction
                       lambda r, n, c=column: SKIPPED if r.name in skipped else
                       _cell(r, c, f"{c}_ci_low", f"{c}_ci_high", True, n))
        parts.append("")
    val_counts = "; ".join(f"{t.title} {int(t.n_val)} nodules" for t in targets.itertuples())
    parts += ["## Selection split (val): probe fitted on train only", "",
              "These are the numbers choices may be made on (variant, epochs, probe); the test numbers above "
              f"are looked at once, after every choice. Val split, n per target: {val_counts}. {DIRECTION}", ""]
    parts += _grid(table, targets, lambda r, n: SKIPPED if _contains(r) else format_number(r["val"]))
    return "\n".join(parts) + "\n"
