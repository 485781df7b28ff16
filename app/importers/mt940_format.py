"""SWIFT MT940 statements: our field check decides the money, the `mt-940` package reads the rest.

Three steps, each over the whole file so that every problem is reported at once:

1. **Fields.** The text is cut into fields exactly as the `mt-940` parser cuts it (same tag
   pattern, same line clean-up), each with its line number, and into statements at ``:20:``.
2. **Check.** Every ``:60a:``, ``:61:`` and ``:62a:`` is read with our rules; the ``:61:`` line
   with the library's own patterns (standard, then its ASN and GLS variants), so this check is
   never stricter than the parser about layout. It is stricter where the parser would misread:
   a ``:61:`` without a transaction type code (``5x0,00NTRF`` parses as 5; two such lines merge
   into one), a balance with text after its amount, two opening or closing balances in one
   statement (a lost ``:20:``). Opening + lines must equal closing per statement.
3. **Parse.** Each statement goes to the library for dates and the ``:86:`` details. Its
   failures are translated into a problem at the field it could not read (no library text
   reaches the user). Amounts are never taken from it: the stored amount is the one the
   balance check added up, so stored rows always sum to the checked movement.

Mapping: amount signed by the mark, C and RD positive, D and RC negative. reference = the
``:61:`` customer reference (padding stripped) unless ``NONREF``; when it only names a
``:86:`` subfield (``EREF``, ``PREF``, ``KREF``, Rabobank and ING), that subfield's value; else
a reference from ``:86:`` (``/EREF/``, ``/KREF/``, ``/PREF/``, German ``EREF+``); else the bank
reference. booking date = entry date (else value date); counterparty = ``:86:`` name (German
``?32``, ``/CNTP/``, ``/NAME/``); description = ``:86:`` purpose / ``/REMI/`` / its whole text.

Trap: ``^Z`` (0x1A, the DOS end-of-file mark) is dropped before anything else. Left in front of
a ``:20:`` it hides that tag from both parsers, and two statements become one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import mt940
import polars as pl
from mt940 import processors

from app.importers import ImportOptions, ImportRejected, ImportResult, Problem, StatementBalance, content_sha256
from app.importers import swift_details
from app.records import CURRENCY_EXPONENTS, RECORD_SCHEMA, format_minor, to_minor

logging.getLogger("mt940").setLevel(logging.CRITICAL)
# The library logs every field it cannot match, with the field's text, at ERROR. Bank statement
# text does not belong in our logs; the user gets a problem with the line instead.

_SIGN = {"C": 1, "RD": 1, "D": -1, "RC": -1}
"""Debit/credit mark of a :61: line -> sign: a reversal of a debit (RD) puts money back in."""
_FIELD = re.compile(r"^:\n?(?P<tag>(?P<id>\d{2}|NS)[A-Z]?):", re.MULTILINE)
_KNOWN_IDS = {str(tag_id) for tag_id in mt940.tags.TAG_BY_ID if isinstance(tag_id, int) or tag_id == "NS"}
"""The library skips a ``:NN:`` it has no tag for (the text joins the field before): so do we."""
_BALANCE = re.compile(r"^(?P<mark>[CD])(?P<date>\d{6})(?P<currency>[A-Z]{3})(?P<amount>[\d,]+)$")
_OPENING = ("60F", "60M", "60")
_CLOSING = ("62F", "62M", "62")
_UNUSED_TAGS = (13, 21, 25, 28, 34, 64, 65, 90, "90C", "90D", "NS")
"""Tags whose content we do not use: read leniently, so a bank's odd layout there cannot reject a file."""


@dataclass
class _Field:
    tag: str
    value: str  # as the library sees it: continuation lines joined by "\n", stripped
    line: int  # 1-based line of the tag in the file
    last_line: int
    start: int  # offsets in the cleaned text
    end: int


@dataclass
class _Entry:
    field: _Field
    minor: int
    status: str
    customer_reference: str
    bank_reference: str
    readers: frozenset[int]  # indices into _LINE_TAGS of the library readers that take this line
    details: _Field | None = None


@dataclass
class _Statement:
    reference: str
    first: _Field
    fields: list[_Field] = field(default_factory=list)
    opening: tuple[int, str, int] | None = None  # minor, currency, line
    closing: tuple[int, str, int] | None = None
    entries: list[_Entry] = field(default_factory=list)
    invalid: bool = False


def _clean(text: str) -> tuple[str, list[int]]:
    """The library's clean-up (lines right-stripped, blank and ``-`` lines dropped) with line numbers."""
    kept: list[str] = []
    numbers: list[int] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.replace("\r", "").rstrip()
        if line and line.strip() != "-":
            kept.append(line)
            numbers.append(number)
    return "\n".join(kept), numbers


def _fields(cleaned: str, numbers: list[int]) -> list[_Field]:
    matches = [m for m in _FIELD.finditer(cleaned) if m.group("id") in _KNOWN_IDS]
    out: list[_Field] = []
    first = 0  # index into `numbers` of the line the current match starts on
    previous = 0
    for i, match in enumerate(matches):
        first += cleaned.count("\n", previous, match.start())
        previous = match.start()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(cleaned)
        last = first + cleaned.count("\n", match.start(), end) - (1 if end < len(cleaned) else 0)
        out.append(_Field(match.group("tag"), cleaned[match.end() : end].strip(), numbers[first],
                          numbers[min(last, len(numbers) - 1)], match.start(), end))
    return out


def _statements(fields: list[_Field], problems: list[Problem]) -> list[_Statement]:
    """Group fields into statements at each ``:20:``; money fields before the first one are problems."""
    statements: list[_Statement] = []
    for f in fields:
        if f.tag == "20":
            statements.append(_Statement(f.value.split("\n")[0].strip(), f))
        elif not statements:
            if f.tag in (*_OPENING, "61", *_CLOSING):
                problems.append(Problem(f.line, f":{f.tag}:", "field before the statement's :20: reference"))
            continue
        statements[-1].fields.append(f)
    return statements


def _balance(f: _Field, statement: _Statement, problems: list[Problem]) -> None:
    first_line = f.value.split("\n")[0].strip()
    match = _BALANCE.match(first_line)
    if not match:
        problems.append(Problem(f.line, f":{f.tag}:", f"not a balance (C|D, YYMMDD, currency, amount with comma): {first_line!r}"))
        statement.invalid = True
        return
    currency = match.group("currency")
    if currency not in CURRENCY_EXPONENTS:
        problems.append(Problem(f.line, f":{f.tag}:", f"unknown currency {currency!r}"))
        statement.invalid = True
        return
    try:
        minor = to_minor(Decimal(match.group("amount").replace(",", ".")), currency)
    except (ValueError, InvalidOperation) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"amount {match.group('amount')!r} is not a number"
        problems.append(Problem(f.line, f":{f.tag}:", reason))
        statement.invalid = True
        return
    slot = "opening" if f.tag in _OPENING else "closing"
    earlier = getattr(statement, slot)
    if earlier is not None:
        problems.append(Problem(f.line, f":{f.tag}:", f"statement {statement.reference!r} has a second {slot} balance "
                                f"(the first is on line {earlier[2]}): is a :20: missing between two statements?"))
        statement.invalid = True
        return
    setattr(statement, slot, (minor * (-1 if match.group("mark") == "D" else 1), currency, f.line))


def _line_tags() -> list[mt940.tags.Tag]:
    """The library's ``:61:`` readers, standard first; the ASN and GLS variants where it has them."""
    variants = (getattr(mt940.tags, name, None) for name in ("StatementASNB", "StatementGLS"))
    return [mt940.tags.Statement(), *(variant() for variant in variants if variant is not None)]


_LINE_TAGS = _line_tags()
_LINE_LAYOUT = "value date YYMMDD, [entry date MMDD,] C, D, RC or RD, amount, type code such as NTRF"


def _entry(f: _Field, statement: _Statement, problems: list[Problem]) -> None:
    matches = {i: m.groupdict() for i, tag in enumerate(_LINE_TAGS) if (m := tag.re.match(f.value)) and m.group("id")}
    if not matches:
        problems.append(Problem(f.line, ":61:", f"not a statement line ({_LINE_LAYOUT}): {f.value.splitlines()[0][:40]!r}"))
        statement.invalid = True
        return
    groups = matches[min(matches)]
    status = groups["status"].upper()
    if status not in _SIGN:
        problems.append(Problem(f.line, ":61:", f"debit/credit mark {groups['status']!r}, expected C, D, RC or RD"))
        statement.invalid = True
        return
    if statement.opening is None:
        problems.append(Problem(f.line, ":61:", "statement line before the opening balance :60F:/:60M:"))
        statement.invalid = True
        return
    currency = statement.opening[1]
    try:
        minor = to_minor(Decimal(groups["amount"].replace(",", ".")), currency)
    except (ValueError, InvalidOperation) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"amount {groups['amount']!r} is not a number"
        problems.append(Problem(f.line, ":61:", reason))
        statement.invalid = True
        return
    statement.entries.append(_Entry(f, _SIGN[status] * minor, status, (groups.get("customer_reference") or "").strip(),
                                    (groups.get("bank_reference") or "").strip(), frozenset(matches)))


def _check(statement: _Statement, problems: list[Problem]) -> StatementBalance | None:
    """Read the money fields of one statement; its balance when they add up, else None (and problems)."""
    previous: _Field | None = None
    for f in statement.fields:
        if f.tag in _OPENING or f.tag in _CLOSING:
            _balance(f, statement, problems)
        elif f.tag == "61":
            _entry(f, statement, problems)
        elif f.tag == "86" and previous is not None and statement.entries and statement.entries[-1].field is previous:
            statement.entries[-1].details = f  # the :86: right after its :61:
        previous = f
    if statement.invalid:
        return None  # its balance check would only repeat the problems found
    if statement.opening is None or statement.closing is None:
        problems.append(Problem(statement.first.line, ":20:", f"statement {statement.reference!r} lacks an opening (:60F:) or closing (:62F:) balance"))
        return None
    (opening, currency, _), (closing, closing_currency, closing_line) = statement.opening, statement.closing
    if closing_currency != currency:
        problems.append(Problem(closing_line, ":62F:", f"statement {statement.reference!r}: opening in {currency}, closing in {closing_currency}"))
        return None
    total = sum(entry.minor for entry in statement.entries)
    if opening + total != closing:
        problems.append(Problem(closing_line, ":62F:", (
            f"statement {statement.reference!r}: opening {format_minor(opening, currency)} + lines "
            f"{format_minor(total, currency)} = {format_minor(opening + total, currency)} "
            f"but the closing balance is {format_minor(closing, currency)}")))
        return None
    return StatementBalance(statement.reference, currency, opening, closing, total, len(statement.entries), checked=True)


def _lenient(tag: mt940.tags.Tag) -> mt940.tags.Tag:
    """`tag`'s class reading any text, keeping it under ``<slug>_text`` (same name, so same slug)."""

    def keep_text(self: mt940.tags.Tag, transactions: object, value: dict[str, object]) -> dict[str, object]:
        return {f"{self.slug}_text": value["text"]}

    cls = type(tag)
    return type(cls.__name__, (cls,), {"pattern": r"(?P<text>[\s\S]*)", "__call__": keep_text})()


_LENIENT = {tag_id: _lenient(mt940.tags.TAG_BY_ID[tag_id]) for tag_id in _UNUSED_TAGS if tag_id in mt940.tags.TAG_BY_ID}
_VARIANTS = [{**_LENIENT, 61: tag} for tag in _LINE_TAGS]
_PROCESSORS = {"post_transaction_details": [processors.transaction_details_post_processor]}
_OPTIONS = {"options": mt940.Options(applicant_iban=True)} if hasattr(mt940, "Options") else {}
"""mt-940 >= 5.1: German ``?31`` (the counterparty's account) no longer glued to the ``?32`` name."""


def _library_parse(text: str, tags: dict) -> list:  # type: ignore[type-arg]
    transactions = mt940.models.Transactions(processors=_PROCESSORS, tags=tags, **_OPTIONS)
    transactions.parse(text)
    return list(transactions)


_WHY = {RuntimeError: "its layout is not one the parser knows", ValueError: "a date or number in it is out of range",
        ArithmeticError: "an amount in it is not a number"}


def _first_failing_field(fields: list[_Field], block: str, offset: int, tags: dict) -> int:  # type: ignore[type-arg]
    """Index of the first field the library cannot get past, bisecting over field prefixes."""
    low, high = 0, len(fields) - 1
    while low < high:
        middle = (low + high) // 2
        try:
            _library_parse(block[: fields[middle].end - offset], tags)
        except Exception:  # noqa: BLE001 - any failure narrows the search
            high = middle
        else:
            low = middle + 1
    return low


def _untranslatable(statement: _Statement, block: str, offset: int, tags: dict, exc: Exception) -> Problem:  # type: ignore[type-arg]
    """The field the library fails on, said in our words (no library text reaches the user)."""
    fields = [statement.first, *statement.fields]
    bad = fields[_first_failing_field(fields, block, offset, tags)]
    why = next((text for kind, text in _WHY.items() if isinstance(exc, kind)), "it cannot be read")
    snippet = bad.value.split("\n")[0][:40]
    return Problem(bad.line, f":{bad.tag}:", f"the MT940 parser cannot read this field ({why}): {snippet!r}")


def _read_details(statement: _Statement, cleaned: str, end: int, problems: list[Problem]) -> list | None:  # type: ignore[type-arg]
    """The library's transactions for `statement`, read with the one ``:61:`` reader that takes all its lines.

    The reader is chosen from our check, not by trial and error: a statement is parsed once.
    """
    common = frozenset(range(len(_VARIANTS))).intersection(*(entry.readers for entry in statement.entries))
    if not common:
        problems.append(Problem(statement.first.line, ":20:", (
            f"statement {statement.reference!r} mixes :61: layouts (standard SWIFT and a bank's variant, "
            "such as ASN's long reference); split it or ask the bank for one layout")))
        return None
    tags = _VARIANTS[min(common)]
    offset = statement.first.start
    block = cleaned[offset:end]
    try:
        transactions = _library_parse(block, tags)
    except Exception as exc:  # noqa: BLE001 - the library raises RuntimeError, ValueError, ... for input
        problems.append(_untranslatable(statement, block, offset, tags, exc))
        return None
    if len(transactions) != len(statement.entries):
        problems.append(Problem(statement.first.line, ":20:", (
            f"statement {statement.reference!r}: the MT940 parser read {len(transactions)} statement line(s) "
            f"where the file has {len(statement.entries)} :61: field(s)")))
        return None
    return transactions


def _reference(entry: _Entry, slash: swift_details.SlashDetails | None, info: dict) -> str | None:  # type: ignore[type-arg]
    """See the module docstring: the :61: reference, the :86: subfield it names, :86:, the bank's."""
    customer = entry.customer_reference
    if customer.upper() in swift_details.REFERENCE_CODES:
        named = slash.reference(customer.upper()) if slash is not None else None
        if named:
            return named
    elif customer and customer.upper() != "NONREF":
        return customer
    from_details = slash.reference() if slash is not None else None
    end_to_end = (info.get("end_to_end_reference") or "").strip()  # German ?2x "EREF+..."
    if not from_details and end_to_end.upper() not in ("", "NOTPROVIDED"):
        from_details = end_to_end
    bank = entry.bank_reference
    return from_details or (bank if bank and bank.upper() != "NONREF" else None)


def _row(entry: _Entry, info: dict, lines: list[str], sign: int) -> dict[str, object]:  # type: ignore[type-arg]
    details_text = entry.details.value if entry.details is not None else ""
    slash = swift_details.read(details_text)
    description = info.get("purpose") or (slash.remittance if slash is not None else None)
    if not description and slash is None:
        description = " ".join(details_text.split())
    counterparty = info.get("applicant_name") or (slash.counterparty if slash is not None else None)
    last = entry.details.last_line if entry.details is not None else entry.field.last_line
    return {
        "reference": _reference(entry, slash, info),
        "amount_minor": sign * entry.minor,
        "currency": info["amount"].currency,
        "booking_date": info.get("entry_date") or info.get("date"),
        "value_date": info.get("date"),
        "counterparty": (counterparty or "").strip() or None,
        "description": (description or "").strip() or None,
        "raw": "\n".join(lines[entry.field.line - 1 : last]),
        "line": entry.field.line,
    }


def parse(data: bytes, *, filename: str, side: str, options: ImportOptions) -> ImportResult:
    try:
        text = data.decode(options.encoding).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportRejected(filename, [Problem(line, None, f"not valid {options.encoding}: {exc.reason}; set encoding")]) from exc
    warnings = []
    if "\x1a" in text:
        warnings.append(f"{text.count(chr(0x1A))} ^Z (0x1A, DOS end-of-file) character(s) were removed")
        text = text.replace("\x1a", "")
    cleaned, numbers = _clean(text)
    problems: list[Problem] = []
    statements = _statements(_fields(cleaned, numbers), problems)
    if not statements and not problems:
        problems.append(Problem(None, None, "no MT940 statement (no :20: field) in the file"))
    balances = [_check(statement, problems) for statement in statements]
    if problems:
        raise ImportRejected(filename, problems)
    sign = -1 if options.sign == "invert" else 1
    lines = [line.rstrip("\r") for line in text.split("\n")]
    rows: list[dict[str, object]] = []
    for i, statement in enumerate(statements):
        end = statements[i + 1].first.start if i + 1 < len(statements) else len(cleaned)
        transactions = _read_details(statement, cleaned, end, problems)
        for entry, transaction in zip(statement.entries, transactions or [], strict=False):
            rows.append(_row(entry, transaction.data, lines, sign))
    if problems:
        raise ImportRejected(filename, problems)
    if not rows:
        raise ImportRejected(filename, [Problem(None, None, "the MT940 file has no statement lines (:61:)")])
    frame = pl.DataFrame(rows, schema={k: v for k, v in RECORD_SCHEMA.items() if k not in ("id", "side")})
    records = frame.with_columns(id=pl.int_range(1, frame.height + 1, dtype=pl.Int64), side=pl.lit(side)).select(
        list(RECORD_SCHEMA)
    )
    checked = tuple(
        StatementBalance(b.statement, b.currency, sign * b.opening_minor, sign * b.closing_minor,  # type: ignore[operator]
                         sign * b.lines_minor, b.line_count, checked=True)
        for b in balances if b is not None
    )
    return ImportResult(records=records, format="mt940", content_sha256=content_sha256(data), balances=checked,
                        warnings=tuple(warnings))
