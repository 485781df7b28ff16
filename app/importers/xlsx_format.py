"""XLSX workbooks via openpyxl (read-only, cached values), then the same pipeline as CSV.

Each cell becomes text before :mod:`tabular` sees it, so the two formats share every rule:

* text cells stay as they are (and are parsed with the options' separators and date format);
* number cells are written with the options' decimal separator and no thousands separator.
  The trap: Excel keeps numbers as binary doubles, so a cell showing 0.3 may hold
  0.30000000000000004. Numbers are rounded to 15 significant digits (what Excel itself shows)
  before their decimals are checked against the currency;
* date cells are written in ``date_format`` (ISO when none is given);
* formulas give their cached result (a workbook saved by a tool that does not compute
  formulas has none: such cells arrive empty and are reported as such).

Line numbers are sheet row numbers; `raw` is the row's cell texts joined by tabs.
"""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, time
from decimal import Decimal

from app.importers import ImportOptions, ImportRejected, ImportResult, Problem
from app.importers.tabular import Table, build_records, problems_from_rows


def _cell_text(value: object, options: ImportOptions) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        value = value.date() if value.time() == time(0) else value
        if isinstance(value, datetime):
            return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.strftime(options.date_format or "%Y-%m-%d")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = format(Decimal(format(value, ".15g")), "f")
        return text.replace(".", options.decimal) if options.decimal != "." else text
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.replace(".", options.decimal) if options.decimal != "." else text
    return str(value)


def parse(data: bytes, *, filename: str, side: str, options: ImportOptions) -> ImportResult:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        reason = "not a readable XLSX workbook (its ZIP container or parts are damaged); save it again from the spreadsheet program"
        raise ImportRejected(filename, [Problem(None, None, reason)]) from exc
    try:
        names = workbook.sheetnames
        if options.sheet is not None and options.sheet not in names:
            raise ImportRejected(filename, [Problem(None, None, f"no sheet named {options.sheet!r}; the workbook has {names}")])
        sheet = workbook[options.sheet] if options.sheet is not None else workbook[names[0]]
        header: list[str] | None = None
        header_line = 0
        rows: list[list[str | None]] = []
        lines: list[int] = []
        raws: list[str] = []
        seen = 0
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            cells = [_cell_text(value, options) for value in values]
            if all(cell is None or not str(cell).strip() for cell in cells):
                continue
            seen += 1
            if seen < options.header_row:
                continue
            if header is None:
                header, header_line = [(cell or "").strip() for cell in cells], number
                continue
            rows.append(cells)
            lines.append(number)
            raws.append("\t".join(cell or "" for cell in cells).rstrip("\t"))
    finally:
        workbook.close()
    if header is None:
        raise ImportRejected(filename, [Problem(None, None, f"sheet {sheet.title!r} has no header row")])
    while header and not header[-1]:
        header.pop()
    width = len(header)
    problems = problems_from_rows([
        (line, None, f"cells beyond the header's {width} columns", str([c for c in row[width:] if c]))
        for row, line in zip(rows, lines)
        if any(cell is not None and str(cell).strip() for cell in row[width:])
    ])
    rows = [row[:width] + [None] * (width - len(row)) for row in rows]
    table = Table.from_rows(header, header_line, rows, lines, raws)
    try:
        result = build_records(table, options=options, side=side, filename=filename, fmt="xlsx", data=data)
    except ImportRejected as exc:
        raise ImportRejected(filename, problems + exc.problems) from None
    if problems:
        raise ImportRejected(filename, problems)
    return result
