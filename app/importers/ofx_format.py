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
so (``checked=False``). Line numbers point at each ``<STMTTRN>`` tag.
"""

from __future__ import annotations

import io
import re
from datetime import date
from decimal import Decimal

import polars as pl

from app.importers import ImportOptions, ImportRejected, ImportResult, Problem, StatementBalance, content_sha256
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


def parse(data: bytes, *, filename: str, side: str, options: ImportOptions) -> ImportResult:
    from ofxtools.models.base import Aggregate
    from ofxtools.Parser import OFXTree

    tree = OFXTree()
    try:
        tree.parse(io.BytesIO(data))
    except Exception as exc:  # ofxtools raises ParseError, ValueError, IndexError... for bad input
        raise ImportRejected(filename, [Problem(None, None, f"not a readable OFX file: {exc}")]) from exc
    root = tree.getroot()
    tag_lines = [data.count(b"\n", 0, m.start()) + 1 for m in _TRN_TAG.finditer(data)]
    blocks = [m.group(0).decode("latin-1") for m in _TRN_BLOCK.finditer(data)]

    problems: list[Problem] = []
    rows: list[dict[str, object]] = []
    balances: list[StatementBalance] = []
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
            try:
                trn = Aggregate.from_etree(element)
            except Exception as exc:  # ofxtools validation errors carry the element and value
                fields = ", ".join(f"{child.tag}={(child.text or '').strip()!r}" for child in element if child.text)
                problems.append(Problem(line, "STMTTRN", f"invalid transaction ({type(exc).__name__}: {exc}) in {fields}"))
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
                closing = to_minor(Decimal(closing_text), curdef)
            except (ValueError, ArithmeticError) as exc:
                problems.append(Problem(None, "LEDGERBAL", f"statement {account}: bad closing balance {closing_text!r}: {exc}"))
            else:
                if options.sign == "invert":
                    closing, total = -closing, -total
                balances.append(StatementBalance(account, curdef, None, closing, total, count, checked=False))
    if problems:
        raise ImportRejected(filename, problems)
    if not rows:
        raise ImportRejected(filename, [Problem(None, None, "the OFX file has no transactions")])
    frame = pl.DataFrame(rows, schema={k: v for k, v in RECORD_SCHEMA.items() if k not in ("id", "side")})
    records = frame.with_columns(
        id=pl.int_range(1, frame.height + 1, dtype=pl.Int64), side=pl.lit(side)
    ).select(list(RECORD_SCHEMA))
    return ImportResult(
        records=records, format="ofx", content_sha256=content_sha256(data), balances=tuple(balances),
        warnings=("OFX carries no opening balance: the statement total could not be checked",) if balances else (),
    )
