"""camt.053 importer (lxml): any schema version, booked entries, balances, every problem listed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from app.importers import ImportOptions, ImportRejected, parse

DATA = (Path(__file__).parent / "fixtures_data" / "camt053_v08.xml").read_bytes()


def test_statement_is_normalised() -> None:
    result = parse(DATA, filename="stmt.xml", side="left")
    assert result.format == "camt053"
    rows = result.records.select(
        "reference", "amount_minor", "currency", "booking_date", "value_date", "counterparty", "description", "line"
    ).rows()
    assert rows == [
        ("INV-2024-0042", 50000, "EUR", date(2024, 1, 2), date(2024, 1, 3), "ACME GmbH", "Invoice 42 January", 16),
        ("RF18539007547034", -20050, "EUR", date(2024, 1, 5), None, "Landlord Ltd", None, 28),
    ]
    assert result.records.get_column("raw").to_list()[0].startswith("<Ntry")
    (balance,) = result.balances
    assert (balance.opening_minor, balance.lines_minor, balance.closing_minor, balance.checked) == (100000, 29950, 129950, True)
    assert result.warnings == ("1 entries not booked (pending or information only) were skipped",)


@pytest.mark.parametrize("version", ["02", "04", "13"])
def test_other_schema_versions_and_plain_status(version: str) -> None:
    data = DATA.replace(b"camt.053.001.08", f"camt.053.001.{version}".encode()).replace(
        b"<Sts><Cd>BOOK</Cd></Sts>", b"<Sts>BOOK</Sts>"
    )
    assert parse(data, filename="stmt.xml", side="left").records.height == 2


def test_no_namespace_is_read_too() -> None:
    data = DATA.replace(b' xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"', b"")
    assert parse(data, filename="stmt.xml", side="left", options=None).records.height == 2


def test_balance_that_does_not_add_up_is_rejected() -> None:
    with pytest.raises(ImportRejected) as info:
        parse(DATA.replace(b"1299.50", b"1299.00"), filename="stmt.xml", side="left")
    (problem,) = info.value.problems
    assert problem.line == 12
    assert "opening 1000.00 EUR + booked entries 299.50 EUR = 1299.50 EUR but the closing balance (CLBD) is 1299.00 EUR" in problem.reason


def test_every_bad_entry_is_listed() -> None:
    data = (
        DATA.replace(b'<Amt Ccy="EUR">500.00</Amt>', b'<Amt Ccy="EUR">500.005</Amt>')
        .replace(b'<Amt Ccy="EUR">200.50</Amt><CdtDbtInd>DBIT', b'<Amt Ccy="ZZZ">200.50</Amt><CdtDbtInd>DBIT')
        .replace(b"<BookgDt><DtTm>2024-01-05T10:15:00</DtTm></BookgDt>", b"")
    )
    with pytest.raises(ImportRejected) as info:
        parse(data, filename="stmt.xml", side="left")
    assert [(p.line, p.column) for p in info.value.problems] == [(18, "Ntry/Amt"), (28, "Ntry/BookgDt"), (30, "Ntry/Amt")]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (DATA[:600], "invalid element name"),
        (DATA.replace(b"camt.053.001.08", b"camt.054.001.08"), "document is camt.054, not a camt.053 statement"),
        (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><Document>&e;</Document>', "no statement"),
    ],
    ids=["truncated", "camt054", "external-entity-not-resolved"],
)
def test_bad_documents_are_rejected(data: bytes, needle: str) -> None:
    with pytest.raises(ImportRejected) as info:
        parse(data, filename="stmt.xml", side="left", options=ImportOptions(format="camt053"))
    assert any(needle in p.reason for p in info.value.problems), info.value.problems
    assert all(p.line is not None for p in info.value.problems)
