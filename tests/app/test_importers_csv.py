"""CSV importer: separators, date formats, column mapping, debit/credit, and every bad input."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from app.importers import ColumnMapping, ImportOptions, ImportRejected, parse
from app.records import RECORD_SCHEMA

FIXTURES = Path(__file__).parent / "fixtures_data"


def _csv(text: str, **options: object):  # noqa: ANN202
    return parse(text.encode(), filename="t.csv", side="left", options=ImportOptions(**options))


def _problems(text: str, **options: object) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(ImportRejected) as info:
        _csv(text, **options)
    return [(p.line, p.column, p.reason) for p in info.value.problems]


def test_ledger_fixture_is_normalised() -> None:
    result = parse(
        (FIXTURES / "ledger.csv").read_bytes(), filename="ledger.csv", side="right", options=ImportOptions(thousands=",")
    )
    records = result.records
    assert records.schema == RECORD_SCHEMA
    assert result.format == "csv"
    assert records.get_column("id").to_list() == [1, 2, 3]
    assert records.get_column("amount_minor").to_list() == [50000, -20050, -125000]
    assert records.get_column("side").unique().to_list() == ["right"]
    assert records.get_column("line").to_list() == [2, 3, 4]
    assert records.get_column("raw").to_list()[2] == '2024-01-09,DOC-77,"-1,250.00",EUR,Globex,Consulting'
    assert records.get_column("booking_date").to_list()[0] == date(2024, 1, 2)


def test_german_bank_export_with_debit_credit_and_decimal_comma() -> None:
    result = parse(
        (FIXTURES / "bank_de.csv").read_bytes(),
        filename="bank_de.csv",
        side="left",
        options=ImportOptions(decimal=",", thousands="."),
    )
    rows = result.records.select("amount_minor", "currency", "booking_date", "value_date", "description").rows()
    assert rows == [
        (123456, "EUR", date(2024, 1, 2), date(2024, 1, 3), "Rechnung 42"),
        (-20050, "EUR", date(2024, 1, 5), date(2024, 1, 5), "Miete"),
    ]


@pytest.mark.parametrize(
    ("cell", "decimal", "thousands", "minor"),
    [
        ("1234.56", ".", "", 123456),
        ("1,234.56", ".", ",", 123456),
        ("1.234,56", ",", ".", 123456),
        ("1 234,56", ",", " ", 123456),
        ("-0.5", ".", "", -50),
        ("+12", ".", "", 1200),
        ("12.30-", ".", "", -1230),
        ("(1,000.00)", ".", ",", -100000),
        ("7.000", ".", "", 700),
    ],
    ids=["plain", "thousands-comma", "decimal-comma", "thousands-space", "negative", "plus", "trailing-minus",
         "parentheses", "trailing-zeros"],
)
def test_amount_formats(cell: str, decimal: str, thousands: str, minor: int) -> None:
    delimiter = ";" if "," in cell or " " in cell else ","
    text = f"date{delimiter}amount{delimiter}currency\n2024-01-02{delimiter}{cell}{delimiter}EUR\n"
    records = _csv(text, decimal=decimal, thousands=thousands, delimiter=delimiter).records
    assert records.get_column("amount_minor").to_list() == [minor]


@pytest.mark.parametrize(
    ("currency", "cell", "minor"),
    [("JPY", "1200", 1200), ("JPY", "1200.00", 1200), ("KWD", "1.234", 1234), ("EUR", "0.01", 1)],
    ids=["jpy", "jpy-zero-decimals", "kwd-three-decimals", "eur-cent"],
)
def test_minor_units_per_currency(currency: str, cell: str, minor: int) -> None:
    records = _csv(f"date,amount,currency\n2024-01-02,{cell},{currency}\n").records
    assert records.get_column("amount_minor").to_list() == [minor]


def test_sign_invert_and_default_currency() -> None:
    records = _csv("date,amount\n2024-01-02,10.00\n", sign="invert", default_currency="usd").records
    assert records.select("amount_minor", "currency").row(0) == (-1000, "USD")


def test_explicit_column_mapping_by_header_name() -> None:
    text = "Posted,Doc,Value EUR,Party\n2024-01-02,A-1,5.00,ACME\n"
    options = dict(
        columns=ColumnMapping(booking_date="posted", reference="DOC", amount="Value EUR", counterparty="Party"),
        default_currency="EUR",
    )
    row = _csv(text, **options).records.select("reference", "amount_minor", "counterparty").row(0)
    assert row == ("A-1", 500, "ACME")


def test_preamble_lines_above_header_row_are_skipped() -> None:
    text = "Account;DE89 3704\nPeriod;January\ndate;amount;currency\n2024-01-02;1,00;EUR\n"
    records = _csv(text, header_row=3, decimal=",").records
    assert records.select("amount_minor", "line").row(0) == (100, 4)


def test_quoted_newline_keeps_physical_line_numbers() -> None:
    text = 'date,amount,currency,description\n2024-01-02,1,EUR,"two\nlines"\n2024-01-03,2,EUR,x\n'
    records = _csv(text).records
    assert records.get_column("line").to_list() == [2, 4]
    assert records.get_column("raw").to_list()[0] == '2024-01-02,1,EUR,"two\nlines"'


@pytest.mark.parametrize(
    ("cell", "fmt"),
    [("2024-01-31", "%Y-%m-%d"), ("31.01.2024", "%d.%m.%Y"), ("31/01/2024", "%d/%m/%Y"), ("01/31/2024", "%m/%d/%Y"),
     ("20240131", "%Y%m%d")],
    ids=["iso", "german", "day-first", "month-first", "compact"],
)
def test_date_format_detected(cell: str, fmt: str) -> None:
    records = _csv(f"date,amount,currency\n{cell},1,EUR\n").records
    assert records.get_column("booking_date").to_list() == [date(2024, 1, 31)]


def test_ambiguous_dates_are_refused_not_guessed() -> None:
    problems = _problems("date,amount,currency\n01/02/2024,1,EUR\n03/04/2024,2,EUR\n")
    assert len(problems) == 1
    assert "%d/%m/%Y" in problems[0][2] and "%m/%d/%Y" in problems[0][2] and "date_format" in problems[0][2]
    records = _csv("date,amount,currency\n01/02/2024,1,EUR\n", date_format="%m/%d/%Y").records
    assert records.get_column("booking_date").to_list() == [date(2024, 1, 2)]


def test_every_problem_is_listed_with_line_column_and_reason() -> None:
    text = (
        "date,reference,amount,currency\n"
        "2024-01-02,A,12.345,EUR\n"  # too many decimals
        "2024-13-02,B,abc,XXX\n"  # bad date, bad amount, bad currency
        "2024-01-04,C,1,EUR,extra\n"  # field count
        "2024-01-05,D,,EUR\n"  # empty amount
        ",E,1,EUR\n"  # empty date
    )
    problems = _problems(text)
    assert problems == [
        (2, "amount", "more decimals than the currency allows (2): 12.345 has 3 decimals"),
        (3, "amount", "not an amount (decimal '.', thousands 'none'): 'abc'"),
        (3, "currency", "unknown currency (expected an ISO 4217 code such as EUR): 'XXX'"),
        (3, "date", "not a date in format %Y-%m-%d: '2024-13-02'"),
        (4, None, "expected 4 fields like the header, found 5 (delimiter ',')"),
        (5, "amount", "empty amount"),
        (6, "date", "empty booking date"),
    ]


def test_debit_and_credit_both_filled_or_both_empty() -> None:
    text = "date,debit,credit,currency\n2024-01-02,1.00,2.00,EUR\n2024-01-03,,,EUR\n2024-01-04,3.00,,EUR\n"
    problems = _problems(text)
    assert [(line, reason) for line, _, reason in problems] == [
        (2, "both debit and credit are filled; one of them must be empty or zero"),
        (3, "neither debit nor credit is filled"),
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("reference,currency\nA,EUR\n", "no amount column"),
        ("amount,currency\n1,EUR\n", "no booking date column"),
        ("date,amount\n2024-01-02,1\n", "no currency column and no default_currency"),
        ("date,amount,currency\n", "header but no data rows"),
        ("date,Amount,amount,currency\n2024-01-02,1,1,EUR\n", "appears twice"),
    ],
    ids=["no-amount", "no-date", "no-currency", "no-rows", "duplicate-header"],
)
def test_missing_columns_are_rejected(text: str, needle: str) -> None:
    problems = _problems(text)
    assert any(needle in reason for _, _, reason in problems), problems


def test_mapping_to_a_missing_header_names_the_header() -> None:
    problems = _problems("date,amount,currency\n2024-01-02,1,EUR\n", columns=ColumnMapping(reference="Invoice"))
    assert problems == [(1, "Invoice", "no column named 'Invoice' for reference; the header has ['date', 'amount', 'currency']")]


def test_wrong_encoding_lists_each_bad_line() -> None:
    data = "date,amount,currency,description\n2024-01-02,1,EUR,Caf\xe9\n2024-01-03,1,EUR,ok\n2024-01-04,1,EUR,\xe0\n"
    with pytest.raises(ImportRejected) as info:
        parse(data.encode("cp1252"), filename="t.csv", side="left")
    assert [p.line for p in info.value.problems] == [2, 4]
    assert "cp1252" in info.value.problems[0].reason
    records = parse(data.encode("cp1252"), filename="t.csv", side="left", options=ImportOptions(encoding="cp1252")).records
    assert records.get_column("description").to_list() == ["Caf\xe9", "ok", "\xe0"]


def test_utf8_bom_is_stripped() -> None:
    records = parse(b"\xef\xbb\xbfdate,amount,currency\n2024-01-02,1,EUR\n", filename="t.csv", side="left").records
    assert records.height == 1


def test_malformed_quoting_is_reported() -> None:
    problems = _problems('date,amount,currency,d\n2024-01-02,1,EUR,"a"b\n', delimiter=",")
    assert problems[0][0] == 2 and "malformed CSV" in problems[0][2]


def test_thousands_separator_is_not_assumed() -> None:
    problems = _problems("date,amount,currency\n2024-01-02,\"1,250.00\",EUR\n")
    assert problems[0][:2] == (2, "amount") and "not an amount" in problems[0][2]


def test_content_hash_identifies_the_bytes() -> None:
    data = (FIXTURES / "bank_de.csv").read_bytes()
    options = ImportOptions(decimal=",", thousands=".")
    first = parse(data, filename="a.csv", side="left", options=options)
    second = parse(data, filename="b.csv", side="right", options=options)
    changed = parse(data + b"\n\n", filename="a.csv", side="left", options=options)
    assert first.content_sha256 == second.content_sha256
    assert first.content_sha256 != changed.content_sha256
    assert len(first.content_sha256) == 64


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (dict(decimal=",", thousands=","), "equals the decimal separator"),
        (dict(delimiter=",", decimal=","), "delimiter ',' equals the decimal separator"),
        (dict(delimiter=";;"), "one character"),
        (dict(default_currency="EURO"), "unknown currency 'EURO'"),
        (dict(encoding="klingon"), "unknown encoding"),
        (dict(format="pdf"), "format"),
    ],
    ids=["same-separators", "delimiter-is-decimal", "long-delimiter", "bad-currency", "bad-encoding", "bad-format"],
)
def test_bad_options_name_the_value(options: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ImportOptions(**options)


def test_generated_records_round_trip_through_csv() -> None:
    from app import datagen

    dataset = datagen.generate(3_000, seed=5)
    result = parse(datagen.to_csv(dataset.left), filename="left.csv", side="left")
    columns = ["id", "reference", "amount_minor", "currency", "booking_date", "value_date", "counterparty", "description"]
    assert result.records.select(columns).equals(dataset.left.sort("id").select(columns))


def test_fast_and_quoted_paths_agree() -> None:
    plain = "date;reference;amount;currency\n\n2024-01-02;A-1;1,50;EUR\n;;;\n2024-01-03;B-2;-2;JPY\n"
    quoted = plain.replace("A-1", '"A-1"')  # one quote character sends the file through the csv module
    options = dict(decimal=",")
    fast, slow = _csv(plain, **options).records, _csv(quoted, **options).records
    assert fast.drop("raw").equals(slow.drop("raw"))
    assert fast.get_column("line").to_list() == [3, 5]
    assert fast.get_column("raw").to_list() == ["2024-01-02;A-1;1,50;EUR", "2024-01-03;B-2;-2;JPY"]


# -- column mapping (issue #12) -------------------------------------------------------------------

@pytest.mark.parametrize("header", ["id", "entry_id", "Entry ID", "transaction id"])
def test_the_files_own_id_column_is_kept_as_source_id(header: str) -> None:
    result = _csv(f"{header},date,amount,currency\nA-17,2024-01-02,1.00,EUR\n0042,2024-01-03,2.00,EUR\n")
    records = result.records
    assert records.get_column("source_id").to_list() == ["A-17", "0042"]  # text: leading zeros kept
    assert records.get_column("id").to_list() == [1, 2]  # the importer's ids stay 1..n
    assert records.select(list(RECORD_SCHEMA)).schema == RECORD_SCHEMA


def test_without_an_id_column_there_is_no_source_id() -> None:
    assert "source_id" not in _csv("date,amount,currency\n2024-01-02,1.00,EUR\n").records.columns


@pytest.mark.skipif("id" not in ColumnMapping.model_fields,
                    reason="needs ColumnMapping.id in app/importers/__init__.py (asked for in issue #12)")
def test_an_id_column_can_be_mapped_by_name() -> None:
    records = _csv("Buchungs-Nr,date,amount,currency\nB-1,2024-01-02,1.00,EUR\n",
                   columns=ColumnMapping(id="Buchungs-Nr")).records  # type: ignore[call-arg]
    assert records.get_column("source_id").to_list() == ["B-1"]


def test_mapping_the_date_to_the_amount_column_names_the_conflict() -> None:
    problems = _problems("date,amount,currency\n2024-01-02,1.00,EUR\n", columns=ColumnMapping(booking_date="amount"))
    reasons = " | ".join(reason for _, _, reason in problems)
    assert "'amount' is mapped to booking_date" in reasons and "no amount column" in reasons, problems


def test_two_fields_mapped_to_one_column_is_refused() -> None:
    problems = _problems("date,amount,currency\n2024-01-02,1.00,EUR\n",
                         columns=ColumnMapping(amount="amount", credit="amount"))
    assert any("column 'amount' is mapped to both amount and credit" in reason for _, _, reason in problems), problems


@pytest.mark.parametrize(("cells", "minor"), [
    (["12,50", "1.234,56", "-0,01"], [1250, 123456, -1]),
    (["12,5", "(3,00)", "7"], [1250, -300, 700]),
    (["1 234,56", "2,00", "3"], [123456, 200, 300]),
], ids=["dot-groups", "parens", "space-groups"])
def test_decimal_comma_is_detected_from_the_data(cells: list[str], minor: list[int]) -> None:
    rows = "".join(f'2024-01-0{i + 1};{cell};EUR\n' for i, cell in enumerate(cells))
    result = _csv("date;amount;currency\n" + rows)
    assert result.records.get_column("amount_minor").to_list() == minor
    assert any("decimal comma" in warning for warning in result.warnings), result.warnings


@pytest.mark.parametrize("cells", [["1,250"], ["1,250", "3.50"], ["12,50", "3.50"]],
                         ids=["three-digits-ambiguous", "dot-decimal-present", "mixed"])
def test_decimal_comma_is_not_guessed_against_the_data(cells: list[str]) -> None:
    rows = "".join(f'2024-01-0{i + 1};{cell};EUR\n' for i, cell in enumerate(cells))
    problems = _problems("date;amount;currency\n" + rows)
    assert problems and all("decimal comma" not in reason for _, _, reason in problems)


def test_an_explicit_decimal_is_never_overridden() -> None:
    problems = _problems("date;amount;currency\n2024-01-02;12,50;EUR\n", decimal=".")
    assert problems[0][:2] == (2, "amount")


def test_repeated_problems_collapse_into_one_with_count_and_lines() -> None:
    rows = "".join(f"2024-01-02,R{i},abc,EUR\n" for i in range(10_000))
    with pytest.raises(ImportRejected) as info:
        _csv("date,reference,amount,currency\n" + rows)
    problems = info.value.problems
    assert len(problems) == 1
    only = problems[0].as_dict()
    assert only["count"] == 10_000 and only["lines"] == [2, 3, 4, 5, 6] and only["line"] == 2
    assert "not an amount" in only["reason"] and "10000 lines" in only["reason"] and "'abc'" in only["reason"]
    assert "thousands=','" not in only["reason"]


def test_a_few_problems_of_one_kind_are_still_listed_one_by_one() -> None:
    problems = _problems("date,amount,currency\n2024-01-02,x,EUR\n2024-01-03,y,EUR\n")
    assert [(line, reason.startswith("not an amount")) for line, _, reason in problems] == [(2, True), (3, True)]


def test_ten_thousand_decimal_comma_lines_import_without_options() -> None:
    rows = "".join(f"2024-01-02;R{i};{i},{i % 100:02d};EUR\n" for i in range(10_000))
    records = _csv("date;reference;amount;currency\n" + rows).records
    assert records.height == 10_000 and records.get_column("amount_minor")[123] == 12323


def test_nul_in_a_cell_is_a_problem_not_a_database_error() -> None:
    problems = _problems("date,reference,amount,currency\n2024-01-02,A\x00B,1.00,EUR\n", format="csv")
    assert problems[0][0] == 2 and "NUL" in problems[0][2]
