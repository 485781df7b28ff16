"""ISO 20022 camt.053 bank-to-customer statements, read with lxml (any version .001.02 to .13).

Why not a camt library from PyPI: the ones there are either unmaintained or very young
(0.0.x) and pull in a large surface for what is a few XPath look-ups; lxml is mature, gives
source line numbers for every element (our problems need them) and parses safely with entity
expansion and network access switched off.

Traps: a DOCTYPE or entity declaration is refused (:mod:`app.importers.doctype`): with entity
resolution off, lxml silently drops an entity and the text around it. Syntax errors come from the
parser's own error log, never ``XMLSyntaxError.error_log``: that one is lxml's per-thread log and
carries earlier uploads' errors on the same worker thread.

Namespace handling: the document's own default namespace is read from the root and must be a
``camt.053.001.NN`` URN (camt.052/054 are refused by name); no version is hard-coded, and a
document without a namespace is read the same way.

One record per ``<Ntry>`` (entry), booked entries only (``Sts`` = BOOK; pending and info
entries are skipped and counted in the warnings). Mapping:

* amount: ``Amt`` with its ``Ccy``; negative when ``CdtDbtInd`` is DBIT;
* reference: ``TxDtls/Refs/EndToEndId`` (unless NOTPROVIDED), else the structured creditor
  reference ``RmtInf/Strd/CdtrRefInf/Ref``, else ``AcctSvcrRef``, else ``NtryRef``. A batch entry
  (several ``TxDtls``) keeps the entry-level reference: its lines are matched as a group;
* counterparty: the debtor's name for credits, the creditor's for debits (``Nm`` or ``Pty/Nm``);
* description: ``RmtInf/Ustrd`` texts, else ``AddtlTxInf``, else ``AddtlNtryInf``;
* dates: ``BookgDt`` and ``ValDt`` (``Dt`` or the date part of ``DtTm``).

Balances: opening = OPBD (or PRCD), closing = CLBD; opening + booked entries must equal
closing, per statement, else the file is rejected.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

import polars as pl

from app.importers import ImportOptions, ImportRejected, ImportResult, Problem, StatementBalance, content_sha256
from app.importers import doctype
from app.records import CURRENCY_EXPONENTS, RECORD_SCHEMA, format_minor, to_minor

_NAMESPACE = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:(camt\.\d{3})\.\d{3}\.\d{2}$")


class _Doc:
    """Namespace-qualified look-ups: ``doc.find(el, "Acct/Id/IBAN")``."""

    def __init__(self, namespace: str | None) -> None:
        self.ns = {"c": namespace} if namespace else {}
        self.prefix = "c:" if namespace else ""

    def path(self, path: str) -> str:
        return "/".join(f"{self.prefix}{part}" for part in path.split("/"))

    def find(self, element, path: str):  # noqa: ANN001, ANN201 - lxml elements
        return element.find(self.path(path), self.ns)

    def findall(self, element, path: str) -> list:  # noqa: ANN001
        return element.findall(self.path(path), self.ns)

    def text(self, element, path: str) -> str | None:  # noqa: ANN001
        found = self.find(element, path)
        if found is None or found.text is None:
            return None
        return found.text.strip() or None


def _day(doc: _Doc, element, path: str) -> date | None:  # noqa: ANN001
    text = doc.text(element, f"{path}/Dt") or doc.text(element, f"{path}/DtTm")
    if text is None:
        return None
    return date.fromisoformat(text[:10])


def _amount(doc: _Doc, element, where: str, line: int | None, problems: list[Problem]) -> tuple[int, str] | None:  # noqa: ANN001
    amount = doc.find(element, "Amt")
    if amount is None or amount.text is None:
        problems.append(Problem(line, f"{where}/Amt", "missing amount"))
        return None
    currency = (amount.get("Ccy") or "").upper()
    if currency not in CURRENCY_EXPONENTS:
        problems.append(Problem(amount.sourceline, f"{where}/Amt", f"unknown currency {amount.get('Ccy')!r}"))
        return None
    try:
        value = Decimal(amount.text.strip())
        minor = to_minor(value, currency)
    except InvalidOperation:
        problems.append(Problem(amount.sourceline, f"{where}/Amt", f"amount {amount.text.strip()!r} is not a number"))
        return None
    except ValueError as exc:  # to_minor: more decimals than the currency has
        problems.append(Problem(amount.sourceline, f"{where}/Amt", f"bad amount {amount.text.strip()!r}: {exc}"))
        return None
    if value < 0:
        problems.append(Problem(amount.sourceline, f"{where}/Amt", f"negative amount {amount.text.strip()!r}: the sign belongs in CdtDbtInd"))
        return None
    indicator = doc.text(element, "CdtDbtInd")
    if indicator not in ("CRDT", "DBIT"):
        problems.append(Problem(line, f"{where}/CdtDbtInd", f"credit/debit indicator {indicator!r}, expected CRDT or DBIT"))
        return None
    return (-minor if indicator == "DBIT" else minor), currency


def _name(doc: _Doc, element, party: str) -> str | None:  # noqa: ANN001
    return doc.text(element, f"RltdPties/{party}/Nm") or doc.text(element, f"RltdPties/{party}/Pty/Nm")


def parse(data: bytes, *, filename: str, side: str, options: ImportOptions) -> ImportResult:
    from lxml import etree

    doctype.refuse(data, filename)
    # A parser per upload, and its own error log: XMLSyntaxError.error_log is lxml's per-thread
    # log, which keeps the errors of every earlier upload on the same worker thread.
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False,
                             remove_comments=True)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        problems = [Problem(entry.line, None, entry.message) for entry in parser.error_log] or [
            Problem(exc.lineno, None, exc.msg)
        ]
        raise ImportRejected(filename, problems) from exc
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:  # an encoding doctype.refuse cannot read
        raise ImportRejected(filename, [Problem(1, "DOCTYPE", doctype.REASON.format(kind="DOCTYPE"))])
    namespace = etree.QName(root).namespace
    if namespace is not None:
        match = _NAMESPACE.match(namespace)
        if not match or match.group(1) != "camt.053":
            kind = match.group(1) if match else namespace
            raise ImportRejected(
                filename, [Problem(root.sourceline, None, f"document is {kind}, not a camt.053 statement")]
            )
    doc = _Doc(namespace)
    statements = doc.findall(root, "BkToCstmrStmt/Stmt")
    if not statements:
        raise ImportRejected(filename, [Problem(root.sourceline, "BkToCstmrStmt/Stmt", "no statement in the document")])

    problems: list[Problem] = []
    rows: list[dict[str, object]] = []
    balances: list[StatementBalance] = []
    skipped = 0
    for statement in statements:
        name = doc.text(statement, "Id") or doc.text(statement, "Acct/Id/IBAN") or f"line {statement.sourceline}"
        before = len(problems)
        opening = closing = None
        closing_line = statement.sourceline
        for balance in doc.findall(statement, "Bal"):
            code = doc.text(balance, "Tp/CdOrPrtry/Cd")
            if code not in ("OPBD", "PRCD", "CLBD"):
                continue
            value = _amount(doc, balance, "Bal", balance.sourceline, problems)
            if value is None:
                continue
            if code == "CLBD":
                closing, closing_line = value, balance.sourceline
            elif code == "OPBD" or opening is None:
                opening = value
        total = 0
        count = 0
        for entry in doc.findall(statement, "Ntry"):
            line = entry.sourceline
            status = doc.text(entry, "Sts") or doc.text(entry, "Sts/Cd") or "BOOK"
            if status != "BOOK":
                skipped += 1
                continue
            value = _amount(doc, entry, "Ntry", line, problems)
            booked = _day(doc, entry, "BookgDt")
            if booked is None:
                problems.append(Problem(line, "Ntry/BookgDt", "missing booking date"))
            if value is None or booked is None:
                continue
            minor, currency = value
            details = doc.findall(entry, "NtryDtls/TxDtls")
            single = details[0] if len(details) == 1 else None
            reference = None
            if single is not None:
                reference = doc.text(single, "Refs/EndToEndId")
                if reference is not None and reference.upper() == "NOTPROVIDED":
                    reference = None
                reference = reference or doc.text(single, "RmtInf/Strd/CdtrRefInf/Ref")
            reference = reference or doc.text(entry, "AcctSvcrRef") or doc.text(entry, "NtryRef")
            texts = [t.text.strip() for d in details for t in doc.findall(d, "RmtInf/Ustrd") if t.text and t.text.strip()]
            description = " | ".join(texts) or (doc.text(single, "AddtlTxInf") if single is not None else None)
            description = description or doc.text(entry, "AddtlNtryInf")
            counterparty = None
            if single is not None:
                counterparty = _name(doc, single, "Dbtr" if minor >= 0 else "Cdtr")
            total += minor
            count += 1
            rows.append(
                {
                    "reference": reference,
                    "amount_minor": -minor if options.sign == "invert" else minor,
                    "currency": currency,
                    "booking_date": booked,
                    "value_date": _day(doc, entry, "ValDt"),
                    "counterparty": counterparty,
                    "description": description,
                    "raw": etree.tostring(entry, encoding="unicode", with_tail=False),
                    "line": line,
                }
            )
        if len(problems) > before:
            continue  # a broken entry would make the balance check repeat it
        if opening is None or closing is None:
            problems.append(Problem(statement.sourceline, "Stmt/Bal", f"statement {name!r} lacks an opening (OPBD/PRCD) or closing (CLBD) balance"))
            continue
        (open_minor, open_ccy), (close_minor, close_ccy) = opening, closing
        if open_ccy != close_ccy:
            problems.append(Problem(closing_line, "Bal/Amt", f"statement {name!r}: opening in {open_ccy}, closing in {close_ccy}"))
            continue
        if open_minor + total != close_minor:
            problems.append(
                Problem(
                    closing_line, "Bal",
                    f"statement {name!r}: opening {format_minor(open_minor, open_ccy)} + booked entries "
                    f"{format_minor(total, open_ccy)} = {format_minor(open_minor + total, open_ccy)} but the "
                    f"closing balance (CLBD) is {format_minor(close_minor, close_ccy)}",
                )
            )
            continue
        sign = -1 if options.sign == "invert" else 1
        balances.append(StatementBalance(name, open_ccy, sign * open_minor, sign * close_minor, sign * total, count, checked=True))
    if problems:
        raise ImportRejected(filename, problems)
    if not rows:
        raise ImportRejected(filename, [Problem(None, None, "the statement has no booked entries")])
    frame = pl.DataFrame(rows, schema={k: v for k, v in RECORD_SCHEMA.items() if k not in ("id", "side")})
    records = frame.with_columns(id=pl.int_range(1, frame.height + 1, dtype=pl.Int64), side=pl.lit(side)).select(
        list(RECORD_SCHEMA)
    )
    warnings = (f"{skipped} entries not booked (pending or information only) were skipped",) if skipped else ()
    return ImportResult(
        records=records, format="camt053", content_sha256=content_sha256(data), balances=tuple(balances), warnings=warnings
    )
