"""The normalised record: minor units per currency, exact conversion, schema validation."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.records import CURRENCY_EXPONENTS, UnknownCurrency, format_minor, from_minor, minor_unit, to_minor


@pytest.mark.parametrize(
    ("currency", "exponent"), [("JPY", 0), ("KRW", 0), ("EUR", 2), ("USD", 2), ("KWD", 3), ("BHD", 3), ("CLF", 4)]
)
def test_minor_unit_exponents(currency: str, exponent: int) -> None:
    assert minor_unit(currency) == exponent


@pytest.mark.parametrize("code", ["eur", "XAU", "XXX", "EURO", "", None])
def test_unknown_currency_names_the_code(code: object) -> None:
    with pytest.raises(UnknownCurrency, match=repr(code)):
        minor_unit(code)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("12.34", "EUR", 1234), ("-0.01", "EUR", -1), ("1234", "JPY", 1234), ("1234.00", "JPY", 1234),
     ("1.234", "KWD", 1234), ("12.3400", "EUR", 1234), ("0", "EUR", 0)],
)
def test_to_minor_is_exact(amount: str, currency: str, minor: int) -> None:
    assert to_minor(Decimal(amount), currency) == minor
    assert from_minor(minor, currency) == Decimal(amount)


@pytest.mark.parametrize(("amount", "currency"), [("12.345", "EUR"), ("1.5", "JPY"), ("0.0001", "KWD")])
def test_to_minor_refuses_to_round(amount: str, currency: str) -> None:
    with pytest.raises(ValueError, match=f"more decimals than {currency} allows"):
        to_minor(Decimal(amount), currency)


def test_format_minor() -> None:
    assert format_minor(-123456, "EUR") == "-1234.56 EUR"
    assert format_minor(500, "JPY") == "500 JPY"
    assert format_minor(1, "KWD") == "0.001 KWD"


def test_table_is_complete_for_common_codes() -> None:
    assert len(CURRENCY_EXPONENTS) > 150
    assert {"EUR", "USD", "GBP", "CHF", "JPY", "CNY", "INR", "BRL", "ZAR", "XOF"} <= CURRENCY_EXPONENTS.keys()
