"""Rows of text cells (from CSV or XLSX) -> normalised records, vectorised with polars.

Both tabular formats hand this module the same thing: the header cells, the data rows as text
cells, each row's source line and raw text. From there everything is one pipeline: find the
columns (explicit mapping first, then common header names in English, German, French and
Spanish), parse amounts and dates as whole columns, and collect *every* bad cell as a
:class:`~app.importers.Problem` with its line and header name.

Amount text accepted (with ``decimal="."``, ``thousands=","``; swap them for ``decimal=","``)::

    1234.56   -1234.56   +1234.56   1,234.56   1234.56-   (1,234.56)   1234   .50 is refused

Traps handled here:

* More decimals than the currency has (EUR ``12.345``) is an error, never a rounding;
  trailing zeros are fine (JPY ``1200.00`` is 1200).
* Dates: without ``date_format`` the pattern is detected from the column, and a column that
  fits two patterns (``01/02/2024``: day-first and month-first) is refused rather than guessed.
* Debit/credit columns: amount = credit - debit; a row with both filled and non-zero is refused.
* Decimal comma: when neither ``decimal`` nor ``thousands`` is given and the amounts say so
  (``12,50``, ``1.234,56``; no ``3.50`` or ``1,250.00`` among them), they are read with
  ``decimal=","`` and a warning. ``1,250`` alone says nothing (1250 or 1.25?) and is not guessed.
* The file's own id column (``id``, ``entry_id``, ...) is kept as text in ``source_id``; the
  records' ``id`` stays 1..n. Two fields mapped to one column, or a mapping that takes the
  column another field needs, is refused naming both.
* Problems of one kind in one column on more than :data:`LIST_UP_TO` lines become one
  :class:`RepeatedProblem` with the count and the first lines (10,000 bad amounts are one
  problem, not 1.8 MB of them).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from app.importers import (
    ImportOptions,
    ImportRejected,
    ImportResult,
    Problem,
    content_sha256,
)
from app.records import CURRENCY_EXPONENTS, RECORD_SCHEMA, SOURCE_ID

FIELDS = (
    "reference", "amount", "debit", "credit", "currency", "booking_date", "value_date", "counterparty",
    "description",
)

HEADER_SYNONYMS: dict[str, tuple[str, ...]] = {
    "reference": (
        "reference", "ref", "ref.", "reference number", "invoice", "invoice number", "invoice no",
        "document", "document number", "doc no", "end to end id", "endtoendid", "e2e id", "referenz",
        "kundenreferenz", "belegnummer", "rechnungsnummer", "référence", "reference facture", "referencia",
    ),
    "amount": ("amount", "betrag", "umsatz", "montant", "importe", "value", "sum", "amt", "transaction amount"),
    "debit": ("debit", "debit amount", "withdrawal", "withdrawals", "paid out", "money out", "soll", "débit", "cargo"),
    "credit": ("credit", "credit amount", "deposit", "deposits", "paid in", "money in", "haben", "crédit", "abono"),
    "currency": ("currency", "ccy", "cur", "curr", "währung", "waehrung", "devise", "monnaie", "moneda", "divisa"),
    "booking_date": (
        "booking date", "date", "posting date", "transaction date", "entry date", "buchungstag",
        "buchungsdatum", "datum", "date opération", "date operation", "date comptable", "fecha",
        "fecha operación", "fecha operacion",
    ),
    "value_date": ("value date", "valuta", "valutadatum", "wertstellung", "date valeur", "fecha valor"),
    "id": ("id", "entry id", "transaction id", "txn id", "record id", "line id"),
    "counterparty": (
        "counterparty", "payee", "payer", "name", "beneficiary", "partner", "empfänger", "auftraggeber",
        "begünstigter/zahlungspflichtiger", "zahlungsempfänger", "tiers", "bénéficiaire", "beneficiario",
    ),
    "description": (
        "description", "memo", "narrative", "text", "details", "purpose", "verwendungszweck",
        "buchungstext", "libellé", "libelle", "concepto", "descripción", "descripcion",
    ),
}

DATE_FORMATS = (
    "%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%Y%m%d", "%d-%m-%Y", "%Y/%m/%d", "%d.%m.%y",
    "%d/%m/%y", "%m/%d/%y",
)
"""Patterns tried, in this order, when no ``date_format`` is given."""

_MAX_INTEGER_DIGITS = 15

LIST_UP_TO = 3
"""Problems of one kind in one column are listed one by one up to this many lines, then collapsed."""
_FIRST_LINES = 5

_GROUP_SEPARATORS = (".", " ", "\u00a0", "\u202f", "'")
_SIGNS = r"[(+-]*"
_END = r"[)+-]*$"
_COMMA_DECIMAL = rf"^{_SIGNS}\d+(?:[. \u00a0\u202f']\d{{3}})*,\d{{1,2}}{_END}"
_DOT_DECIMAL = rf"^{_SIGNS}\d{{1,3}}(?:[, \u00a0\u202f']\d{{3}})+\.\d+{_END}|^{_SIGNS}\d+\.\d{{1,2}}{_END}"


@dataclass(frozen=True, order=True)
class RepeatedProblem(Problem):
    """One problem found on `count` lines; `line` is the first, `lines` the first few."""

    count: int = 0
    lines: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "count": self.count, "lines": list(self.lines)}


def problems_from_frame(errors: pl.DataFrame) -> list[Problem]:
    """Problems from a frame of (line, column, kind, value): one per line while a kind is rare
    in its column, one :class:`RepeatedProblem` for it beyond :data:`LIST_UP_TO` lines.

    `kind` is the problem without the cell (``not a date in format %Y-%m-%d``), `value` the
    quoted cell or null; a listed problem reads ``kind: value``.
    """
    if errors.height == 0:
        return []
    groups = (
        errors.sort("line", nulls_last=False)
        .group_by("column", "kind", maintain_order=True)
        .agg(n=pl.len(), lines=pl.col("line").head(_FIRST_LINES), values=pl.col("value").head(LIST_UP_TO))
    )
    problems: list[Problem] = []
    for column, kind, n, lines, values in groups.iter_rows():
        if n <= LIST_UP_TO:
            problems += [Problem(line, column, _reason(kind, value)) for line, value in zip(lines, values)]
            continue
        shown = ", ".join(str(line) for line in lines if line is not None)
        example = f"; e.g. line {lines[0]}: {values[0]}" if values[0] is not None else ""
        problems.append(RepeatedProblem(lines[0], column, f"{kind}: {n} lines like this, first at lines {shown}"
                                        f"{example}", count=n, lines=tuple(line for line in lines if line is not None)))
    return problems


def problems_from_rows(rows: Sequence[tuple[int | None, str | None, str, str | None]]) -> list[Problem]:
    """:func:`problems_from_frame` for (line, column, kind, value) tuples."""
    frame = pl.DataFrame(rows, schema={"line": pl.Int64, "column": pl.Utf8, "kind": pl.Utf8, "value": pl.Utf8},
                         orient="row")
    return problems_from_frame(frame)


def _reason(kind: str, value: str | None) -> str:
    return kind if value is None else f"{kind}: {value}"


@dataclass(frozen=True)
class Table:
    """What a tabular reader hands over: text cells, one row per record.

    `cells` has one Utf8 column per header cell, named "0", "1", ... (header texts may repeat
    or be empty, so they cannot name columns); `lines` and `raw` align with its rows.
    """

    header: list[str]
    header_line: int
    cells: pl.DataFrame
    lines: pl.Series
    raw: pl.Series

    @classmethod
    def from_rows(
        cls, header: list[str], header_line: int, rows: list[list[str | None]], lines: list[int], raw: list[str]
    ) -> Table:
        """Build from Python rows (each as long as the header), column-wise."""
        columns = list(zip(*rows)) if rows else [()] * len(header)
        cells = pl.DataFrame(
            {str(i): pl.Series(str(i), list(col), dtype=pl.Utf8) for i, col in enumerate(columns)}
        )
        return cls(header, header_line, cells, pl.Series("line", lines, dtype=pl.Int64), pl.Series("raw", raw, dtype=pl.Utf8))


def _norm_header(text: str) -> str:
    return " ".join(text.replace("_", " ").strip().casefold().split())


def map_columns(header: list[str], options: ImportOptions, header_line: int) -> tuple[dict[str, int], list[Problem]]:
    """Find the column index of each record field (and of the file's own ``id``); problems name
    the missing header, and a column that two fields claim."""
    problems: list[Problem] = []
    index: dict[str, int] = {}
    normalised = [_norm_header(h or "") for h in header]
    seen: dict[str, int] = {}
    for position, name in enumerate(normalised):
        if name and name in seen:
            problems.append(Problem(header_line, header[position], f"header {header[position]!r} appears twice (columns {seen[name] + 1} and {position + 1})"))
        seen.setdefault(name, position)
    explicit = options.columns.model_dump(exclude_none=True)
    claimed: dict[int, str] = {}
    for field, wanted in explicit.items():
        key = _norm_header(wanted)
        if key not in seen:
            problems.append(
                Problem(header_line, wanted, f"no column named {wanted!r} for {field}; the header has {header}")
            )
            continue
        if seen[key] in claimed:
            problems.append(Problem(header_line, wanted, f"column {header[seen[key]]!r} is mapped to both "
                                    f"{claimed[seen[key]]} and {field}; a column holds one field"))
        claimed.setdefault(seen[key], field)
        index[field] = seen[key]
    if "amount" in explicit and ({"debit", "credit"} & explicit.keys()):
        problems.append(
            Problem(header_line, None, "map either `amount` or `debit`/`credit`, not both")
        )
    for field in (*FIELDS, "id"):
        if field in explicit:
            continue
        if field in ("debit", "credit") and "amount" in explicit:
            continue
        if field == "amount" and ({"debit", "credit"} & explicit.keys()):
            continue
        for synonym in HEADER_SYNONYMS[field]:
            if synonym in seen and seen[synonym] not in index.values():
                index[field] = seen[synonym]
                break
    if "amount" in index and "amount" not in explicit and ({"debit", "credit"} & index.keys()):
        # found by name: a single amount column beats debit/credit found by name
        if {"debit", "credit"} & explicit.keys():
            del index["amount"]
        else:
            index.pop("debit", None)
            index.pop("credit", None)
    if "amount" not in index and not ({"debit", "credit"} & index.keys()):
        problems.append(Problem(header_line, None, "no amount column: " + _taken(header, seen, claimed, "amount")
                                + f"map `amount` (or `debit`/`credit`) to one of {header}"))
    if "booking_date" not in index:
        problems.append(Problem(header_line, None, "no booking date column: "
                                + _taken(header, seen, claimed, "booking_date")
                                + f"map `booking_date` to one of {header}"))
    if "currency" not in index and options.default_currency is None:
        problems.append(
            Problem(header_line, None, "no currency column and no default_currency: "
                    + _taken(header, seen, claimed, "currency")
                    + f"map `currency` to one of {header} or set default_currency")
        )
    return index, problems


def _taken(header: list[str], seen: dict[str, int], claimed: dict[int, str], field: str) -> str:
    """Why the column that looks like `field` was not used: another field's mapping took it."""
    for synonym in HEADER_SYNONYMS[field]:
        if synonym in seen and seen[synonym] in claimed:
            return (f"{header[seen[synonym]]!r} is mapped to {claimed[seen[synonym]]}, so it cannot be the "
                    f"{field.replace('_', ' ')}; ")
    return ""


def amount_pattern(options: ImportOptions) -> str:
    """Regex with groups (sign, integer digits, fraction digits, trailing sign)."""
    dec = re.escape(options.decimal)
    if options.thousands:
        sep = re.escape(options.thousands)
        integer = rf"\d{{1,3}}(?:{sep}\d{{3}})+|\d+"
    else:
        integer = r"\d+"
    return rf"^([+-]?)({integer})(?:{dec}(\d*))?([+-]?)$"


def parse_amount_column(
    text: pl.Expr, exponent: pl.Expr, options: ImportOptions
) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(amount_minor, problem kind, what to show of the cell) expressions for a text column; the
    kind is null when the cell is fine."""
    stripped = text.str.strip_chars()
    parens = stripped.str.starts_with("(") & stripped.str.ends_with(")")
    inner = pl.when(parens).then(stripped.str.slice(1, stripped.str.len_chars() - 2).str.strip_chars()).otherwise(stripped)
    parts = inner.str.extract_groups(amount_pattern(options))
    lead, integer, fraction, trail = (parts.struct.field(name) for name in ("1", "2", "3", "4"))
    digits = integer.str.replace_all(options.thousands, "", literal=True) if options.thousands else integer
    fraction = fraction.fill_null("")
    frac_len = fraction.str.len_chars().cast(pl.Int64)
    keep = pl.min_horizontal(frac_len, exponent)
    head = fraction.str.slice(0, keep)
    tail = fraction.str.slice(keep)
    head_value = pl.when(head.str.len_chars() > 0).then(head.cast(pl.Int64, strict=False)).otherwise(0)
    ten = pl.lit(10, dtype=pl.Int64)
    magnitude = digits.cast(pl.Int64, strict=False) * ten.pow(exponent) + head_value * ten.pow(exponent - keep)
    negative = parens | (lead == "-") | (trail == "-")
    value = pl.when(negative).then(-magnitude).otherwise(magnitude)
    not_an_amount = pl.concat_str(pl.lit(f"not an amount (decimal {options.decimal!r}, thousands "
                                         f"{options.thousands or 'none'!r}"), _separator_advice(stripped, options),
                                  pl.lit(")"))
    kind = (
        pl.when(stripped.is_null() | (stripped == ""))
        .then(pl.lit("empty amount"))
        .when(integer.is_null())
        .then(not_an_amount)
        .when(((lead != "") & (trail != "")) | (parens & ((lead != "") | (trail != ""))))
        .then(pl.lit("two signs in amount"))
        .when(digits.str.len_chars() > _MAX_INTEGER_DIGITS)
        .then(pl.lit(f"amount too large (more than {_MAX_INTEGER_DIGITS} digits)"))
        .when(magnitude.is_null())
        .then(pl.lit("not an amount"))
        .when(tail.str.contains(r"[1-9]"))
        .then(pl.concat_str(pl.lit("more decimals than the currency allows ("), exponent.cast(pl.Utf8), pl.lit(")")))
    )
    decimals = tail.str.contains(r"[1-9]")
    shown = pl.when(stripped.is_null() | (stripped == "")).then(None).when(integer.is_not_null() & decimals).then(
        pl.concat_str(stripped, pl.lit(" has "), frac_len.cast(pl.Utf8), pl.lit(" decimals"))
    ).otherwise(_quoted(stripped))
    return value, kind, shown


def _separator_advice(cell: pl.Expr, options: ImportOptions) -> pl.Expr:
    """What to set, judged from the cell itself: advice that fits ``1,234.56`` would mislead
    for ``12,50``, and a decimal-comma file once got ten thousand of the wrong one."""
    if options.decimal == ".":
        return (pl.when(cell.str.contains(_COMMA_DECIMAL)).then(pl.lit("; set decimal=',' for amounts like 1.234,56"))
                .when(cell.str.contains(r"\d,\d{3}") & pl.lit(options.thousands != ","))
                .then(pl.lit("; set thousands=',' for amounts like 1,234.56")).otherwise(pl.lit("")))
    return (pl.when(cell.str.contains(_DOT_DECIMAL) & ~cell.str.contains(r"^[(+-]*\d{1,3}(?:\.\d{3})+[)+-]*$"))
            .then(pl.lit("; set decimal='.' for amounts like 1,234.56"))
            .when(cell.str.contains(r"\d\.\d{3}") & pl.lit(options.thousands != "."))
            .then(pl.lit("; set thousands='.' for amounts like 1.234,56")).otherwise(pl.lit("")))


def detect_decimal_comma(cells: pl.Series, options: ImportOptions) -> tuple[ImportOptions, str | None]:
    """The options to read `cells` (amount texts) with, and a warning when they were changed.

    Only when neither ``decimal`` nor ``thousands`` was given: the amounts must show a decimal
    comma (``12,50``, ``1.234,56``) and none a decimal point (``3.50``, ``1,250.00``).
    ``1,250`` is no evidence either way.
    """
    if {"decimal", "thousands"} & options.model_fields_set:
        return options, None
    texts = cells.drop_nulls().str.strip_chars()
    texts = texts.filter(texts != "")
    comma = texts.filter(texts.str.contains(_COMMA_DECIMAL))
    if comma.len() == 0 or texts.str.contains(_DOT_DECIMAL).any():
        return options, None
    thousands = next((sep for sep in _GROUP_SEPARATORS
                      if texts.str.contains(rf"\d{re.escape(sep)}\d{{3}}(?:[,)+-]|$)").any()), ".")
    changed = options.model_copy(update={"decimal": ",", "thousands": thousands})
    return changed, (f"amounts have a decimal comma (e.g. {comma[0]!r}): read with decimal=',' and thousands="
                     f"{thousands!r}; set decimal and thousands to read them otherwise")


def _quoted(text: pl.Expr) -> pl.Expr:
    return pl.concat_str(pl.lit("'"), text, pl.lit("'"))


def detect_date_format(values: pl.Series) -> tuple[str | None, str | None]:
    """(format, problem) for a column of date texts: the one pattern that parses every value."""
    sample = values.drop_nulls().filter(values.drop_nulls().str.strip_chars() != "").str.strip_chars()
    if sample.len() == 0:
        return DATE_FORMATS[0], None
    fitting = []
    best: tuple[int, str] = (-1, DATE_FORMATS[0])
    for fmt in DATE_FORMATS:
        parsed = sample.str.to_date(fmt, strict=False)
        ok = sample.len() - parsed.null_count()
        if ok == sample.len():
            fitting.append(fmt)
        if ok > best[0]:
            best = (ok, fmt)
    if len(fitting) == 1:
        return fitting[0], None
    if len(fitting) > 1:
        return None, (
            f"dates fit more than one pattern ({', '.join(fitting)}), e.g. {sample[0]!r}; "
            "set date_format to say which"
        )
    return best[1], None


def build_records(table: Table, *, options: ImportOptions, side: str, filename: str, fmt: str, data: bytes) -> ImportResult:
    """Turn a :class:`Table` into an :class:`ImportResult` or raise :class:`ImportRejected`."""
    index, problems = map_columns(table.header, options, table.header_line)
    if problems:
        raise ImportRejected(filename, problems)
    if table.cells.height == 0:
        raise ImportRejected(filename, [Problem(table.header_line, None, "the file has a header but no data rows")])

    frame = table.cells.select(
        [
            pl.col(str(index[field])).alias(field) if field in index else pl.lit(None, dtype=pl.Utf8).alias(field)
            for field in (*FIELDS, "id")
        ]
    ).with_columns(line=table.lines, raw=table.raw)
    header_of = {field: table.header[position] for field, position in index.items()}
    money_fields = [field for field in ("amount", "debit", "credit") if field in index]
    options, decimal_note = detect_decimal_comma(
        pl.concat([frame.get_column(field) for field in money_fields]), options)

    errors = [_nul_errors(frame)]
    frame, currency_errors = _currencies(frame, options, header_of)
    errors.append(currency_errors)
    frame, amount_errors = _amounts(frame, options, index, header_of)
    errors += amount_errors
    frame, date_errors = _dates(frame, options, index, header_of, filename)
    errors += date_errors

    error_frame = pl.concat([e.select("line", pl.col("column").cast(pl.Utf8), pl.col("kind").cast(pl.Utf8),
                                      pl.col("value").cast(pl.Utf8)) for e in errors])
    if error_frame.height:
        raise ImportRejected(filename, problems_from_frame(error_frame))
    return ImportResult(records=_records(frame, side, "id" in index), format=fmt, content_sha256=content_sha256(data),
                        warnings=(decimal_note,) if decimal_note else ())


def _blank(column: str) -> pl.Expr:
    return pl.col(column).is_null() | (pl.col(column).str.strip_chars() == "")


def _nul_errors(frame: pl.DataFrame) -> pl.DataFrame:
    """A NUL byte in a line: PostgreSQL text cannot hold it (a UTF-16 file read as UTF-8 is full of them)."""
    return frame.filter(pl.col("raw").str.contains("\x00", literal=True)).select(
        "line", column=pl.lit(None, dtype=pl.Utf8),
        kind=pl.lit("contains a NUL character (U+0000), which text cannot hold; is the file UTF-16 or binary? "
                    "(set encoding)"), value=pl.lit(None, dtype=pl.Utf8))


def _currencies(frame: pl.DataFrame, options: ImportOptions, header_of: dict[str, str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    currency = pl.col("currency").str.strip_chars().str.to_uppercase()
    if options.default_currency:
        currency = pl.when(_blank("currency")).then(pl.lit(options.default_currency)).otherwise(currency)
    frame = frame.with_columns(_currency=currency)
    frame = frame.with_columns(_exp=pl.col("_currency").replace_strict(CURRENCY_EXPONENTS, default=None, return_dtype=pl.Int64))
    empty = pl.col("_currency").is_null() | (pl.col("_currency") == "")
    errors = frame.filter(pl.col("_exp").is_null()).select(
        "line",
        column=pl.lit(header_of.get("currency", "currency")),
        kind=pl.when(empty).then(pl.lit("empty currency (set default_currency to fill blanks)"))
        .otherwise(pl.lit("unknown currency (expected an ISO 4217 code such as EUR)")),
        value=pl.when(empty).then(None).otherwise(_quoted(pl.col("_currency"))),
    )
    return frame, errors


def _amounts(frame: pl.DataFrame, options: ImportOptions, index: dict[str, int],
             header_of: dict[str, str]) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Signed ``_amount`` in minor units, from `amount` or from credit - debit."""
    exponent = pl.col("_exp").fill_null(2)
    errors: list[pl.DataFrame] = []

    def cell_errors(field: str) -> pl.DataFrame:
        return frame.filter(pl.col(f"_{field}_err").is_not_null()).select(
            "line", column=pl.lit(header_of[field]), kind=f"_{field}_err", value=f"_{field}_shown")

    if "amount" in index:
        value, kind, shown = parse_amount_column(pl.col("amount"), exponent, options)
        frame = frame.with_columns(_amount=value, _amount_err=kind, _amount_shown=shown)
        errors.append(cell_errors("amount"))
    else:
        for field in ("debit", "credit"):
            if field in index:
                value, kind, shown = parse_amount_column(pl.col(field), exponent, options)
                kind = pl.when(_blank(field)).then(None).otherwise(kind)
                value = pl.when(_blank(field)).then(0).otherwise(value.abs())
                frame = frame.with_columns(**{f"_{field}": value, f"_{field}_err": kind, f"_{field}_shown": shown})
                errors.append(cell_errors(field))
            else:
                frame = frame.with_columns(**{f"_{field}": pl.lit(0, dtype=pl.Int64)})
        debit_blank = _blank("debit") if "debit" in index else pl.lit(True)
        credit_blank = _blank("credit") if "credit" in index else pl.lit(True)
        frame = frame.with_columns(_amount=pl.col("_credit") - pl.col("_debit"))
        both_columns = pl.lit(f"{header_of.get('debit', 'debit')}/{header_of.get('credit', 'credit')}")
        none = pl.lit(None, dtype=pl.Utf8)
        both = frame.filter(~debit_blank & ~credit_blank & (pl.col("_debit") != 0) & (pl.col("_credit") != 0))
        errors.append(both.select("line", column=both_columns, value=none,
                                  kind=pl.lit("both debit and credit are filled; one of them must be empty or zero")))
        errors.append(frame.filter(debit_blank & credit_blank).select(
            "line", column=both_columns, value=none, kind=pl.lit("neither debit nor credit is filled")))
    if options.sign == "invert":
        frame = frame.with_columns(_amount=-pl.col("_amount"))
    return frame, errors


def _dates(frame: pl.DataFrame, options: ImportOptions, index: dict[str, int], header_of: dict[str, str],
           filename: str) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    errors: list[pl.DataFrame] = []
    for field, required in (("booking_date", True), ("value_date", False)):
        if field not in index:
            frame = frame.with_columns(**{f"_{field}": pl.lit(None, dtype=pl.Date)})
            continue
        fmt_used = options.date_format
        if fmt_used is None:
            fmt_used, ambiguity = detect_date_format(frame.get_column(field))
            if ambiguity:
                raise ImportRejected(filename, [Problem(None, header_of[field], ambiguity)])
        frame = frame.with_columns(**{f"_{field}": pl.col(field).str.strip_chars().str.to_date(fmt_used, strict=False)})
        bad = frame.filter(pl.col(f"_{field}").is_null() & ~_blank(field))
        errors.append(bad.select("line", column=pl.lit(header_of[field]), kind=pl.lit(f"not a date in format {fmt_used}"),
                                 value=_quoted(pl.col(field))))
        if required:
            errors.append(frame.filter(_blank(field)).select("line", column=pl.lit(header_of[field]),
                                                             kind=pl.lit("empty booking date"),
                                                             value=pl.lit(None, dtype=pl.Utf8)))
    return frame, errors


def _records(frame: pl.DataFrame, side: str, with_source_id: bool) -> pl.DataFrame:
    def text(field: str) -> pl.Expr:
        cleaned = pl.col(field).str.strip_chars()
        return pl.when(cleaned == "").then(None).otherwise(cleaned)

    records = frame.select(
        id=pl.int_range(1, frame.height + 1, dtype=pl.Int64),
        side=pl.lit(side),
        reference=text("reference"),
        amount_minor=pl.col("_amount").cast(pl.Int64),
        currency=pl.col("_currency"),
        booking_date=pl.col("_booking_date"),
        value_date=pl.col("_value_date"),
        counterparty=text("counterparty"),
        description=text("description"),
        raw=pl.col("raw"),
        line=pl.col("line"),
        **({SOURCE_ID: text("id")} if with_source_id else {}),
    )
    return records.cast({**dict(RECORD_SCHEMA), **({SOURCE_ID: pl.Utf8} if with_source_id else {})})
