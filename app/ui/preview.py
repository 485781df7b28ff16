"""Upload preview: what the importer will make of a file, before anything is stored.

Uses the importers' own detection through their public functions, so the preview and the real
import cannot disagree: :func:`app.importers.detect_format`, ``csv_format.decode`` and
``sniff_delimiter`` for delimited text, ``tabular.map_columns`` for the column mapping, and
:func:`app.importers.parse` on the head of the file for the first records and the problems.

A preview reads at most :data:`PREVIEW_BYTES` of a text file (cut at a line end; the browser
sends only that much, see ``static/ui.js``). XLSX workbooks are ZIP files and are read whole.

Traps:

* Problems in a preview come from the head of the file only; the import itself checks every
  line and lists every problem (shown with :func:`source_lines`).
* A field left on "detect" is found by header name even if the user meant "none": an
  importer mapping cannot say "no such column". The form says so.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app import importers
from app.importers import ImportOptions, ImportRejected, Problem, UnsupportedFormat, csv_format, tabular

PREVIEW_BYTES = 256 * 1024
PREVIEW_ROWS = 10
MAPPED_FIELDS: tuple[str, ...] = tabular.FIELDS
TABULAR = ("csv", "xlsx")
DELIMITERS = {"": None, "comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}
"""Form value -> delimiter (a tab cannot travel safely in an HTML attribute)."""

OPTION_FIELDS = ("format", "encoding", "delimiter", "decimal", "thousands", "date_format", "sign",
                 "default_currency", "header_row", "sheet")


@dataclass
class ShownProblem:
    line: int | None
    column: str | None
    reason: str
    source: str | None = None


@dataclass
class Preview:
    filename: str
    options: ImportOptions
    format: str | None = None
    error: str | None = None
    truncated: bool = False
    delimiter: str | None = None
    header: list[str] = field(default_factory=list)
    header_line: int | None = None
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    mapping: dict[str, str] = field(default_factory=dict)
    explicit: set[str] = field(default_factory=set)
    problems: list[ShownProblem] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    option_problems: list[str] = field(default_factory=list)

    @property
    def tabular(self) -> bool:
        return self.format in TABULAR


def options_from_form(form: Any) -> tuple[ImportOptions, list[str]]:
    """ImportOptions from the upload form's fields; invalid values come back as problems."""
    raw: dict[str, Any] = {}
    for name in OPTION_FIELDS:
        value = str(form.get(f"opt_{name}") or "")
        if name != "thousands":  # a space is a thousands separator
            value = value.strip()
        if name == "delimiter":
            if value not in DELIMITERS:
                allowed = ", ".join(k or "auto" for k in DELIMITERS)
                return ImportOptions(), [f"delimiter {value!r} is not one of {allowed}"]
            value = DELIMITERS[value] or ""
        if value != "":
            raw[name] = value
    if raw.get("thousands") == "none":
        raw["thousands"] = ""
    columns = {f: str(form.get(f"map_{f}") or "").strip() for f in MAPPED_FIELDS}
    raw["columns"] = {f: v for f, v in columns.items() if v}
    try:
        return ImportOptions.model_validate(raw), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            problems.append(f"{loc or 'options'}: {err['msg']}")
        return ImportOptions(), problems


def head(data: bytes) -> tuple[bytes, bool]:
    """The first :data:`PREVIEW_BYTES` of a text file cut at a line end; ``(bytes, truncated)``."""
    if len(data) <= PREVIEW_BYTES or data.startswith(b"PK\x03\x04"):
        return data, False
    cut = data.rfind(b"\n", 0, PREVIEW_BYTES)
    return data[: cut + 1 if cut > 0 else PREVIEW_BYTES], True


def build(data: bytes, filename: str, side: str, options: ImportOptions, *, truncated: bool = False) -> Preview:
    """The preview of ``data`` read with ``options`` (see the module doc)."""
    data, cut = head(data)
    preview = Preview(filename=filename, options=options, truncated=truncated or cut)
    if not data.strip():
        preview.error = "the file is empty"
        return preview
    try:
        preview.format = importers.detect_format(data, filename) if options.format == "auto" else options.format
    except UnsupportedFormat as exc:
        preview.error = str(exc)
        return preview
    try:
        if preview.format == "csv":
            _csv_table(preview, data)
        elif preview.format == "xlsx":
            _xlsx_table(preview, data)
    except ImportRejected as exc:
        preview.problems = with_sources(exc.problems, data, preview.format, options)
        return preview
    if preview.header:
        index, _ = tabular.map_columns(preview.header, options, preview.header_line or 1)
        preview.mapping = {f: preview.header[i] for f, i in index.items()}
        preview.explicit = set(options.columns.model_dump(exclude_none=True))
    try:
        result = importers.parse(data, filename=filename, side=side, options=options)
    except UnsupportedFormat as exc:
        preview.error = str(exc)
    except ImportRejected as exc:
        preview.problems = with_sources(exc.problems, data, preview.format, options)
    else:
        preview.records = result.records.head(PREVIEW_ROWS).to_dicts()
    return preview


def _csv_table(preview: Preview, data: bytes) -> None:
    options = preview.options
    text = csv_format.decode(data, options.encoding, preview.filename)
    lines = io.StringIO(text, newline="").readlines()
    delimiter = options.delimiter or csv_format.sniff_delimiter(lines[options.header_row - 1:], options.quotechar)
    preview.delimiter = delimiter
    reader = csv.reader(iter(lines), delimiter=delimiter, quotechar=options.quotechar)
    seen = 0
    try:
        while len(preview.rows) < PREVIEW_ROWS:
            start = reader.line_num + 1
            row = next(reader)
            if not row or all(not cell.strip() for cell in row):
                continue
            seen += 1
            if seen < options.header_row:
                continue
            if not preview.header:
                preview.header, preview.header_line = [cell.strip() for cell in row], start
            else:
                preview.rows.append((start, row))
    except (StopIteration, csv.Error):
        pass


def _xlsx_table(preview: Preview, data: bytes) -> None:
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    options = preview.options
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError):
        return  # importers.parse reports it in its own words
    try:
        names = book.sheetnames
        if options.sheet is not None and options.sheet not in names:
            return
        sheet = book[options.sheet or names[0]]
        seen = 0
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            cells = ["" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v)) for v in values]
            if not any(c.strip() for c in cells):
                continue
            seen += 1
            if seen < options.header_row:
                continue
            if not preview.header:
                preview.header, preview.header_line = [c.strip() for c in cells], number
                while preview.header and not preview.header[-1]:
                    preview.header.pop()
            else:
                preview.rows.append((number, cells[: len(preview.header)]))
                if len(preview.rows) >= PREVIEW_ROWS:
                    break
    finally:
        book.close()


SHOWN_PROBLEMS = 200


def with_sources(problems: list[Problem], data: bytes, fmt: str | None, options: ImportOptions) -> list[ShownProblem]:
    """Problems with the text of the file's own line beside each (text formats), at most 200."""
    lines: list[str] = []
    if fmt != "xlsx":
        text = data.decode(options.encoding if fmt == "csv" else "utf-8", errors="replace")
        lines = io.StringIO(text, newline="").readlines()
    out = []
    for p in problems[:SHOWN_PROBLEMS]:
        source = None
        if p.line is not None and 1 <= p.line <= len(lines):
            source = lines[p.line - 1].rstrip("\r\n")[:300]
        out.append(ShownProblem(p.line, p.column, p.reason, source))
    return out


def from_api_problems(problems: list[dict[str, Any]], data: bytes, filename: str,
                      options: ImportOptions) -> list[ShownProblem]:
    """The API's 422 body (``[{line, column, reason}]``) with source lines, for the import page."""
    try:
        fmt = importers.detect_format(data, filename) if options.format == "auto" else options.format
    except UnsupportedFormat:
        fmt = None
    parsed = [Problem(p.get("line"), p.get("column"), str(p.get("reason"))) for p in problems]
    return with_sources(parsed, data, fmt, options)
