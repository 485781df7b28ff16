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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from app.importers import ImportOptions, ImportRejected, ImportResult, Problem, content_sha256
from app.records import CURRENCY_EXPONENTS, RECORD_SCHEMA

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
    """Find the column index of each record field; problems name the missing header."""
    problems: list[Problem] = []
    index: dict[str, int] = {}
    normalised = [_norm_header(h or "") for h in header]
    seen: dict[str, int] = {}
    for position, name in enumerate(normalised):
        if name and name in seen:
            problems.append(Problem(header_line, header[position], f"header {header[position]!r} appears twice (columns {seen[name] + 1} and {position + 1})"))
        seen.setdefault(name, position)
    explicit = options.columns.model_dump(exclude_none=True)
    for field, wanted in explicit.items():
        key = _norm_header(wanted)
        if key in seen:
            index[field] = seen[key]
        else:
            problems.append(
                Problem(header_line, wanted, f"no column named {wanted!r} for {field}; the header has {header}")
            )
    if "amount" in explicit and ({"debit", "credit"} & explicit.keys()):
        problems.append(
            Problem(header_line, None, "map either `amount` or `debit`/`credit`, not both")
        )
    for field in FIELDS:
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
        problems.append(
            Problem(header_line, None, f"no amount column: map `amount` (or `debit`/`credit`) to one of {header}")
        )
    if "booking_date" not in index:
        problems.append(Problem(header_line, None, f"no booking date column: map `booking_date` to one of {header}"))
    if "currency" not in index and options.default_currency is None:
        problems.append(
            Problem(header_line, None, f"no currency column and no default_currency: map `currency` to one of {header} or set default_currency")
        )
    return index, problems


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
) -> tuple[pl.Expr, pl.Expr]:
    """(amount_minor, error) expressions for a text column; error is null when the cell is fine."""
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
    advice = (
        "set decimal=',' for amounts like 1.234,56" if options.decimal == "."
        else "set decimal='.' for amounts like 1,234.56"
    )
    if not options.thousands:
        advice += f" and thousands='{',' if options.decimal == '.' else '.'}' for grouped digits"
    sep_hint = f" (decimal {options.decimal!r}, thousands {options.thousands or 'none'!r}; {advice})"
    error = (
        pl.when(stripped.is_null() | (stripped == ""))
        .then(pl.lit("empty amount"))
        .when(integer.is_null())
        .then(pl.concat_str(pl.lit("not an amount: "), _quoted(stripped), pl.lit(sep_hint)))
        .when(((lead != "") & (trail != "")) | (parens & ((lead != "") | (trail != ""))))
        .then(pl.concat_str(pl.lit("two signs in amount "), _quoted(stripped)))
        .when(digits.str.len_chars() > _MAX_INTEGER_DIGITS)
        .then(pl.concat_str(pl.lit("amount too large: "), stripped))
        .when(magnitude.is_null())
        .then(pl.concat_str(pl.lit("not an amount: "), _quoted(stripped)))
        .when(tail.str.contains(r"[1-9]"))
        .then(
            pl.concat_str(
                pl.lit("amount "), stripped, pl.lit(" has "), frac_len.cast(pl.Utf8),
                pl.lit(" decimals but its currency allows "), exponent.cast(pl.Utf8),
            )
        )
    )
    return value, error


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
            for field in FIELDS
        ]
    ).with_columns(line=table.lines, raw=table.raw)
    header_of = {field: table.header[position] for field, position in index.items()}
    blank = lambda c: pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "")  # noqa: E731

    # currency
    currency = pl.col("currency").str.strip_chars().str.to_uppercase()
    if options.default_currency:
        currency = pl.when(blank("currency")).then(pl.lit(options.default_currency)).otherwise(currency)
    frame = frame.with_columns(_currency=currency)
    frame = frame.with_columns(_exp=pl.col("_currency").replace_strict(CURRENCY_EXPONENTS, default=None, return_dtype=pl.Int64))
    errors: list[pl.DataFrame] = []
    errors.append(
        frame.filter(pl.col("_exp").is_null()).select(
            "line",
            column=pl.lit(header_of.get("currency", "currency")),
            reason=pl.when(pl.col("_currency").is_null() | (pl.col("_currency") == ""))
            .then(pl.lit("empty currency (set default_currency to fill blanks)"))
            .otherwise(pl.concat_str(pl.lit("unknown currency "), pl.col("_currency"), pl.lit(": expected an ISO 4217 code such as EUR"))),
        )
    )
    exponent = pl.col("_exp").fill_null(2)

    # amounts
    if "amount" in index:
        value, error = parse_amount_column(pl.col("amount"), exponent, options)
        frame = frame.with_columns(_amount=value, _amount_err=error)
        errors.append(frame.filter(pl.col("_amount_err").is_not_null()).select("line", column=pl.lit(header_of["amount"]), reason="_amount_err"))
    else:
        parts = []
        for field in ("debit", "credit"):
            if field in index:
                value, error = parse_amount_column(pl.col(field), exponent, options)
                error = pl.when(blank(field)).then(None).otherwise(error)
                value = pl.when(blank(field)).then(0).otherwise(value.abs())
                frame = frame.with_columns(**{f"_{field}": value, f"_{field}_err": error})
                errors.append(frame.filter(pl.col(f"_{field}_err").is_not_null()).select("line", column=pl.lit(header_of[field]), reason=f"_{field}_err"))
                parts.append(field)
            else:
                frame = frame.with_columns(**{f"_{field}": pl.lit(0, dtype=pl.Int64)})
        debit_blank = blank("debit") if "debit" in index else pl.lit(True)
        credit_blank = blank("credit") if "credit" in index else pl.lit(True)
        frame = frame.with_columns(_amount=pl.col("_credit") - pl.col("_debit"))
        both = frame.filter(~debit_blank & ~credit_blank & (pl.col("_debit") != 0) & (pl.col("_credit") != 0))
        errors.append(both.select("line", column=pl.lit(f"{header_of.get('debit', 'debit')}/{header_of.get('credit', 'credit')}"), reason=pl.lit("both debit and credit are filled; one of them must be empty or zero")))
        errors.append(frame.filter(debit_blank & credit_blank).select("line", column=pl.lit(f"{header_of.get('debit', 'debit')}/{header_of.get('credit', 'credit')}"), reason=pl.lit("neither debit nor credit is filled")))
    if options.sign == "invert":
        frame = frame.with_columns(_amount=-pl.col("_amount"))

    # dates
    for field, required in (("booking_date", True), ("value_date", False)):
        if field not in index:
            frame = frame.with_columns(**{f"_{field}": pl.lit(None, dtype=pl.Date)})
            continue
        text = frame.get_column(field)
        fmt_used = options.date_format
        if fmt_used is None:
            fmt_used, ambiguity = detect_date_format(text)
            if ambiguity:
                raise ImportRejected(filename, [Problem(None, header_of[field], ambiguity)])
        frame = frame.with_columns(**{f"_{field}": pl.col(field).str.strip_chars().str.to_date(fmt_used, strict=False)})
        bad = frame.filter(pl.col(f"_{field}").is_null() & ~blank(field))
        errors.append(bad.select("line", column=pl.lit(header_of[field]), reason=pl.concat_str(pl.lit("not a date in format "), pl.lit(fmt_used), pl.lit(": "), _quoted(pl.col(field)))))
        if required:
            errors.append(frame.filter(blank(field)).select("line", column=pl.lit(header_of[field]), reason=pl.lit("empty booking date")))

    error_frame = pl.concat([e.with_columns(pl.col("column").cast(pl.Utf8), pl.col("reason").cast(pl.Utf8)) for e in errors])
    if error_frame.height:
        raise ImportRejected(
            filename,
            [Problem(line, column, reason) for line, column, reason in error_frame.sort("line", "column").iter_rows()],
        )

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
    ).cast(dict(RECORD_SCHEMA))
    return ImportResult(records=records, format=fmt, content_sha256=content_sha256(data))
