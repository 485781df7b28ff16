"""The slash-coded ``:86:`` of Dutch MT940 files: ``/EREF/ref//CNTP/iban/bic/name/city//REMI/...``.

ING, Rabobank, ABN AMRO and others write the "information to account owner" as ``/CODE/value``
subfields, wrapped at 65 columns wherever the column count falls (``CONTRA ACCOUN`` / ``T
HOLDER``), so the lines are joined without a separator before reading. The ``:61:`` line then
often carries only the *name* of the subfield holding its reference (``EREF``, ``PREF``), padded
to 16 characters.

Trap: a value may contain ``/`` (dates, account masks, ``//`` between ``USTD`` and its text).
A value ends only where another *known* code starts (``/CNTP/``), or at the end; an unknown
``/XYZ/`` inside a value is part of it. German ``?20``-``?34`` details are not this format: the
mt-940 library reads those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CODES = (
    "ADDR", "ATOM", "BENM", "BIC", "BUSP", "CDTRREF", "CDTRREFTP", "CHGS", "CNTP", "CREF", "CSID",
    "EREF", "EXCH", "IBAN", "ID", "IREF", "ISDT", "KREF", "MARF", "NAME", "OCMT", "ORDP", "PREF",
    "PURP", "REMI", "RTRN", "SUM", "SVCL", "TRCD", "UDTR", "UCRD", "ULTB", "ULTC", "ULTD",
)
"""Top-level subfield codes (ING "Mijn ING Zakelijk", Rabobank and ABN AMRO MT940 structured)."""

REFERENCE_CODES = ("EREF", "KREF", "PREF")
"""Subfields holding a reference, in the order we prefer them: end-to-end, customer, payment batch."""

_START = re.compile(r"^/(?:%s)/" % "|".join(CODES))
_SUBFIELD = re.compile(r"(?:^|/)(%s)/(.*?)/?(?=/(?:%s)/|/?$)" % ("|".join(CODES), "|".join(CODES)))
_NOT_PROVIDED = {"", "NOTPROVIDED", "NONREF"}


@dataclass(frozen=True)
class SlashDetails:
    """The subfields of one slash-coded ``:86:`` (first occurrence of each code wins)."""

    fields: dict[str, str]

    def reference(self, code: str | None = None) -> str | None:
        """The value of `code`, or of the first of :data:`REFERENCE_CODES` present; None if absent."""
        for candidate in (code,) if code else REFERENCE_CODES:
            value = self.fields.get(candidate, "").strip()
            if value.upper() not in _NOT_PROVIDED:
                return value
        return None

    @property
    def counterparty(self) -> str | None:
        """``/CNTP/account/bic/name/city`` name, else a ``/NAME/`` (Rabobank ``/BENM//NAME/x``)."""
        parts = self.fields.get("CNTP", "").split("/")
        name = parts[2].strip() if len(parts) > 2 else ""
        return name or self.fields.get("NAME", "").strip() or None

    @property
    def remittance(self) -> str | None:
        """``/REMI/`` text without its ``USTD//`` or ``STRD/CUR/`` prefix; None when empty."""
        text = self.fields.get("REMI", "")
        text = re.sub(r"^(?:USTD/?/|STRD/(?:CUR/|ISO/)?)", "", text)
        return text.strip(" /") or None


def read(details: str) -> SlashDetails | None:
    """Parse one ``:86:`` field's text (its lines as in the file); None if it is not slash-coded."""
    joined = "".join(details.splitlines())
    if not _START.match(joined):
        return None
    fields: dict[str, str] = {}
    for match in _SUBFIELD.finditer(joined):
        fields.setdefault(match.group(1), match.group(2))
    return SlashDetails(fields)
