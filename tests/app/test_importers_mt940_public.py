"""MT940 importer against real files from public parser projects (fixtures_data/README.md).

Each file is checked with what its source project's tests assert, and every accepted file with
the invariant that makes a statement import truthful: per statement, the stored rows add up to
the checked movement, closing - opening.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from app.importers import ImportOptions, ImportRejected, ImportResult, parse
from tests.app.test_importers_errors import assert_told_in_our_words

FIXTURES = Path(__file__).parent / "fixtures_data"
PUBLIC = FIXTURES / "public" / "mt940"

ACCEPTED = [
    "bank.sta",
    "public/mt940/wolph-jejik-sns.sta",
    "public/mt940/wolph-asnb.txt",
    "public/mt940/wolph-jejik-rabobank-iban.sta",
    "public/mt940/wolph-betterplace-with-binary-character.sta",
    "public/mt940/jejik-ing-4.txt",
    "public/mt940/libmt94x-ming-from-spec.txt",
]


def _read(name: str) -> ImportResult:
    return parse((FIXTURES / name).read_bytes(), filename=Path(name).name, side="left")


def _per_statement(result: ImportResult) -> list[list[int]]:
    """The stored amounts cut into statements, in file order, by each statement's line count."""
    amounts = result.records.get_column("amount_minor").to_list()
    chunks, start = [], 0
    for balance in result.balances:
        chunks.append(amounts[start : start + balance.line_count])
        start += balance.line_count
    assert start == len(amounts), "every stored row belongs to exactly one checked statement"
    return chunks


@pytest.mark.parametrize("sign", ["as_is", "invert"])
@pytest.mark.parametrize("name", ACCEPTED, ids=[Path(n).stem for n in ACCEPTED])
def test_stored_rows_add_up_to_each_checked_statement(name: str, sign: str) -> None:
    data = (FIXTURES / name).read_bytes()
    result = parse(data, filename=Path(name).name, side="left", options=ImportOptions(sign=sign))  # type: ignore[arg-type]
    assert result.balances and all(b.checked for b in result.balances)
    for balance, amounts in zip(result.balances, _per_statement(result), strict=True):
        assert balance.opening_minor is not None
        assert sum(amounts) == balance.lines_minor == balance.closing_minor - balance.opening_minor, balance


def test_sns_two_statements_one_without_lines() -> None:
    result = _read("public/mt940/wolph-jejik-sns.sta")
    assert [(b.opening_minor, b.closing_minor, b.line_count) for b in result.balances] == [
        (123456, 120956, 2),
        (120956, 120956, 0),
    ]
    assert result.records.select("reference", "amount_minor", "value_date").rows() == [
        ("0987654321", -2000, date(2012, 6, 7)),
        ("0987654321", -500, date(2012, 6, 8)),
    ]
    assert result.records.get_column("description").to_list()[0] == "0987654321 marechal s dit is een test"


def test_asn_bank_iban_references_and_swift_blocks() -> None:
    """WoLpH/mt940's test_asnb_tags: last statement 31/1, 404.81 -> 501.23, entry dates 1 to 31 Jan 2020."""
    result = _read("public/mt940/wolph-asnb.txt")
    assert len(result.balances) == 31
    last = result.balances[-1]
    assert (last.opening_minor, last.closing_minor) == (40481, 50123)
    assert (result.balances[0].opening_minor, result.balances[0].closing_minor) == (44429, 37929)
    records = result.records
    assert records.height == 8
    assert records.get_column("booking_date").to_list()[0] == date(2020, 1, 1)
    assert records.get_column("booking_date").to_list()[-1] == date(2020, 1, 31)
    assert records.get_column("reference").to_list()[:2] == ["NL47INGB9999999999", "NL56ASNB9999999999"]
    assert records.get_column("amount_minor").to_list() == [-6500, 100000, -80155, -165, 82872, -100000, 100018, -90376]


def test_rabobank_structured_references_come_from_86_and_padding_is_stripped() -> None:
    result = _read("public/mt940/wolph-jejik-rabobank-iban.sta")
    rows = result.records.select("reference", "amount_minor", "counterparty", "description").rows()
    assert rows == [
        ("01-01-2013 12:00 0030000987654321", -2500, "CONTRA ACCOUNT HOLDER", None),
        (None, -1000, "JOHN DOE", "Reference 201301234"),
        ("08-01-2013 12:00 0030000987654321", -2500, "CONTRA ACCOUNT HOLDER", None),
        (None, -1000, "JOHN DOE", "Reference 201301234"),
    ]
    assert [(b.opening_minor, b.closing_minor) for b in result.balances] == [(100000, 96500), (96500, 93000)]


def test_betterplace_german_structured_details() -> None:
    """The amounts and balances WoLpH/mt940's with_binary_character.yml asserts."""
    result = _read("public/mt940/wolph-betterplace-with-binary-character.sta")
    rows = result.records.select("reference", "amount_minor", "counterparty").rows()
    assert rows == [
        ("100323-03-100323", 2700, "PAYPAL"),
        (None, 1306830, "WIRECARD BANK AG"),
        (None, -19328205, None),
        (None, 112000, None),
    ]
    assert result.records.get_column("description").to_list()[1] == "BETTERPLACE WDB E08.03.10-14.03.10"
    assert [(b.opening_minor, b.closing_minor) for b in result.balances] == [(38011577, 19992902), (13007319, 13119319)]


def test_ing_structured_references_pref_eref_and_bank_reference() -> None:
    result = _read("public/mt940/jejik-ing-4.txt")
    assert result.records.select("reference", "amount_minor").rows() == [
        ("SEPA-20230418220132-60947700-P1", -76851),
        ("31101100047720", 10520),  # NONREF and no reference in :86:: the bank's reference
        ("SCT-1-BO230019-R1", 33553),
        ("PPM9455956", 32778),
    ]
    assert result.records.get_column("counterparty").to_list() == [
        None, "GREENFLUX ASSETS BV", "Lambrix Elektrotechniek", "Rexel Holding Netherlands B.V."
    ]


def test_ing_example_from_the_format_description() -> None:
    result = _read("public/mt940/libmt94x-ming-from-spec.txt")
    (balance,) = result.balances
    assert (balance.opening_minor, balance.lines_minor, balance.closing_minor) == (66223, -9788, 56435)
    assert result.records.get_column("reference").to_list() == [
        "EV12341REP1231456T1234",
        "M000000003333333",
        "20120123456789",
        "EV123REP123412T1234",
        "M000000001111111",
        "20120501P0123478",
        "9001123412341234",
        "1070123412341234",
    ]
    assert result.records.get_column("description").to_list()[2] == "Factuurnr 123456 Klantnr 00123"


def test_ing_with_type_codes_ending_in_a_space_is_read_and_rejected_only_for_its_balance() -> None:
    """The layout (``NOV NONREF``) is fine: the parser reads it. The file's lines do not add up."""
    with pytest.raises(ImportRejected) as info:
        _read("public/mt940/wolph-jejik-ing.sta")
    assert_told_in_our_words(info.value)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (26, ":62F:")
    assert problem.reason == (
        "statement 'MPBZ': opening 0.00 EUR + lines -45.59 EUR = -45.59 EUR but the closing balance is 3.47 EUR"
    )


def test_sparkasse_reversal_of_credit_is_a_debit_and_the_file_does_not_balance() -> None:
    """jejik-mt940's SparkasseRcrTest asserts opening 931052.29 and the RC line as -1027.25."""
    with pytest.raises(ImportRejected) as info:
        _read("public/mt940/jejik-sparkasse-rcr.txt")
    (problem,) = info.value.problems
    assert problem.reason == (
        "statement 'STARTUMSE': opening 931052.29 EUR + lines -1027.25 EUR = 930025.04 EUR "
        "but the closing balance is 931304.50 EUR"
    )


def test_statement_text_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    """The library logs a field it cannot match, with its text; ASN's lines are such fields for its standard reader."""
    caplog.set_level("DEBUG")
    _read("public/mt940/wolph-asnb.txt")
    with pytest.raises(ImportRejected):
        parse((FIXTURES / "bank.sta").read_bytes().replace(b":60F:C240103", b":60F:C241303"), filename="b.sta", side="left")
    assert not [r for r in caplog.records if r.name.startswith("mt940")]
