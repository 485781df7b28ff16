"""camt.053 importer (lxml): any schema version, booked entries, balances, every problem listed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from app.importers import ImportOptions, ImportRejected, parse
from tests.app.test_importers_errors import assert_told_in_our_words

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
    ],
    ids=["truncated", "camt054"],
)
def test_bad_documents_are_rejected(data: bytes, needle: str) -> None:
    with pytest.raises(ImportRejected) as info:
        parse(data, filename="stmt.xml", side="left", options=ImportOptions(format="camt053"))
    assert any(needle in p.reason for p in info.value.problems), info.value.problems
    assert all(p.line is not None for p in info.value.problems)
    assert_told_in_our_words(info.value)


def test_one_uploads_xml_errors_never_show_up_in_the_next() -> None:
    """Issue #12: lxml's per-thread error log grew with every upload (5, then 7, then 9 problems)."""
    truncated = DATA[:600]
    counts = []
    for _ in range(3):
        for data in (truncated, b"<?xml version='1.0'?><Document><a></b></Document>"):
            with pytest.raises(ImportRejected) as info:
                parse(data, filename="stmt.xml", side="left", options=ImportOptions(format="camt053"))
            counts.append(len(info.value.problems))
    assert counts == counts[:2] * 3, counts


LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Document [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
"""


@pytest.mark.parametrize(
    ("prolog", "entity"),
    [
        (LAUGHS, b"&lol3;"),
        (b'<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY e SYSTEM "file:///etc/hostname">]>\n', b"&e;"),
        (b'<?xml version="1.0"?>\n<!DOCTYPE Document [<!ENTITY e "Invoice">]>\n', b"&e;"),
    ],
    ids=["billion-laughs", "external-entity", "internal-entity"],
)
def test_doctype_and_entities_are_refused(prolog: bytes, entity: bytes) -> None:
    """Issue #12: accepted silently, the text around the entity dropped ('Pay &e; now' -> 'Pay')."""
    body = DATA.split(b"?>", 1)[1].replace(b"Invoice 42 January", b"Pay " + entity + b" now")
    with pytest.raises(ImportRejected) as info:
        parse(prolog + body, filename="stmt.xml", side="left", options=ImportOptions(format="camt053"))
    assert_told_in_our_words(info.value)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (2, "DOCTYPE")
    assert "refused" in problem.reason


def test_doctype_in_utf16_is_refused_too() -> None:
    data = (b'<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE Document [<!ENTITY e "x">]>\n').decode().encode("utf-16")
    with pytest.raises(ImportRejected) as info:
        parse(data + DATA.split(b"?>", 1)[1].decode().encode("utf-16-le"), filename="s.xml", side="left",
              options=ImportOptions(format="camt053"))
    assert [p.column for p in info.value.problems] == ["DOCTYPE"]


def test_doctype_in_an_encoding_the_byte_scan_cannot_read_is_refused_after_parsing() -> None:
    text = '<?xml version="1.0" encoding="UTF-32"?>\n<!DOCTYPE Document [<!ENTITY e "x">]>\n' + DATA.split(b"?>", 1)[1].decode()
    with pytest.raises(ImportRejected) as info:
        parse(text.encode("utf-32"), filename="s.xml", side="left", options=ImportOptions(format="camt053"))
    assert [(p.line, p.column) for p in info.value.problems] == [(1, "DOCTYPE")]


def test_an_amount_that_is_not_a_number_is_said_in_our_words() -> None:
    with pytest.raises(ImportRejected) as info:
        parse(DATA.replace(b'<Amt Ccy="EUR">500.00</Amt>', b'<Amt Ccy="EUR">5x0.00</Amt>'), filename="s.xml", side="left")
    assert_told_in_our_words(info.value)
    assert [p.reason for p in info.value.problems] == ["amount '5x0.00' is not a number"]
