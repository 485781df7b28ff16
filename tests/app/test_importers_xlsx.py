"""XLSX importer: typed cells (numbers, dates) and text cells go through the CSV pipeline."""

from __future__ import annotations

import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook

from app.importers import ImportOptions, ImportRejected, parse
from tests.app.test_importers_errors import assert_told_in_our_words
from app.records import RECORD_SCHEMA


def _workbook(rows: list[list[object]], title: str = "Ledger", extra_sheet: bool = False) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    if extra_sheet:
        workbook.create_sheet("Other").append(["nothing"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


HEADER = ["Booking Date", "Reference", "Debit", "Credit", "Currency", "Name"]


def test_typed_cells_become_records() -> None:
    data = _workbook(
        [
            HEADER,
            [date(2024, 1, 2), "INV-1", None, 0.1 + 0.2, "EUR", "ACME"],  # float noise: 0.30000000000000004
            [datetime(2024, 1, 3), "INV-2", 12.5, None, "EUR", "Globex"],
            ["2024-01-04", "INV-3", "7", "", "JPY", None],
        ]
    )
    result = parse(data, filename="ledger.xlsx", side="right")
    assert result.format == "xlsx"
    assert result.records.schema == RECORD_SCHEMA
    rows = result.records.select("reference", "amount_minor", "currency", "booking_date", "line").rows()
    assert rows == [
        ("INV-1", 30, "EUR", date(2024, 1, 2), 2),
        ("INV-2", -1250, "EUR", date(2024, 1, 3), 3),
        ("INV-3", -7, "JPY", date(2024, 1, 4), 4),
    ]
    assert result.records.get_column("raw").to_list()[1] == "2024-01-03\tINV-2\t12.5\t\tEUR\tGlobex"


def test_number_cells_follow_the_decimal_comma_option() -> None:
    data = _workbook([["Datum", "Betrag", "Währung"], [date(2024, 1, 2), 1234.56, "EUR"]])
    records = parse(data, filename="de.xlsx", side="left", options=ImportOptions(decimal=",")).records
    assert records.get_column("amount_minor").to_list() == [123456]


def test_sheet_by_name() -> None:
    data = _workbook([["date", "amount", "currency"], [date(2024, 1, 2), 1, "EUR"]], title="Bank", extra_sheet=True)
    assert parse(data, filename="b.xlsx", side="left", options=ImportOptions(sheet="Bank")).records.height == 1
    with pytest.raises(ImportRejected, match=r"no sheet named 'Missing'; the workbook has \['Bank', 'Other'\]"):
        parse(data, filename="b.xlsx", side="left", options=ImportOptions(sheet="Missing"))


def test_every_bad_cell_is_listed() -> None:
    data = _workbook(
        [
            ["date", "amount", "currency"],
            [date(2024, 1, 2), 1.005, "EUR"],  # three decimals
            ["31.01.2024", 1, "EUR"],  # text date in another pattern than the typed cells
            [date(2024, 1, 4), "x", "EUR", "stray"],  # bad amount, a cell beyond the header
            [date(2024, 1, 5), 2, "ZZZ"],
        ]
    )
    with pytest.raises(ImportRejected) as info:
        parse(data, filename="bad.xlsx", side="left")
    assert [(p.line, p.column) for p in info.value.problems] == [
        (2, "amount"), (3, "date"), (4, None), (4, "amount"), (5, "currency"),
    ]
    assert "1.005 has 3 decimals" in info.value.problems[0].reason
    assert "stray" in info.value.problems[2].reason


@pytest.mark.parametrize(
    "data",
    [b"PK\x03\x04 this is not really a zip", b"PK\x03\x04" + b"\x00" * 100],
    ids=["truncated", "zeros"],
)
def test_broken_workbook_is_rejected(data: bytes) -> None:
    with pytest.raises(ImportRejected, match="not a readable XLSX workbook") as info:
        parse(data, filename="broken.xlsx", side="left")
    assert_told_in_our_words(info.value)
    assert "File is not a zip file" not in info.value.problems[0].reason  # openpyxl's words
