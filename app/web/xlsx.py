"""XLSX exports written by hand: PostgreSQL renders the sheet's rows, Python zips the parts.

openpyxl builds a Python object per cell (~10 us each: 109 s for the 198k-row matches export
of a 100k x 100k run). Here PostgreSQL renders each result row as a SpreadsheetML ``<row>``
(inline strings, no shared-strings table) and sends it through ``COPY``; Python checks the
bytes for the few characters SQL leaves alone, counts the rows and deflates them into the
sheet part of a zip on a spooled temp file (:func:`export`).

Cells, as openpyxl wrote the same values (read back equal, see tests/app/test_results_xlsx.py):

* integers, ``numeric``, floats: numbers (``numeric`` without trailing zeros, as openpyxl's
  ``%.16g`` wrote it; a float as the shortest text that reads back exactly, where ``%.16g``
  cut a 17th digit); NaN and infinities: an empty cell (openpyxl: an empty value).
* ``date``: the serial day number (1900 date system, with Excel's phantom 1900-02-29) in
  style 1, ``yyyy-mm-dd``.
* text: an inline string; ``''`` and NULL: an empty cell; beyond 32,767 characters (Excel's
  cell limit) cut there, as openpyxl did. Always text: openpyxl made ``#N/A`` an error cell and
  ``=...`` a formula (the export SQL defuses free text, so only in the constrained columns).
* any other column type: :class:`UnsupportedColumn` (openpyxl refused most of them too).

Escaping: ``& < >`` and the line breaks (``\\n``, ``\\r`` as character references: an XML
parser turns a raw ``\\r`` into ``\\n``) in SQL. Control characters XML 1.0 cannot hold, and
U+FFFE/U+FFFF, become Excel's own ``_xHHHH_`` escape; a literal ``_xHHHH_`` in the data gets
its underscore escaped (``_x005F_``) so that Excel shows it as written (XlsxWriter does the
same). openpyxl raised ``IllegalCharacterError`` on such text: the whole export was an HTTP 500.

Traps:

* Row order is the query's ``ORDER BY`` inside a subquery (``FROM (query) q``): PostgreSQL
  does not flatten a subquery that sorts, so its order reaches ``COPY``. Do not wrap it in
  anything that joins or aggregates.
* ``COPY ... (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')`` writes a row verbatim unless it
  holds ``\\x01``, ``\\x02``, ``\\n`` or ``\\r``. SQL has replaced the line breaks, so a quoted
  row is one with control characters: :func:`_rare_rows` unquotes and escapes it.
* Cells carry no ``r`` reference (it cost 0.8 s of 2.3 s at 198k rows): a cell's column is its
  position in the row, so a NULL is an empty ``<c/>``, never left out. Excel, LibreOffice,
  openpyxl read that; a reader that insists on ``r`` does not.
* The sheet part is a plain zip entry (no ZIP64): beyond 2 GiB of sheet XML it is
  :class:`SheetTooLarge`, whatever the row count.

Exceptions::

    SheetLimitExceeded          the export does not fit one sheet (HTTP 413 at the API)
    ├── TooManyRows             more rows than Excel's sheet limit
    └── SheetTooLarge           more sheet XML than a zip entry without ZIP64 holds
    UnsupportedColumn           a query column whose type has no cell rendering (a bug)
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

import psycopg
from psycopg.postgres import types as pg_types

MAX_TEXT = 32_767
"""Characters in one cell (Excel's limit); longer text is cut, as openpyxl did."""

MAX_SHEET_BYTES = zipfile.ZIP64_LIMIT
"""Sheet XML one zip entry without ZIP64 extensions holds."""

BLOCK_BYTES = 1 << 20
"""Rows are checked, counted and deflated in blocks of about this size."""

SPOOL_BYTES = 16 << 20
"""A workbook up to this size stays in memory; a larger one goes to a temp file."""

COMPRESS_LEVEL = 1
"""zlib level: the sheet XML is repetitive, level 1 is 0.3 s for 180 MB and makes 10 MB."""

_EPOCH = "DATE '1899-12-30'"
_COPY_OPTIONS = "(FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"


class SheetLimitExceeded(ValueError):
    """The export does not fit one XLSX sheet; CSV has no such limit."""


class TooManyRows(SheetLimitExceeded):
    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"the {what} export has more than {limit} rows, the XLSX sheet limit; use format=csv")


class SheetTooLarge(SheetLimitExceeded):
    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"the {what} export is over {limit} bytes of sheet XML, more than an XLSX sheet "
                         "holds here; use format=csv")


class UnsupportedColumn(TypeError):
    def __init__(self, name: str, type_name: str) -> None:
        super().__init__(f"column {name!r} has type {type_name!r}; XLSX cells are rendered for "
                         f"{', '.join(sorted(CELLS))}")


# -- cells: SQL rendering one column's value as a <c> element ---------------------------------

def _text_sql(x: str) -> str:
    # octet_length first: left() counts characters, a cost on every cell (0.2 s at 198k rows)
    value = f"nullif(CASE WHEN octet_length({x}) > {MAX_TEXT} THEN left({x}, {MAX_TEXT}) ELSE {x} END, '')"
    for char, ref in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\\n", "&#10;"), ("\\r", "&#13;")):
        value = f"replace({value}, E'{char}', '{ref}')"
    return f"""coalesce('<c t="inlineStr"><is><t xml:space="preserve">' || {value} || '</t></is></c>', '<c/>')"""


def _integer_sql(x: str) -> str:
    return f"coalesce('<c><v>' || {x} || '</v></c>', '<c/>')"


def _number_sql(x: str, text: str) -> str:
    value = f"nullif(nullif(nullif({text}, 'NaN'), 'Infinity'), '-Infinity')"
    return f"coalesce('<c><v>' || {value} || '</v></c>', '<c/>')"


def _date_sql(x: str) -> str:
    # openpyxl's to_excel: days since 1899-12-30, one less up to 1900-02-28 (Excel's 1900-02-29)
    serial = (f"CASE WHEN isfinite({x}) THEN {x} - {_EPOCH} "
              f"- ({x} > {_EPOCH} AND {x} <= DATE '1900-02-28')::int END")
    return f"""coalesce('<c s="1"><v>' || {serial} || '</v></c>', '<c/>')"""


CELLS: dict[str, Callable[[str], str]] = {
    **dict.fromkeys(("int2", "int4", "int8", "oid"), _integer_sql),
    "numeric": lambda x: _number_sql(x, f"trim_scale({x})::text"),
    **dict.fromkeys(("float4", "float8"), lambda x: _number_sql(x, f"{x}::text")),
    "date": _date_sql,
    **dict.fromkeys(("text", "varchar"), _text_sql),
}
"""PostgreSQL type name -> SQL rendering a value of it (an expression) as one cell."""


def rows_sql(query: str, columns: Sequence[tuple[str, str]]) -> str:
    """SQL yielding one SpreadsheetML ``<row>`` per row of ``query``, in its order, at most ``%(xlsx_rows)s``.

    ``columns`` are ``query``'s ``(name, PostgreSQL type name)`` in order (:func:`describe`).
    """
    aliases = [f"c{i}" for i in range(len(columns))]
    cells = []
    for alias, (name, type_name) in zip(aliases, columns):
        if type_name not in CELLS:
            raise UnsupportedColumn(name, type_name)
        cells.append(CELLS[type_name](f"q.{alias}"))
    return (f"SELECT concat('<row>', {', '.join(cells)}, '</row>') "  # one copy of the row, unlike ||
            f"FROM ({query}) AS q ({', '.join(aliases)}) LIMIT %(xlsx_rows)s")


def describe(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, type name)`` of each column of ``query`` (planned, not run)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM ({query}) AS q LIMIT 0", params)
        assert cur.description is not None
        out = []
        for col in cur.description:
            info = pg_types.get(col.type_code)
            out.append((col.name, info.name if info else str(col.type_code)))
        return out


# -- text: what SQL leaves to Python ----------------------------------------------------------

_CONTROL = bytes(c for c in range(32) if c not in (0x09, 0x0A))
"""Bytes that never appear in a plain row: C0 controls but TAB and LF (``\\r`` is replaced
in SQL; ``\\x01``/``\\x02`` also mark a COPY-quoted row)."""

_RARE = re.compile(rb"_(?=x[0-9A-Fa-f]{4}_)|[\x00-\x08\x0b\x0c\x0e-\x1f]|\xef\xbf[\xbe\xbf]")
"""A literal ``_xHHHH_``'s underscore, an XML-illegal control character, U+FFFE or U+FFFF (UTF-8)."""


def _escape_rare(m: re.Match[bytes]) -> bytes:
    s = m.group()
    if s == b"_":
        return b"_x005F_"
    return b"_x%04X_" % ord(s.decode())


def _rare_rows(block: bytes) -> bytes:
    """``block`` (whole rows from COPY) with rows that are quoted or hold rare characters fixed."""
    rows = block.split(b"\n")
    for i, row in enumerate(rows):
        if row[:1] == b"\x02":
            row = row[1:-1].replace(b"\x02\x02", b"\x02")
        rows[i] = _RARE.sub(_escape_rare, row)
    return b"\n".join(rows)


def _plain(block: bytes) -> bool:
    """No rare character in ``block``: a C-speed pass per check (a regex search is 7 times slower)."""
    return (len(block.translate(None, _CONTROL)) == len(block) and b"_x" not in block
            and b"\xef\xbf\xbe" not in block and b"\xef\xbf\xbf" not in block)


def xml_text(text: str) -> str:
    """``text`` as the content of a ``<t xml:space="preserve">`` element, escaped as the SQL does it."""
    text = text[:MAX_TEXT].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\n", "&#10;").replace("\r", "&#13;")
    return _RARE.sub(_escape_rare, text.encode()).decode()


def header_row(names: Sequence[str]) -> bytes:
    cells = "".join(f'<c t="inlineStr"><is><t xml:space="preserve">{xml_text(n)}</t></is></c>' for n in names)
    return f"<row>{cells}</row>\n".encode()


# -- the package ------------------------------------------------------------------------------

_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_SHEET = "xl/worksheets/sheet1.xml"

_CONTENT_TYPES = (
    _XML + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    f'<Override PartName="/{_SHEET}" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    '</Types>')
_ROOT_RELS = (
    _XML + f'<Relationships xmlns="{_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
_WORKBOOK_RELS = (
    _XML + f'<Relationships xmlns="{_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/></Relationships>')
_STYLES = (
    _XML + f'<styleSheet xmlns="{_NS}">'
    '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/></numFmts>'
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    '</styleSheet>')
"""Style 0: the default; style 1: dates as ``yyyy-mm-dd`` (openpyxl's format for dates)."""


def _workbook(sheet: str) -> str:
    name = xml_text(sheet).replace('"', "&quot;")
    return (_XML + f'<workbook xmlns="{_NS}" xmlns:r="{_REL}"><sheets>'
            f'<sheet name="{name}" sheetId="1" r:id="rId1"/></sheets></workbook>')


class SheetWriter:
    """One workbook with one sheet, written to ``out``: the header, then blocks of COPY rows.

    Trap: ``out`` must be seekable (zipfile rewrites each local header once its sizes are known).
    """

    def __init__(self, out: IO[bytes], sheet: str, header: Sequence[str], max_rows: int) -> None:
        self.sheet, self.max_rows, self.rows = sheet, max_rows, 0
        self._bytes = 0
        self._zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
        for name, body in (("[Content_Types].xml", _CONTENT_TYPES), ("_rels/.rels", _ROOT_RELS),
                           ("xl/workbook.xml", _workbook(sheet)), ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS),
                           ("xl/styles.xml", _STYLES)):
            self._zip.writestr(name, body)
        self._part = self._zip.open(_SHEET, "w")
        self._write(f'{_XML}<worksheet xmlns="{_NS}"><sheetData>'.encode() + header_row(header))

    def _write(self, data: bytes) -> None:
        self._bytes += len(data)
        if self._bytes > MAX_SHEET_BYTES - 64:
            raise SheetTooLarge(self.sheet, MAX_SHEET_BYTES)
        self._part.write(data)

    def rows_block(self, block: bytes) -> None:
        """Whole rows as COPY wrote them (each ending in ``\\n``)."""
        self.rows += block.count(b"\n")
        if self.rows > self.max_rows:
            raise TooManyRows(self.sheet, self.max_rows)
        self._write(block if _plain(block) else _rare_rows(block))

    def close(self) -> None:
        self._write(b"</sheetData></worksheet>")
        self._part.close()
        self._zip.close()

    def abort(self) -> None:
        """Close the zip, whatever state it is in (else its ``__del__`` writes to a closed file)."""
        with contextlib.suppress(Exception):
            self._part.close()
        with contextlib.suppress(Exception):
            self._zip.close()


def export(conn: psycopg.Connection, query: str, params: dict[str, Any], sheet: str, header: Sequence[str],
           max_rows: int) -> IO[bytes]:
    """The rows of ``query`` as an XLSX workbook in a spooled temp file, positioned at its start.

    Raises :class:`SheetLimitExceeded` (nothing of the file is left) beyond ``max_rows`` rows
    or :data:`MAX_SHEET_BYTES` of sheet XML: PostgreSQL stops after ``max_rows + 1`` rows.
    """
    conn.execute("SET LOCAL extra_float_digits = 1")  # floats as the shortest text that reads back exactly
    sql = rows_sql(query, describe(conn, query, params))
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - handed to the caller open
    writer = SheetWriter(out, sheet, header, max_rows)
    try:
        # One block is deflated (zlib lets go of the GIL) while the next one arrives.
        with ThreadPoolExecutor(1, thread_name_prefix="xlsx") as deflate:
            pending: Future[None] | None = None
            with conn.cursor().copy(f"COPY ({sql}) TO STDOUT {_COPY_OPTIONS}",
                                    {**params, "xlsx_rows": max_rows + 1}) as copy:
                buf = bytearray()
                for chunk in copy:
                    buf += chunk
                    if len(buf) >= BLOCK_BYTES:
                        cut = buf.rfind(b"\n") + 1  # whole rows only, however COPY's data is cut up
                        block = bytes(buf[:cut])
                        del buf[:cut]
                        if pending is not None:
                            pending.result()
                        pending = deflate.submit(writer.rows_block, block)
            if pending is not None:
                pending.result()
            writer.rows_block(bytes(buf))
        writer.close()
    except BaseException:
        writer.abort()
        out.close()
        raise
    out.seek(0)
    return out


def chunks(file: IO[bytes], size: int = 256 * 1024) -> Iterator[bytes]:
    """``file`` read to the end in pieces of ``size``, then closed (also when the client goes away)."""
    try:
        while piece := file.read(size):
            yield piece
    finally:
        file.close()
