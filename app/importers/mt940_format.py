"""SWIFT MT940 statements via the `mt-940` package, with a line-level check first.

The `mt-940` parser stops at the first tag it cannot read and is lenient elsewhere (an amount
like ``5x0,00`` silently becomes 5). So every ``:60a:``, ``:61:`` and ``:62a:`` field is
checked against the SWIFT layout first, collecting every problem with its line; only a file
that passes is handed to the library, which does the real parse (including the German
structured ``:86:`` subfields: ``?20``-``?29`` purpose, ``?32``/``?33`` name).

Mapping: reference = customer reference (``:61:`` subfield 7) unless ``NONREF``, else the
bank reference; booking date = entry date (falls back to the value date); value date = value
date; counterparty = the ``:86:`` applicant name when structured; description = the ``:86:``
purpose (or its whole text). Amount sign: C and RD positive, D and RC negative.

Balances: per statement (``:20:`` .. ``:62a:``), opening (``:60F:``/``:60M:``) + lines must
equal closing (``:62F:``/``:62M:``), else the file is rejected naming the statement and the
difference. Line numbers point at each ``:61:``; `raw` is the ``:61:`` line and its ``:86:``.
"""

from __future__ import annotations

import re
from decimal import Decimal

import polars as pl

from app.importers import ImportOptions, ImportRejected, ImportResult, Problem, StatementBalance, content_sha256
from app.records import CURRENCY_EXPONENTS, RECORD_SCHEMA, format_minor, to_minor

_TAG = re.compile(r"^:(\d{2}[A-Z]?):(.*)$")
_BALANCE = re.compile(r"^([CD])(\d{6})([A-Z]{3})(\d{1,12},\d{0,3})$")
_SIGN = {"C": 1, "RD": 1, "D": -1, "RC": -1}
"""Debit/credit mark of a :61: line -> sign: a reversal of a debit (RD) puts money back in."""
_LINE = re.compile(r"^(\d{6})(\d{4})?(R?[CD])([A-Z])?(\d{1,12},\d{0,3})([NSF][A-Z0-9]{3})")


def _minor(amount_text: str, currency: str) -> int:
    return to_minor(Decimal(amount_text.replace(",", ".")), currency)


def _check(text: str) -> tuple[list[Problem], list[dict[str, object]]]:
    """Validate the fields line by line; return problems and the statements' balance facts."""
    problems: list[Problem] = []
    statements: list[dict[str, object]] = []
    current: dict[str, object] | None = None

    def bad(problem: Problem) -> None:
        problems.append(problem)
        if current is not None:
            current["invalid"] = True  # its balance check would only repeat the same problem
    for number, line in enumerate(text.splitlines(), start=1):
        match = _TAG.match(line.strip())
        if not match:
            continue
        tag, value = match.group(1), match.group(2).strip()
        if tag == "20":
            current = {"reference": value, "line": number, "opening": None, "closing": None, "currency": None, "lines": [],
                       "invalid": False}
            statements.append(current)
            continue
        if current is None:
            if tag in ("60F", "60M", "61", "62F", "62M"):
                problems.append(Problem(number, f":{tag}:", "field before the statement's :20: reference"))
            continue
        if tag in ("60F", "60M", "62F", "62M"):
            balance = _BALANCE.match(value)
            if not balance:
                bad(Problem(number, f":{tag}:", f"not a balance (C|D, YYMMDD, currency, amount with comma): {value!r}"))
                continue
            mark, _, currency, amount = balance.groups()
            if currency not in CURRENCY_EXPONENTS:
                bad(Problem(number, f":{tag}:", f"unknown currency {currency!r}"))
                continue
            try:
                minor = _minor(amount, currency) * (-1 if mark == "D" else 1)
            except ValueError as exc:
                bad(Problem(number, f":{tag}:", str(exc)))
                continue
            if tag.startswith("60"):
                current["opening"], current["currency"] = minor, currency
            else:
                current["closing"], current["closing_line"] = minor, number
        elif tag == "61":
            entry = _LINE.match(value)
            if not entry:
                bad(Problem(number, ":61:", f"not a statement line (YYMMDD[MMDD](R)C|D amount, type code): {value[:40]!r}"))
                continue
            mark, amount = entry.group(3), entry.group(5)
            currency = current["currency"]
            if currency is None:
                bad(Problem(number, ":61:", "statement line before the opening balance :60F:/:60M:"))
                continue
            try:
                minor = _minor(amount, currency)  # type: ignore[arg-type]
            except ValueError as exc:
                bad(Problem(number, ":61:", str(exc)))
                continue
            current["lines"].append(_SIGN[mark] * minor)  # type: ignore[union-attr]
    for statement in statements:
        if (statement["opening"] is None or statement["closing"] is None) and not statement["invalid"]:
            problems.append(Problem(statement["line"], ":20:", f"statement {statement['reference']!r} lacks an opening (:60F:) or closing (:62F:) balance"))  # type: ignore[arg-type]
    return problems, statements


def parse(data: bytes, *, filename: str, side: str, options: ImportOptions) -> ImportResult:
    import mt940
    from mt940 import processors

    try:
        text = data.decode(options.encoding).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportRejected(filename, [Problem(line, None, f"not valid {options.encoding}: {exc.reason}; set encoding")]) from exc
    problems, checked = _check(text)
    if not checked and not problems:
        problems.append(Problem(None, None, "no MT940 statement (no :20: field) in the file"))
    balances: list[StatementBalance] = []
    for statement in checked:
        if statement["opening"] is None or statement["closing"] is None or statement["invalid"]:
            continue
        lines_total = sum(statement["lines"])  # type: ignore[arg-type]
        opening, closing, currency = statement["opening"], statement["closing"], statement["currency"]
        if opening + lines_total != closing:  # type: ignore[operator]
            problems.append(
                Problem(
                    statement.get("closing_line"),  # type: ignore[arg-type]
                    ":62F:",
                    f"statement {statement['reference']!r}: opening {format_minor(opening, currency)} + lines "  # type: ignore[arg-type]
                    f"{format_minor(lines_total, currency)} = {format_minor(opening + lines_total, currency)} "  # type: ignore[arg-type, operator]
                    f"but the closing balance is {format_minor(closing, currency)}",  # type: ignore[arg-type]
                )
            )
        else:
            sign = -1 if options.sign == "invert" else 1
            balances.append(
                StatementBalance(
                    str(statement["reference"]), str(currency), sign * opening, sign * closing,  # type: ignore[operator]
                    sign * lines_total, len(statement["lines"]), checked=True,  # type: ignore[arg-type]
                )
            )
    if problems:
        raise ImportRejected(filename, problems)

    try:
        statements = mt940.parse_statements(
            text, processors={"post_transaction_details": [processors.transaction_details_post_processor]}
        )
    except Exception as exc:  # the checks above should make this unreachable; keep the boundary
        raise ImportRejected(filename, [Problem(None, None, f"MT940 parser failed: {exc}")]) from exc

    all_lines = text.splitlines()
    tag61 = [i for i, line in enumerate(all_lines) if line.strip().startswith(":61:")]
    rows: list[dict[str, object]] = []
    for statement in statements:
        for transaction in statement:
            position = len(rows)
            start = tag61[position]
            end = start + 1
            # the :61: field, its continuation lines and its :86: field (with continuations)
            while end < len(all_lines):
                tag = _TAG.match(all_lines[end].strip())
                if tag and tag.group(1) != "86":
                    break
                end += 1
            info = transaction.data
            amount = info["amount"]
            currency = amount.currency
            # Signed from the mark, as the balance check does: the library negates only D by default,
            # so a reversal of a credit (RC) came back as money in.
            minor = abs(to_minor(amount.amount, currency)) * _SIGN[str(info["status"]).upper()]
            if options.sign == "invert":
                minor = -minor
            reference = info.get("customer_reference") or None
            if reference is None or reference.upper() == "NONREF":
                reference = info.get("bank_reference") or None
            details = info.get("transaction_details") or ""
            purpose = info.get("purpose")
            rows.append(
                {
                    "reference": reference,
                    "amount_minor": minor,
                    "currency": currency,
                    "booking_date": info.get("entry_date") or info.get("date"),
                    "value_date": info.get("date"),
                    "counterparty": info.get("applicant_name") or None,
                    "description": (purpose or details.replace("\n", " ")).strip() or None,
                    "raw": "\n".join(all_lines[start:end]),
                    "line": start + 1,
                }
            )
    if not rows:
        raise ImportRejected(filename, [Problem(None, None, "the MT940 file has no statement lines (:61:)")])
    frame = pl.DataFrame(rows, schema={k: v for k, v in RECORD_SCHEMA.items() if k not in ("id", "side")})
    records = frame.with_columns(id=pl.int_range(1, frame.height + 1, dtype=pl.Int64), side=pl.lit(side)).select(
        list(RECORD_SCHEMA)
    )
    return ImportResult(records=records, format="mt940", content_sha256=content_sha256(data), balances=tuple(balances))
