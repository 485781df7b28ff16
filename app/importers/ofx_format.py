"""OFX 1.x (SGML) and 2.x (XML) statements via ofxtools.

ofxtools parses the file into an element tree; each ``<STMTTRN>`` is then validated on its own
(``Aggregate.from_etree``) so that every bad transaction is reported, not only the first.
Bank (``STMTRS``) and credit-card (``CCSTMTRS``) statements are read; several statements in one
file are fine.

Field mapping: reference = REFNUM, else CHECKNUM, else FITID (the bank's id for the line, the
only one OFX requires); counterparty = NAME or PAYEE/NAME; description = MEMO; booking date =
DTPOSTED; value date = DTAVAIL; currency = the transaction's CURRENCY/ORIGCURRENCY when present,
else the statement's CURDEF.

Traps: dates are taken as written in the file (first 8 digits), not after ofxtools' conversion
to UTC, which moves a late-evening local booking to the next day. OFX carries only a closing
balance (LEDGERBAL), no opening one, so no balance check is possible: the result's balances say
so (``checked=False``), and a statement without LEDGERBAL is named in the warnings. Amounts may
use a decimal comma (``200,29``), read as ofxtools reads TRNAMT. Line numbers count from the top
of the file, leading blank lines included, and point at each ``<STMTTRN>`` tag. A DOCTYPE or
entity declaration is refused (:mod:`app.importers.doctype`). ofxtools' own messages never
reach the user: they quote the whole document or Python classes; ours name the line and field.
"""

from __future__ import annotations

import io
import re
from datetime import date
from decimal import Decimal, InvalidOperation

import polars as pl

from app.importers import ImportOptions, ImportRejected, ImportResult, Problem, StatementBalance, content_sha256
from app.importers import doctype
from app.records import CURRENCY_EXPONENTS, RECORD_SCHEMA, to_minor

_TRN_TAG = re.compile(rb"<STMTTRN>", re.IGNORECASE)
_TRN_BLOCK = re.compile(rb"<STMTTRN>.*?</STMTTRN>", re.IGNORECASE | re.DOTALL)


def _text(element, path: str) -> str | None:  # noqa: ANN001 - ElementTree element
    found = element.find(path)
    if found is None or found.text is None:
        return None
    text = found.text.strip()
    return text or None


def _date(text: str | None) -> date | None:
    if not text or len(text) < 8 or not text[:8].isdigit():
        return None
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


_HEADER_HELP = (
    "an OFX 1.x file starts with OFXHEADER:100 and eight more KEY:VALUE lines, "
    "an OFX 2.x file with <?xml ...?> and <?OFX OFXHEADER=\"200\" ...?>"
)
_POSITION = re.compile(r" - position=\[(\d+):\d+\]$")
_SPEC = re.compile(r"^Can't set \w+\.(?P<field>\w+) to (?P<value>.*?): (?P<why>.*)$", re.DOTALL)


def _decimal(text: str) -> Decimal:
    """An OFX amount, read as ofxtools reads TRNAMT: a decimal comma is fine (``200,29``)."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal(text.replace(",", "."))


def _markup_problem(message: str, line_of) -> Problem:  # noqa: ANN001 - position -> line
    """An ofxtools ParseError in our words; its text quotes the whole document, ours the line."""
    position = _POSITION.search(message)
    line = line_of(int(position.group(1))) if position else None
    if tail := re.match(r"Tail text '(.*?)' (?:in|after) ", message, re.DOTALL):
        reason = f"text {tail.group(1)[:40]!r} after a closing tag, where OFX allows only tags"
    elif tags := re.match(r"Mismatched tags: open='(.*?)', close='(.*?)'", message):
        reason = f"closing tag </{tags.group(2)}> does not match the open <{tags.group(1)}>"
    elif message.startswith("Empty tag"):
        reason = "an empty tag <>"
    else:
        reason = "the OFX markup cannot be read here"
    return Problem(line, None, f"not a readable OFX file: {reason}")


def _tree(data: bytes, filename: str):  # noqa: ANN202 - ElementTree element
    """Header and markup of `data` read with ofxtools; every failure an :class:`ImportRejected` in our words."""
    from ofxtools.header import OFXHeaderError, parse_header
    from ofxtools.Parser import ParseError, TreeBuilder

    body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    first_line = data.count(b"\n", 0, len(data) - len(body)) + 1
    if body[:5].upper() == b"<OFX>":
        raise ImportRejected(filename, [Problem(first_line, "header", f"no OFX header before <OFX>: {_HEADER_HELP}")])
    try:
        _, message = parse_header(io.BytesIO(body))
    except (OFXHeaderError, UnicodeDecodeError, ValueError) as exc:
        problem = Problem(first_line, "header", f"not a readable OFX file: the OFX header is malformed ({_HEADER_HELP})")
        raise ImportRejected(filename, [problem]) from exc
    lead = len(message) - len(message.lstrip())
    start = data.decode("latin-1").find(message[lead : lead + 64])  # markup is ASCII in any charset
    before = data.count(b"\n", 0, max(start, 0)) - message.count("\n", 0, lead)

    def line_of(position: int) -> int:
        return before + message.count("\n", 0, position) + 1

    builder = TreeBuilder()
    try:
        builder.feed(message)
        return builder.close()
    except ParseError as exc:
        raise ImportRejected(filename, [_markup_problem(str(exc.args[0]), line_of)]) from exc
    except Exception as exc:  # ElementTree's close() asserts on unclosed aggregates
        problem = Problem(line_of(len(message)), None, "not a readable OFX file: it ends before its aggregates are closed")
        raise ImportRejected(filename, [problem]) from exc


def _transaction_problem(element, exc: Exception, line: int | None) -> Problem:  # noqa: ANN001 - ElementTree element
    """ofxtools' validation error for one <STMTTRN>, in our words (its text names Python classes)."""
    spec = _SPEC.match(str(exc))
    if spec is None:
        fields = ", ".join(f"{child.tag}={(child.text or '').strip()!r}" for child in element if child.text)
        return Problem(line, "STMTTRN", f"invalid transaction: {fields}")
    field, value, why = spec.group("field").upper(), spec.group("value"), spec.group("why")
    if "Value is required" in why:
        return Problem(line, field, "missing")
    if one_of := re.search(r"is not OneOf (\(.*\))", why):
        return Problem(line, field, f"{value!r} is not one of {one_of.group(1)}")
    if "does not conform to OFX formats" in why:
        return Problem(line, field, f"{value!r} is not an OFX date (YYYYMMDD, optionally HHMMSS and [zone])")
    return Problem(line, field, f"{value!r} is not valid here")


def parse(data: bytes, *, filename: str, side: str, options: ImportOptions) -> ImportResult:
    from ofxtools.models.base import Aggregate

    doctype.refuse(data, filename)
    root = _tree(data, filename)
    tag_lines = [data.count(b"\n", 0, m.start()) + 1 for m in _TRN_TAG.finditer(data)]
    blocks = [m.group(0).decode("latin-1") for m in _TRN_BLOCK.finditer(data)]

    problems: list[Problem] = []
    rows: list[dict[str, object]] = []
    balances: list[StatementBalance] = []
    unbalanced: list[str] = []  # statements without LEDGERBAL
    statements = [*root.iter("STMTRS"), *root.iter("CCSTMTRS")]
    if not statements:
        raise ImportRejected(filename, [Problem(None, None, "no bank or credit-card statement (STMTRS/CCSTMTRS) in the OFX file")])
    position = 0
    for number, statement in enumerate(statements, start=1):
        curdef = (_text(statement, "CURDEF") or options.default_currency or "").upper()
        account = _text(statement, "BANKACCTFROM/ACCTID") or _text(statement, "CCACCTFROM/ACCTID") or f"statement {number}"
        if curdef not in CURRENCY_EXPONENTS:
            problems.append(Problem(None, "CURDEF", f"statement {account}: unknown currency {curdef!r}"))
        total = 0
        count = 0
        for element in statement.iter("STMTTRN"):
            line = tag_lines[position] if position < len(tag_lines) else None
            raw = blocks[position] if position < len(blocks) else ""
            position += 1
            amount_text = _text(element, "TRNAMT")
            try:
                _decimal(amount_text or "")
            except InvalidOperation:
                problems.append(Problem(line, "TRNAMT", f"not an amount: {amount_text!r}" if amount_text else "missing"))
                continue
            try:
                trn = Aggregate.from_etree(element)
            except Exception as exc:  # noqa: BLE001 - ofxtools validation errors, translated
                problems.append(_transaction_problem(element, exc, line))
                continue
            currency = curdef
            for attr in ("currency", "origcurrency"):
                sub = getattr(trn, attr, None)
                if sub is not None and getattr(sub, "cursym", None):
                    currency = sub.cursym.upper()
            if currency not in CURRENCY_EXPONENTS:
                problems.append(Problem(line, "CURRENCY", f"unknown currency {currency!r}"))
                continue
            amount: Decimal = trn.trnamt
            try:
                minor = to_minor(amount, currency)
            except ValueError as exc:
                problems.append(Problem(line, "TRNAMT", str(exc)))
                continue
            if options.sign == "invert":
                minor = -minor
            booked = _date(_text(element, "DTPOSTED"))
            if booked is None:
                problems.append(Problem(line, "DTPOSTED", "missing or unreadable posting date"))
                continue
            payee = getattr(trn, "payee", None)
            rows.append(
                {
                    "reference": trn.refnum or trn.checknum or trn.fitid,
                    "amount_minor": minor,
                    "currency": currency,
                    "booking_date": booked,
                    "value_date": _date(_text(element, "DTAVAIL")),
                    "counterparty": trn.name or (payee.name if payee is not None else None),
                    "description": trn.memo,
                    "raw": raw,
                    "line": line if line is not None else position,
                }
            )
            total += minor if options.sign == "as_is" else -minor
            count += 1
        closing_text = _text(statement, "LEDGERBAL/BALAMT")
        if closing_text is not None and curdef in CURRENCY_EXPONENTS:
            try:
                closing = to_minor(_decimal(closing_text), curdef)
            except InvalidOperation:
                problems.append(Problem(None, "LEDGERBAL", f"statement {account}: closing balance {closing_text!r} is not an amount"))
            except ValueError as exc:
                problems.append(Problem(None, "LEDGERBAL", f"statement {account}: closing balance {closing_text!r}: {exc}"))
            else:
                if options.sign == "invert":
                    closing, total = -closing, -total
                balances.append(StatementBalance(account, curdef, None, closing, total, count, checked=False))
        elif closing_text is None:
            unbalanced.append(account)
    if problems:
        raise ImportRejected(filename, problems)
    if not rows:
        raise ImportRejected(filename, [Problem(None, None, "the OFX file has no transactions")])
    frame = pl.DataFrame(rows, schema={k: v for k, v in RECORD_SCHEMA.items() if k not in ("id", "side")})
    records = frame.with_columns(
        id=pl.int_range(1, frame.height + 1, dtype=pl.Int64), side=pl.lit(side)
    ).select(list(RECORD_SCHEMA))
    warnings = [f"statement {account} has no closing balance (LEDGERBAL): its total could not be checked"
                for account in unbalanced]
    if balances:
        warnings.append("OFX carries no opening balance: the statement total could not be checked")
    return ImportResult(
        records=records, format="ofx", content_sha256=content_sha256(data), balances=tuple(balances),
        warnings=tuple(warnings),
    )
