"""CSV (and other delimited text): Python's csv module for the cells, :mod:`tabular` for the rest.

Line numbers are physical lines of the file, so a quoted cell that spans lines moves the next
record's line number on, as an editor would show it. A file without any quote character takes a
fast path: one physical line per record, split by polars in bulk (a million lines in about a
second); anything quoted goes through the csv module. Blank lines are skipped. Rows above
``header_row`` (bank exports often open with an account preamble) are ignored.

Problems of one kind on many lines are one problem with a count (:func:`tabular.problems_from_frame`).

The traps: a UTF-8 byte-order mark is stripped (Excel writes one); a cp1252 export read as
UTF-8 is refused with every offending line listed and a hint, never decoded with replacement
characters; the delimiter is sniffed only among ``, ; TAB |`` and must give every sampled
line the header's number of fields.
"""

from __future__ import annotations

import csv
import io

import polars as pl

from app.importers import ImportOptions, ImportRejected, ImportResult, Problem
from app.importers.tabular import (
    Table,
    build_records,
    problems_from_frame,
    problems_from_rows,
)

_DELIMITERS = (",", ";", "\t", "|")
_SNIFF_LINES = 50


def decode(data: bytes, encoding: str, filename: str) -> str:
    """Decode strictly; on failure list every line that is not valid in `encoding`."""
    codec = "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        pass
    kind = f"not valid {encoding}; set encoding (e.g. cp1252 or latin-1) to the file's real encoding"
    rows: list[tuple[int | None, str | None, str, str | None]] = []
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            line.decode(codec if number == 1 else encoding)
        except UnicodeDecodeError as exc:
            rows.append((number, None, kind, f"byte 0x{line[exc.start : exc.start + 1].hex()} at position {exc.start + 1}"))
    raise ImportRejected(filename, problems_from_rows(rows) or [Problem(None, None, f"the file is not valid {encoding}")])


def sniff_delimiter(lines: list[str], quotechar: str) -> str:
    """The delimiter among , ; TAB | that splits the sample into equal, >1 field counts."""
    sample = [line for line in lines[:_SNIFF_LINES] if line.strip()]
    best, best_fields = ",", 1
    for delimiter in _DELIMITERS:
        try:
            counts = {len(row) for row in csv.reader(sample, delimiter=delimiter, quotechar=quotechar) if row}
        except csv.Error:
            continue
        if len(counts) == 1:
            fields = counts.pop()
            if fields > best_fields:
                best, best_fields = delimiter, fields
    if best_fields == 1:
        # inconsistent sample (e.g. a preamble): fall back to the header line's most frequent one
        header = sample[0] if sample else ""
        best = max(_DELIMITERS, key=header.count)
    return best


def _unquoted_table(lines: list[str], delimiter: str, options: ImportOptions) -> tuple[Table | None, list[Problem]]:
    """Fast path for files without any quote character: one physical line is one record, split
    by polars in bulk. Returns (None, []) when the header is not found (the slow path reports)."""
    stripped = pl.Series("raw", lines, dtype=pl.Utf8).str.strip_chars_end("\r\n")
    frame = pl.DataFrame({"raw": stripped, "line": pl.int_range(1, len(lines) + 1, eager=True, dtype=pl.Int64)})
    frame = frame.filter(pl.col("raw").str.replace_all(delimiter, "", literal=True).str.strip_chars() != "")
    if frame.height < options.header_row:
        return None, []
    header_row = frame.row(options.header_row - 1, named=True)
    header = [cell.strip() for cell in header_row["raw"].split(delimiter)]
    body = frame.slice(options.header_row).with_columns(cells=pl.col("raw").str.split(delimiter, inclusive=False))
    width = len(header)
    bad = body.filter(pl.col("cells").list.len() != width)
    problems = problems_from_frame(bad.select(
        "line", column=pl.lit(None, dtype=pl.Utf8),
        kind=pl.concat_str(pl.lit(f"expected {width} fields like the header, found "),
                           pl.col("cells").list.len().cast(pl.Utf8), pl.lit(f" (delimiter {delimiter!r})")),
        value=pl.lit(None, dtype=pl.Utf8)))
    good = body.filter(pl.col("cells").list.len() == width)
    cells = good.select([pl.col("cells").list.get(i).alias(str(i)) for i in range(width)])
    table = Table(header, header_row["line"], cells, good.get_column("line"), good.get_column("raw"))
    return table, problems


def parse(data: bytes, *, filename: str, side: str, options: ImportOptions) -> ImportResult:
    text = decode(data, options.encoding, filename)
    # newline="" keeps \r\n / \r / \n as they are and never splits on other Unicode breaks
    lines = io.StringIO(text, newline="").readlines()
    delimiter = options.delimiter or sniff_delimiter(lines[options.header_row - 1 :], options.quotechar)
    if options.quotechar not in text:
        table, problems = _unquoted_table(lines, delimiter, options)
        if table is not None:
            return _finish(table, problems, data=data, filename=filename, side=side, options=options)
    return _quoted(lines, delimiter, data=data, filename=filename, side=side, options=options)


def _finish(
    table: Table, problems: list[Problem], *, data: bytes, filename: str, side: str, options: ImportOptions
) -> ImportResult:
    """Cell checks on the rows that were well-formed; structural problems reported with them."""
    if problems and table.cells.height == 0:
        raise ImportRejected(filename, problems)
    try:
        result = build_records(table, options=options, side=side, filename=filename, fmt="csv", data=data)
    except ImportRejected as exc:
        # structural problems (field counts) and cell problems are reported together
        raise ImportRejected(filename, problems + exc.problems) from None
    if problems:
        raise ImportRejected(filename, problems)
    return result


def _quoted(
    lines: list[str], delimiter: str, *, data: bytes, filename: str, side: str, options: ImportOptions
) -> ImportResult:
    """General path: Python's csv module, tracking the physical lines each record spans."""
    # the reader counts the physical lines it consumed (line_num): record i spans lines[start-1:end]
    reader = csv.reader(iter(lines), delimiter=delimiter, quotechar=options.quotechar, strict=True)
    problems: list[Problem] = []
    widths: list[tuple[int | None, str | None, str, str | None]] = []
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str | None]] = []
    numbers: list[int] = []
    raws: list[str] = []
    record_index = 0
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(Problem(reader.line_num, None, f"malformed CSV: {exc} (delimiter {delimiter!r}, quote {options.quotechar!r})"))
            break
        end = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        record_index += 1
        if record_index < options.header_row:
            continue
        if header is None:
            header, header_line = [cell.strip() for cell in row], start
            continue
        if len(row) != len(header):
            kind = f"expected {len(header)} fields like the header, found {len(row)} (delimiter {delimiter!r})"
            widths.append((start, None, kind, None))
            continue
        rows.append(row)
        numbers.append(start)
        raws.append("".join(lines[start - 1 : end]).rstrip("\r\n"))
    problems = problems_from_rows(widths) + problems
    if header is None:
        problems.append(Problem(None, None, f"no header row (header_row={options.header_row}) in the file"))
        raise ImportRejected(filename, problems)
    table = Table.from_rows(header, header_line, rows, numbers, raws)
    return _finish(table, problems, data=data, filename=filename, side=side, options=options)
