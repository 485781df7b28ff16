"""Importers: bytes of a statement or ledger file -> normalised records (:mod:`app.records`).

One entry point, :func:`parse`. It detects the format (or takes the one named in the options),
hands the bytes to that format's module and returns an :class:`ImportResult`, or raises::

    ImportFailed                    base of everything raised here on purpose
     ├── UnsupportedFormat          not a format we read            -> HTTP 415
     └── ImportRejected             a format we read, but malformed -> HTTP 422, .problems lists
                                    every problem found (line, column, reason), not just the first

Parsing is all-or-nothing: either every line becomes a record or nothing is returned. The
service stores nothing for a rejected file.

Formats live in a name -> module registry, imported lazily (a CSV upload never imports lxml):

    ========  ===============================  ==========================================
    name      module                           parser underneath
    ========  ===============================  ==========================================
    csv       app.importers.csv_format         Python's csv module + polars
    xlsx      app.importers.xlsx_format        openpyxl (read-only mode)
    ofx       app.importers.ofx_format         ofxtools
    camt053   app.importers.camt053_format     lxml, namespace-agnostic (camt.053.001.02..13)
    mt940     app.importers.mt940_format       mt-940
    ========  ===============================  ==========================================
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.records import SIDES, UnknownCurrency, format_minor, minor_unit

FORMATS: dict[str, str] = {
    "csv": "app.importers.csv_format",
    "xlsx": "app.importers.xlsx_format",
    "ofx": "app.importers.ofx_format",
    "camt053": "app.importers.camt053_format",
    "mt940": "app.importers.mt940_format",
}
"""Format name -> module that implements ``parse(data, *, filename, side, options)``."""

SUPPORTED_FORMATS: tuple[str, ...] = tuple(FORMATS)


class ImportFailed(Exception):
    """Base class of every error :func:`parse` raises on purpose.

    Named so that it does not shadow the builtin ``ImportError`` (raised by a failing ``import``).
    """


class UnsupportedFormat(ImportFailed):
    """The file is in no format we read (or the one asked for is unknown). Maps to HTTP 415."""

    def __init__(self, filename: str, detail: str) -> None:
        self.filename = filename
        self.detail = detail
        super().__init__(
            f"{filename}: {detail}; supported formats are {', '.join(SUPPORTED_FORMATS)}"
        )


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an uploaded file.

    `line` is 1-based in the source (a physical text line, or the sheet row for XLSX); `column`
    is a header name, a 1-based field number, or an XML element / MT940 tag. Either may be None
    when the problem concerns the whole file.
    """

    line: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{', '.join(where) or 'file'}: {self.reason}"

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "column": self.column, "reason": self.reason}


class ImportRejected(ImportFailed):
    """The file is in a format we read but cannot be imported. Maps to HTTP 422.

    `problems` holds every problem found, sorted by line, so the user fixes the file in one go.
    The message shows the first few.
    """

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("ImportRejected needs at least one problem")
        self.filename = filename
        self.problems = sorted(problems, key=lambda p: (p.line is not None, p.line or 0, p.column or ""))
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{filename}: {len(self.problems)} problem(s): {shown}{more}")




class ColumnMapping(BaseModel):
    """Which header names hold which record field (tabular formats only: CSV, XLSX).

    Each value is a header name as it appears in the file (matched after trimming, case-
    insensitively). Unset fields are found by common header names (``amount``, ``betrag``,
    ``date``, ``buchungstag``, ...). Give either `amount` or `debit` and/or `credit`.
    """

    model_config = ConfigDict(extra="forbid")

    reference: str | None = None
    amount: str | None = None
    debit: str | None = None
    credit: str | None = None
    currency: str | None = None
    booking_date: str | None = None
    value_date: str | None = None
    counterparty: str | None = None
    description: str | None = None
    id: str | None = Field(default=None, description="the file's own id of each line, kept as records.source_id")


class ImportOptions(BaseModel):
    """How to read a file. Every field has a default that suits a plain UTF-8 CSV with ISO dates.

    The traps: `decimal` and `thousands` must differ; with ``decimal=","`` a CSV usually uses
    ``;`` as delimiter (the default ``delimiter=None`` sniffs it). `sign="invert"` flips every
    amount (ledger exports often book the bank account's money-in as a debit). With debit/credit
    columns the amount is ``credit - debit`` before `sign` applies.
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal["auto", "csv", "xlsx", "ofx", "camt053", "mt940"] = "auto"
    encoding: str = "utf-8"
    delimiter: str | None = Field(default=None, description="None: sniff among , ; TAB |")
    quotechar: str = '"'
    decimal: Literal[".", ","] = "."
    thousands: Literal["", ",", ".", " ", "'", "\u00a0", "\u202f"] = ""
    date_format: str | None = Field(
        default=None,
        description="strftime pattern such as %d.%m.%Y; None: detect among common patterns, "
        "refusing a guess when two patterns fit (01/02/2024)",
    )
    columns: ColumnMapping = Field(default_factory=ColumnMapping)
    sign: Literal["as_is", "invert"] = "as_is"
    default_currency: str | None = Field(
        default=None, description="used when the file has no currency column or field"
    )
    sheet: str | None = Field(default=None, description="XLSX sheet name; None: the first sheet")
    header_row: int = Field(default=1, ge=1, description="1-based row holding the headers (CSV, XLSX)")

    @field_validator("delimiter")
    @classmethod
    def _one_char_delimiter(cls, value: str | None) -> str | None:
        if value is not None and (len(value) != 1 or value in "\r\n"):
            raise ValueError(f"delimiter must be one character other than a newline, got {value!r}")
        return value

    @field_validator("quotechar")
    @classmethod
    def _one_char_quote(cls, value: str) -> str:
        if len(value) != 1:
            raise ValueError(f"quotechar must be one character, got {value!r}")
        return value

    @field_validator("default_currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().upper()
        try:
            minor_unit(value)
        except UnknownCurrency as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}; e.g. utf-8, cp1252, latin-1") from None
        return value

    @model_validator(mode="after")
    def _separators_differ(self) -> ImportOptions:
        if self.thousands == self.decimal:
            raise ValueError(
                f"thousands separator {self.thousands!r} equals the decimal separator; "
                "use decimal=',' with thousands '.' or ' ', or decimal='.' with thousands ','"
            )
        if self.delimiter is not None and self.delimiter in (self.decimal, self.thousands):
            if self.delimiter == self.decimal:
                raise ValueError(
                    f"delimiter {self.delimiter!r} equals the decimal separator; "
                    "a decimal-comma CSV is usually ';'-delimited"
                )
        return self


@dataclass(frozen=True)
class StatementBalance:
    """Opening and closing balance of one statement in a file, and the check that ties them.

    ``opening_minor + lines_minor == closing_minor`` holds for every balance an
    :class:`ImportResult` returns: a file where it does not is rejected. `opening_minor` is None
    for formats that carry only a closing balance (OFX's LEDGERBAL): then nothing can be checked
    and `checked` is False.
    """

    statement: str
    currency: str
    opening_minor: int | None
    closing_minor: int
    lines_minor: int
    line_count: int
    checked: bool

    def describe(self) -> str:
        if self.opening_minor is None:
            return f"{self.statement}: closing {format_minor(self.closing_minor, self.currency)} (no opening balance to check)"
        return (
            f"{self.statement}: opening {format_minor(self.opening_minor, self.currency)} + "
            f"{self.line_count} line(s) {format_minor(self.lines_minor, self.currency)} = "
            f"closing {format_minor(self.closing_minor, self.currency)}"
        )


@dataclass(frozen=True)
class ImportResult:
    """A successfully parsed file.

    `records` follows :data:`app.records.RECORD_SCHEMA` with ids 1..n in source order.
    `content_sha256` is the hex SHA-256 of the exact bytes: the service uses it to refuse a second
    upload of the same file (same bytes, whatever the filename). `warnings` are facts the user
    should see but that did not stop the import (e.g. pending entries that were skipped).
    """

    records: pl.DataFrame
    format: str
    content_sha256: str
    balances: tuple[StatementBalance, ...] = ()
    warnings: tuple[str, ...] = field(default=())


def content_sha256(data: bytes) -> str:
    """Hex SHA-256 of `data`: the identity of an upload."""
    return hashlib.sha256(data).hexdigest()


def detect_format(data: bytes, filename: str) -> str:
    """Guess the format from the content, using the filename extension only to break ties.

    Content wins over the extension (a camt.053 saved as ``.txt`` is still camt.053). Raises
    :class:`UnsupportedFormat` naming the filename when nothing fits.
    """
    head = data[:4096]
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    lower = stripped.lower()
    if head.startswith(b"PK\x03\x04"):
        if filename.lower().endswith((".xlsx", ".xlsm")) or b"xl/" in data[:65536]:
            return "xlsx"
        raise UnsupportedFormat(filename, "a ZIP archive that is not an XLSX workbook")
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise UnsupportedFormat(filename, "a legacy .xls (OLE2) workbook; save it as .xlsx")
    if lower.startswith(b"%pdf"):
        raise UnsupportedFormat(filename, "a PDF document")
    if b"ofxheader" in lower[:512] or b"<ofx>" in lower:
        return "ofx"
    if lower.startswith(b"<?xml") or lower.startswith(b"<"):
        if b"camt.053" in lower or b"bktocstmrstmt" in lower:
            return "camt053"
        if b"<ofx" in lower:
            return "ofx"
        raise UnsupportedFormat(filename, "an XML document that is neither camt.053 nor OFX")
    if (b":20:" in head and b":25:" in head) or stripped.startswith(b"{1:"):
        return "mt940"
    if b"\x00" in head:
        raise UnsupportedFormat(filename, "binary content of an unknown format")
    name = filename.lower()
    if name.endswith((".csv", ".tsv", ".txt")) or _looks_delimited(head):
        return "csv"
    raise UnsupportedFormat(filename, "content that is neither delimited text nor a known statement format")


def _looks_delimited(head: bytes) -> bool:
    lines = [line for line in head.splitlines()[:5] if line.strip()]
    if not lines:
        return False
    for delimiter in (b",", b";", b"\t", b"|"):
        counts = {line.count(delimiter) for line in lines[:-1] or lines}
        if len(counts) == 1 and counts.pop() > 0:
            return True
    return False


def parse(
    data: bytes,
    *,
    filename: str,
    side: str,
    options: ImportOptions | None = None,
) -> ImportResult:
    """Parse one uploaded file into normalised records for `side` ("left" or "right").

    All-or-nothing: raises :class:`ImportRejected` listing every problem, or
    :class:`UnsupportedFormat`; never returns a partial result. An empty file (or one with a
    header and no lines) is rejected: an empty side is a mistake far more often than a fact.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {list(SIDES)}, got {side!r}")
    options = options or ImportOptions()
    if not data.strip():
        raise ImportRejected(filename, [Problem(None, None, "the file is empty")])
    fmt = detect_format(data, filename) if options.format == "auto" else options.format
    module = importlib.import_module(FORMATS[fmt])
    result: ImportResult = module.parse(data, filename=filename, side=side, options=options)
    return result


__all__ = [
    "ColumnMapping",
    "FORMATS",
    "ImportFailed",
    "ImportOptions",
    "ImportRejected",
    "ImportResult",
    "Problem",
    "StatementBalance",
    "SUPPORTED_FORMATS",
    "UnsupportedFormat",
    "content_sha256",
    "detect_format",
    "parse",
]
