"""Format detection, unsupported formats (415) and whole-file rejections (422)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.importers import SUPPORTED_FORMATS, ImportOptions, ImportRejected, UnsupportedFormat, detect_format, parse

FIXTURES = Path(__file__).parent / "fixtures_data"


@pytest.mark.parametrize(
    ("name", "as_name", "fmt"),
    [
        ("ledger.csv", "ledger.csv", "csv"),
        ("bank_de.csv", "export.txt", "csv"),
        ("bank.ofx", "bank.ofx", "ofx"),
        ("bank.sta", "statement.txt", "mt940"),
        ("camt053_v08.xml", "statement.dat", "camt053"),
    ],
    ids=["csv", "csv-as-txt", "ofx", "mt940-as-txt", "camt-any-name"],
)
def test_content_decides_the_format(name: str, as_name: str, fmt: str) -> None:
    assert detect_format((FIXTURES / name).read_bytes(), as_name) == fmt


@pytest.mark.parametrize(
    ("data", "filename", "needle"),
    [
        (b"%PDF-1.7\n...", "statement.pdf", "a PDF document"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 50, "old.xls", "legacy .xls"),
        (b"PK\x03\x04" + b"\x00" * 50, "archive.zip", "ZIP archive that is not an XLSX"),
        (b"<?xml version='1.0'?><invoice/>", "invoice.xml", "neither camt.053 nor OFX"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "logo.png", "binary content"),
        (b"just some words\nwithout structure\n", "notes.md", "neither delimited text"),
    ],
    ids=["pdf", "xls", "zip", "other-xml", "png", "prose"],
)
def test_unsupported_format_names_file_and_supported_list(data: bytes, filename: str, needle: str) -> None:
    with pytest.raises(UnsupportedFormat) as info:
        parse(data, filename=filename, side="left")
    message = str(info.value)
    assert filename in message and needle in message
    assert all(fmt in message for fmt in SUPPORTED_FORMATS)


@pytest.mark.parametrize("data", [b"", b"  \n\r\n "], ids=["empty", "blank"])
def test_empty_file_is_rejected(data: bytes) -> None:
    with pytest.raises(ImportRejected, match="the file is empty"):
        parse(data, filename="empty.csv", side="left")


def test_side_is_checked() -> None:
    with pytest.raises(ValueError, match=r"side must be one of \['left', 'right'\], got 'middle'"):
        parse(b"x", filename="a.csv", side="middle")


def test_forced_format_overrides_detection() -> None:
    with pytest.raises(ImportRejected):
        parse((FIXTURES / "ledger.csv").read_bytes(), filename="ledger.csv", side="left", options=ImportOptions(format="camt053"))
