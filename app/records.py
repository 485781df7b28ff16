"""The normalised record: what every importer produces and what the engine matches.

One row per statement or ledger line, whatever the source format::

    column          dtype     null?  meaning
    id              Int64     no     unique within one import, stable: the same file gives the same ids
                                     (1..n in source order)
    side            Utf8      no     "left" or "right" (e.g. bank vs ledger); the caller chooses
    reference       Utf8      yes    the key the two sides share (end-to-end id, invoice number, ...)
    amount_minor    Int64     no     signed amount in integer minor units of `currency`
                                     (EUR 12.34 -> 1234, JPY 1234 -> 1234, KWD 1.234 -> 1234)
    currency        Utf8      no     ISO 4217 alphabetic code, upper case
    booking_date    Date      no     the date the line was booked
    value_date      Date      yes    the value (settlement) date, when the format carries one
    counterparty    Utf8      yes    the other party's name
    description     Utf8      yes    free text (remittance information, memo, narrative)
    raw             Utf8      no     the source line or element, verbatim, for audit and display
    line            Int64     no     1-based source line (text formats) or row (XLSX) of the record

An importer may add one optional column after these, :data:`SOURCE_ID`::

    source_id       Utf8      yes    the file's own id of the line (an ``id`` / ``entry_id`` column), as
                                     text (``0042`` keeps its zeros); shown and stored, never matched on

The traps:

* Money is never a float. `amount_minor` is exact; divide by ``10 ** minor_unit(currency)`` only
  for display, and with :class:`decimal.Decimal`.
* Sign convention: positive means money *in* for the account the file describes (a bank credit).
  A ledger export of the same bank account usually books the same movement with the opposite
  sign; the importer's ``sign="invert"`` option flips it so both sides agree before matching.
* `id` is unique per import, not globally: the two sides of a reconciliation may both contain
  id 1. The engine always qualifies ids by side (``left_id``, ``right_id``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import polars as pl

SIDES: Final = ("left", "right")

RECORD_SCHEMA: Final = pl.Schema(
    {
        "id": pl.Int64,
        "side": pl.Utf8,
        "reference": pl.Utf8,
        "amount_minor": pl.Int64,
        "currency": pl.Utf8,
        "booking_date": pl.Date,
        "value_date": pl.Date,
        "counterparty": pl.Utf8,
        "description": pl.Utf8,
        "raw": pl.Utf8,
        "line": pl.Int64,
    }
)
"""Column names and dtypes of a normalised record frame, in this order."""

SOURCE_ID: Final = "source_id"
"""Optional column: the file's own id of the line. :func:`validate_records` drops it like any extra column."""

NON_NULL_COLUMNS: Final = ("id", "side", "amount_minor", "currency", "booking_date", "raw", "line")
"""Columns that never hold null in a valid record frame."""

# ISO 4217 (list one, current funds and currencies) minor-unit exponents. Codes without minor
# units in the standard (precious metals XAU/XAG/XPT/XPD, XDR, XSU, XUA, test code XTS, XXX) are
# left out on purpose: an amount in them cannot be expressed in integer minor units.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR "
    "FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW "
    "KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN "
    "NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD "
    "SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU "
    "UZS VED VES WST XCD XCG YER ZAR ZMW ZWG ZWL"
)

CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    **{code: 0 for code in _EXPONENT_0.split()},
    **{code: 2 for code in _EXPONENT_2.split()},
    **{code: 3 for code in _EXPONENT_3.split()},
    **{code: 4 for code in _EXPONENT_4.split()},
}
"""ISO 4217 code -> number of minor-unit digits (JPY 0, EUR 2, KWD 3, CLF 4)."""


class UnknownCurrency(ValueError):
    """A currency code that is not an ISO 4217 code with minor units."""

    def __init__(self, code: object) -> None:
        self.code = code
        super().__init__(
            f"unknown currency {code!r}: expected an ISO 4217 alphabetic code with minor units "
            f"such as EUR, USD, JPY or KWD ({len(CURRENCY_EXPONENTS)} codes are known)"
        )


def minor_unit(currency: str) -> int:
    """Return the minor-unit exponent of `currency` (``"EUR"`` -> 2).

    Raises :class:`UnknownCurrency` for anything that is not an upper-case ISO 4217 code with
    minor units; lower case is *not* accepted here, normalise first.
    """
    try:
        return CURRENCY_EXPONENTS[currency]
    except (KeyError, TypeError):
        raise UnknownCurrency(currency) from None


def to_minor(amount: Decimal, currency: str) -> int:
    """Convert a decimal amount to integer minor units of `currency`, exactly.

    Raises :class:`ValueError` when `amount` has more significant decimals than the currency
    allows (EUR ``12.345``): rounding money silently is the bug this function exists to refuse.
    Trailing zeros are fine (EUR ``12.3400`` -> 1234).
    """
    exponent = minor_unit(currency)
    scaled = amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"amount {amount} has more decimals than {currency} allows ({exponent})"
        )
    return int(scaled)


def from_minor(amount_minor: int, currency: str) -> Decimal:
    """Convert integer minor units back to a :class:`~decimal.Decimal` (1234, EUR -> 12.34)."""
    exponent = minor_unit(currency)
    return Decimal(amount_minor).scaleb(-exponent)


def format_minor(amount_minor: int, currency: str) -> str:
    """Render minor units for people: ``format_minor(-123456, "EUR") == "-1234.56 EUR"``."""
    exponent = minor_unit(currency)
    value = from_minor(amount_minor, currency)
    return f"{value:.{exponent}f} {currency}"


class InvalidRecords(ValueError):
    """A frame handed to the engine does not follow :data:`RECORD_SCHEMA`."""


def validate_records(frame: pl.DataFrame, *, name: str = "records") -> pl.DataFrame:
    """Check `frame` against the schema and return it with columns in schema order.

    Checks column presence and dtypes, nulls in :data:`NON_NULL_COLUMNS`, unique ids and known
    currencies. Extra columns are dropped. The error names the column, the bad value and what is
    allowed, so a caller (or an API client) can act on it.
    """
    missing = [column for column in RECORD_SCHEMA if column not in frame.columns]
    if missing:
        raise InvalidRecords(f"{name}: missing column(s) {missing}; expected {list(RECORD_SCHEMA)}")
    for column, dtype in RECORD_SCHEMA.items():
        actual = frame.schema[column]
        if actual != dtype and not (actual == pl.Null and column not in NON_NULL_COLUMNS):
            raise InvalidRecords(f"{name}: column {column!r} has dtype {actual}, expected {dtype}")
    frame = frame.select([pl.col(c).cast(t) for c, t in RECORD_SCHEMA.items()])
    nulls = frame.select(pl.col(NON_NULL_COLUMNS).null_count()).row(0, named=True)
    bad = {column: count for column, count in nulls.items() if count}
    if bad:
        raise InvalidRecords(f"{name}: null values in non-null column(s) {bad}")
    if frame.height != frame.get_column("id").n_unique():
        dupes = (
            frame.group_by("id").len().filter(pl.col("len") > 1).sort("id").get_column("id").head(5)
        )
        raise InvalidRecords(f"{name}: ids are not unique, e.g. {dupes.to_list()}")
    unknown = (
        frame.select(pl.col("currency").unique())
        .filter(~pl.col("currency").is_in(list(CURRENCY_EXPONENTS)))
        .get_column("currency")
        .sort()
        .to_list()
    )
    if unknown:
        raise InvalidRecords(
            f"{name}: unknown currency code(s) {unknown[:5]}; expected ISO 4217 codes such as EUR"
        )
    sides = frame.get_column("side").unique().to_list()
    if any(side not in SIDES for side in sides):
        raise InvalidRecords(f"{name}: side values {sorted(sides)}, allowed {list(SIDES)}")
    return frame
