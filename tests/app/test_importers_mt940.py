"""MT940 importer (mt-940): mapping, balances per statement, every bad field listed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from app.importers import ImportRejected, parse
from tests.app.test_importers_errors import assert_told_in_our_words

DATA = (Path(__file__).parent / "fixtures_data" / "bank.sta").read_bytes()


def test_statements_are_normalised_and_balanced() -> None:
    result = parse(DATA, filename="bank.sta", side="left")
    assert result.format == "mt940"
    rows = result.records.select("reference", "amount_minor", "currency", "booking_date", "value_date", "line").rows()
    assert rows == [
        ("INV-42", 50000, "EUR", date(2024, 1, 2), date(2024, 1, 2), 5),
        ("B124", -20050, "EUR", date(2024, 1, 3), date(2024, 1, 3), 7),  # NONREF falls back to the bank reference
        ("X", -9950, "EUR", date(2024, 1, 4), date(2024, 1, 4), 15),
    ]
    assert result.records.get_column("raw").to_list()[1] == ":61:2401030103D200,50NTRFNONREF//B124\n:86:Rent January"
    assert [(b.statement, b.opening_minor, b.lines_minor, b.closing_minor, b.checked) for b in result.balances] == [
        ("STMT1", 100000, 29950, 129950, True),
        ("STMT2", 129950, -9950, 120000, True),
    ]


def test_balance_that_does_not_add_up_is_rejected() -> None:
    with pytest.raises(ImportRejected) as info:
        parse(DATA.replace(b":62F:C240104EUR1200,00", b":62F:C240104EUR1201,00"), filename="bad.sta", side="left")
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (16, ":62F:")
    assert problem.reason == (
        "statement 'STMT2': opening 1299.50 EUR + lines -99.50 EUR = 1200.00 EUR but the closing balance is 1201.00 EUR"
    )


def test_every_bad_field_is_listed() -> None:
    data = (
        DATA.replace(b"C500,00NTRF", b"C5x0,00NTRF")
        .replace(b":60F:C240103EUR1299,50", b":60F:C240103XXX1299,50")
        .replace(b"D200,50NTRF", b"D200,505NTRF")
    )
    with pytest.raises(ImportRejected) as info:
        parse(data, filename="bad.sta", side="left")
    assert [(p.line, p.column) for p in info.value.problems] == [(5, ":61:"), (7, ":61:"), (14, ":60F:"), (15, ":61:")]
    reasons = [p.reason for p in info.value.problems]
    assert "not a statement line" in reasons[0]
    assert "more decimals than EUR allows" in reasons[1]
    assert "unknown currency 'XXX'" in reasons[2]
    assert "before the opening balance" in reasons[3]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b":20:S\n:25:A\n:60F:C240101EUR1,00\n", "lacks an opening"),
        (b":20:S\n:25:A\n:60F:C240101EUR1,00\n:62F:C240101EUR1,00\n", "no statement lines"),
    ],
    ids=["no-closing", "no-lines"],
)
def test_incomplete_statements_are_rejected(data: bytes, needle: str) -> None:
    with pytest.raises(ImportRejected) as info:
        parse(data, filename="bad.sta", side="left")
    assert any(needle in p.reason for p in info.value.problems), info.value.problems


def test_a_credit_and_its_reversal_cancel_out() -> None:
    """RC (reversal of a credit) takes money out, RD (reversal of a debit) puts it back (issue #12).

    Built in the test: the public files with reversal marks found do not balance (see
    fixtures_data/README.md).
    """
    data = (
        b":20:REV\n:25:NL00BANK0123456789\n:28C:1/1\n:60F:C240101EUR100,00\n"
        b":61:2401020102C50,00NTRFINV-1\n:61:2401030103RC50,00NTRFINV-1\n"
        b":61:2401040104D20,00NTRFINV-2\n:61:2401050105RD20,00NTRFINV-2\n"
        b":62F:C240105EUR100,00\n-\n"
    )
    result = parse(data, filename="rev.sta", side="left")
    assert result.records.get_column("amount_minor").to_list() == [5000, -5000, -2000, 2000]
    (balance,) = result.balances
    assert (balance.opening_minor, balance.lines_minor, balance.closing_minor) == (10000, 0, 10000)
