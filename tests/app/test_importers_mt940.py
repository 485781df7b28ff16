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
    assert_told_in_our_words(info.value)
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


def _statement(line61: bytes, opening: bytes = b"C240101EUR100,00", closing: bytes = b"C240102EUR100,00") -> bytes:
    return b":20:S1\n:25:ACCOUNT\n:28C:1/1\n:60F:" + opening + b"\n:61:" + line61 + b"\n:86:details\n:62F:" + closing + b"\n-\n"


@pytest.mark.parametrize(
    ("line61", "closing", "amount"),
    [
        (b"100722D25,03NOV NONREF", b"C240102EUR74,97", -2503),  # ING: type code with a trailing space
        (b"2001010101D65,00NOVBNL47INGB9999999999\nhr gjlm paulissen", b"C240102EUR35,00", -6500),  # ASN: IBAN reference
        (b"2305150515DF1000,00S   X", b"D240102EUR900,00", -100000),  # shape of issue #12's Hungarian line
        (b"1003190319CR27,00NTRF100323-03-100323//32-P1-TCS49518", b"C240102EUR127,00", 2700),  # C + funds code R
    ],
    ids=["ing-type-code-space", "asn-iban-reference", "df-prefix-s-type", "funds-code"],
)
def test_check_is_never_stricter_than_the_parser(line61: bytes, closing: bytes, amount: int) -> None:
    result = parse(_statement(line61, closing=closing), filename="s.sta", side="left")
    assert result.records.get_column("amount_minor").to_list() == [amount]


def test_a_field_the_library_cannot_read_is_named_with_its_line() -> None:
    """Month 13 passes our layout check; the library's failure becomes a problem in our words."""
    with pytest.raises(ImportRejected) as info:
        parse(DATA.replace(b":60F:C240103EUR1299,50", b":60F:C241303EUR1299,50"), filename="bad.sta", side="left")
    assert_told_in_our_words(info.value)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (14, ":60F:")
    assert problem.reason.startswith("the MT940 parser cannot read this field (a date or number in it is out of range)")


def test_fields_we_do_not_use_cannot_reject_a_file() -> None:
    """A :28C: wrapped over two lines (shape from issue #12; the ING files are not public)."""
    data = _statement(b"2401020102C50,00NTRFX", closing=b"C240102EUR150,00").replace(b":28C:1/1", b":28C:00001/\n001")
    assert parse(data, filename="s.sta", side="left").records.height == 1


def test_control_z_before_a_statement_does_not_merge_it_into_the_previous_one() -> None:
    result = parse(DATA.replace(b"-\n:20:STMT2", b"-\n\x1a:20:STMT2"), filename="z.sta", side="left")
    assert [(b.statement, b.opening_minor, b.closing_minor) for b in result.balances] == [
        ("STMT1", 100000, 129950),
        ("STMT2", 129950, 120000),
    ]
    assert result.warnings == ("1 ^Z (0x1A, DOS end-of-file) character(s) were removed",)


def test_a_lost_statement_reference_is_named_not_added_up() -> None:
    with pytest.raises(ImportRejected) as info:
        parse(DATA.replace(b":20:STMT2\n", b""), filename="lost.sta", side="left")
    opening, closing = info.value.problems
    assert [(opening.line, opening.column), (closing.line, closing.column)] == [(13, ":60F:"), (15, ":62F:")]
    assert "'STMT1' has a second opening balance (the first is on line 4): is a :20: missing" in opening.reason


def test_padded_nonref_falls_back_to_the_bank_reference() -> None:
    data = _statement(b"2401020102C50,00N102NONREF          //B-77", closing=b"C240102EUR150,00")
    assert parse(data, filename="s.sta", side="left").records.get_column("reference").to_list() == ["B-77"]
