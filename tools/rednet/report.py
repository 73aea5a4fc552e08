"""The one writer of the project's result tables: markdown and CSV text.

``tables`` (results/tables.md, .csv), ``bench`` (results/bench/bench.md, summary.csv) and
``demo`` (results/demo/results.md, zoo.csv, training.csv) render their tables with these functions, so every
table the project writes has the same form: ``| a | b |`` rows under a ``|---|---|`` rule.
"""
from __future__ import annotations

import csv
import io
from typing import Iterable, Sequence


def md_row(cells: Iterable) -> str:
    """One markdown table row: ``| a | b |``; an empty cell is ``| |``."""
    return "|" + "|".join(f" {c} " if str(c) != "" else " " for c in cells) + "|"


def md_table(header: Sequence, rows: Iterable[Sequence] = ()) -> list[str]:
    """A markdown table's lines: the header, the ``|---|`` rule, then one line per row."""
    return [md_row(header), "|" + "---|" * len(header)] + [md_row(r) for r in rows]


def csv_text(header: Sequence, rows: Iterable[Sequence], lineterminator: str = "\n") -> str:
    """CSV text: the header, then the rows (cells as given; format numbers before)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=lineterminator)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()
