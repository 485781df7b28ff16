"""OFX importer (ofxtools): mapping, closing balance, every bad transaction listed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from app.importers import ImportOptions, ImportRejected, parse

DATA = (Path(__file__).parent / "fixtures_data" / "bank.ofx").read_bytes()


def test_sgml_statement_is_normalised() -> None:
    result = parse(DATA, filename="bank.ofx", side="left")
    assert result.format == "ofx"
    rows = result.records.select("reference", "amount_minor", "currency", "booking_date", "counterparty", "description", "line").rows()
    assert rows == [
        ("T1", 50000, "USD", date(2024, 1, 2), "ACME", "Invoice 42", 16),
        ("T2", -20050, "USD", date(2024, 1, 3), "Landlord", None, 17),
    ]
    assert result.records.get_column("raw").to_list()[0].startswith("<STMTTRN><TRNTYPE>CREDIT")
    (balance,) = result.balances
    assert (balance.opening_minor, balance.closing_minor, balance.checked) == (None, 129950, False)
    assert result.warnings  # says the total could not be checked


def test_date_is_taken_as_written_not_shifted_to_utc() -> None:
    data = DATA.replace(b"<DTPOSTED>20240102", b"<DTPOSTED>20240102230000[-5:EST]")
    records = parse(data, filename="bank.ofx", side="left").records
    assert records.get_column("booking_date").to_list()[0] == date(2024, 1, 2)


def test_invert_sign() -> None:
    records = parse(DATA, filename="bank.ofx", side="right", options=ImportOptions(sign="invert")).records
    assert records.get_column("amount_minor").to_list() == [-50000, 20050]


def test_every_bad_transaction_is_listed() -> None:
    data = DATA.replace(b"<TRNAMT>500.00", b"<TRNAMT>5x0.00").replace(b"<TRNAMT>-200.5", b"<TRNAMT>-200.555")
    with pytest.raises(ImportRejected) as info:
        parse(data, filename="bad.ofx", side="left")
    problems = info.value.problems
    assert [(p.line, p.column) for p in problems] == [(16, "STMTTRN"), (17, "TRNAMT")]
    assert "TRNAMT='5x0.00'" in problems[0].reason
    assert "more decimals than USD allows" in problems[1].reason


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"OFXHEADER:100\nDATA:OFXSGML\n\n<OFX><SIGNONMSGSRSV1>", "not a readable OFX file"),
        (DATA.split(b"<BANKMSGSRSV1>")[0] + b"</OFX>", "no bank or credit-card statement"),
        (DATA.replace(b"<CURDEF>USD", b"<CURDEF>XYZ"), "unknown currency"),
    ],
    ids=["truncated", "no-statement", "bad-currency"],
)
def test_bad_files_are_rejected(data: bytes, needle: str) -> None:
    with pytest.raises(ImportRejected) as info:
        parse(data, filename="bad.ofx", side="left", options=ImportOptions(format="ofx"))
    assert any(needle in p.reason for p in info.value.problems), info.value.problems
