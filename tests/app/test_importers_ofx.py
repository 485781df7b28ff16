"""OFX importer (ofxtools): mapping, closing balance, every bad transaction listed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from app.importers import ImportOptions, ImportRejected, parse
from tests.app.test_importers_errors import assert_told_in_our_words

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


@pytest.mark.parametrize(
    ("old", "new", "column", "reason"),
    [
        (b"<DTPOSTED>20240102", b"<DTPOSTED>20241302", "DTPOSTED",
         "'20241302' is not an OFX date (YYYYMMDD, optionally HHMMSS and [zone])"),
        (b"<TRNTYPE>CREDIT", b"<TRNTYPE>FOO", "TRNTYPE", "'FOO' is not one of ("),
        (b"<FITID>T1", b"", "FITID", "missing"),
    ],
    ids=["month-13", "unknown-type", "no-fitid"],
)
def test_invalid_fields_are_named_in_our_words(old: bytes, new: bytes, column: str, reason: str) -> None:
    """ofxtools' messages name Python classes ("<class 'datetime.datetime'>"): translated."""
    with pytest.raises(ImportRejected) as info:
        parse(DATA.replace(old, new), filename="bad.ofx", side="left")
    assert_told_in_our_words(info.value)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (16, column)
    assert problem.reason.startswith(reason)


def test_every_bad_transaction_is_listed() -> None:
    data = DATA.replace(b"<TRNAMT>500.00", b"<TRNAMT>5x0.00").replace(b"<TRNAMT>-200.5", b"<TRNAMT>-200.555")
    with pytest.raises(ImportRejected) as info:
        parse(data, filename="bad.ofx", side="left")
    problems = info.value.problems
    assert [(p.line, p.column) for p in problems] == [(16, "TRNAMT"), (17, "TRNAMT")]
    assert problems[0].reason == "not an amount: '5x0.00'"
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
    assert_told_in_our_words(info.value)


def test_decimal_commas_anywhere() -> None:
    """Issue #12: TRNAMT '500,00' was read but the closing balance '1299,50' failed (decimal.ConversionSyntax)."""
    data = DATA.replace(b"500.00", b"500,00").replace(b"-200.5", b"-200,5").replace(b"1299.50", b"1299,50")
    result = parse(data, filename="comma.ofx", side="left")
    assert result.records.get_column("amount_minor").to_list() == [50000, -20050]
    (balance,) = result.balances
    assert balance.closing_minor == 129950


def test_leading_blank_lines_are_accepted_and_lines_still_count_from_the_top() -> None:
    """Issue #12: more than eight blank lines gave 'Invalid OFX header - <_io.BytesIO object at 0x...>'."""
    result = parse(b"\r\n" * 3 + b"   \n" * 9 + DATA, filename="blank.ofx", side="left")
    assert result.records.get_column("line").to_list() == [28, 29]


def test_a_statement_without_closing_balance_is_said_in_the_warnings() -> None:
    """A dropped LEDGERBAL (seen in Nubank exports, issue #12) left no balance and no warning."""
    data = DATA.replace(b"<LEDGERBAL><BALAMT>1299.50<DTASOF>20240105</LEDGERBAL>\n", b"")
    result = parse(data, filename="nobal.ofx", side="left")
    assert result.balances == ()
    assert result.warnings == ("statement 123456 has no closing balance (LEDGERBAL): its total could not be checked",)


def test_text_after_a_closing_tag_is_named_with_its_line_not_the_whole_document() -> None:
    with pytest.raises(ImportRejected) as info:
        parse(DATA.replace(b"<MEMO>Invoice 42</STMTTRN>", b"<MEMO>Invoice 42</MEMO>stray</STMTTRN>"), filename="t.ofx", side="left")
    assert_told_in_our_words(info.value)
    (problem,) = info.value.problems
    assert problem.line == 16
    assert problem.reason == "not a readable OFX file: text 'stray' after a closing tag, where OFX allows only tags"


def test_public_file_without_header_is_rejected_in_our_words() -> None:
    """ofxparse's fail_nice/decimal_error.ofx: two blank lines, no header, then <OFX>."""
    data = (Path(__file__).parent / "fixtures_data" / "public" / "ofx" / "ofxparse-decimal-error.ofx").read_bytes()
    with pytest.raises(ImportRejected) as info:
        parse(data, filename="decimal_error.ofx", side="left")
    assert_told_in_our_words(info.value)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (3, "header")
    assert problem.reason.startswith("no OFX header before <OFX>")


XXE = b"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<?OFX OFXHEADER="200" VERSION="220" SECURITY="NONE" OLDFILEUID="NONE" NEWFILEUID="NONE"?>
<!DOCTYPE OFX [<!ENTITY e SYSTEM "file:///etc/hostname">]>
<OFX><BANKMSGSRSV1><STMTTRNRS><TRNUID>1</TRNUID><STATUS><CODE>0</CODE><SEVERITY>INFO</SEVERITY></STATUS>
<STMTRS><CURDEF>USD</CURDEF><BANKACCTFROM><BANKID>1</BANKID><ACCTID>2</ACCTID><ACCTTYPE>CHECKING</ACCTTYPE></BANKACCTFROM>
<BANKTRANLIST><DTSTART>20240101</DTSTART><DTEND>20240105</DTEND>
<STMTTRN><TRNTYPE>CREDIT</TRNTYPE><DTPOSTED>20240102</DTPOSTED><TRNAMT>5.00</TRNAMT><FITID>T1</FITID><MEMO>&e;</MEMO></STMTTRN>
</BANKTRANLIST></STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>
"""


def test_doctype_and_entities_are_refused() -> None:
    """Issue #12: the entity was stored literally as the description ('&e;')."""
    with pytest.raises(ImportRejected) as info:
        parse(XXE, filename="xxe.ofx", side="left")
    assert_told_in_our_words(info.value)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (3, "DOCTYPE")
    assert "DOCTYPE" in problem.reason and "refused" in problem.reason
