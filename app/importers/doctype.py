"""Refusal of XML document type declarations (``<!DOCTYPE``, ``<!ENTITY``) in uploaded files.

Neither OFX 2.x nor camt.053 needs a DTD, and a DTD is how entity attacks arrive: nested
entities that expand to gigabytes ("billion laughs") and external entities that pull in a
server file or URL (XXE). Parsers disagree on what to do with one: ofxtools' regex parser kept
``&e;`` as literal text, lxml without entity resolution dropped the entity and the text around it
(``Pay &e; now`` became ``Pay``). Refusing the file is the one answer that is the same everywhere
and tells the user the truth.

Trap: the search is on the raw bytes, so it covers ASCII-compatible encodings and UTF-16 (both
byte orders); a document in another encoding is caught by the XML parser's own check (camt.053
looks at lxml's ``docinfo`` after parsing).
"""

from __future__ import annotations

import re

from app.importers import ImportRejected, Problem

_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)\b", re.IGNORECASE)
_ENCODINGS = ("latin-1", "utf-16-le", "utf-16-be")
"""latin-1 maps every byte, so it reads any ASCII-compatible encoding's markup unchanged."""

REASON = (
    "the file declares a document type or entities (<!{kind} ...>); OFX and camt.053 files never need "
    "one, and it is refused because entities can expand without bound or pull in other files (XXE)"
)


def refuse(data: bytes, filename: str) -> None:
    """Raise :class:`ImportRejected` (line, ``DOCTYPE``) when `data` declares a DTD or entities."""
    for encoding in _ENCODINGS:
        text = data.decode(encoding, errors="replace")
        match = _DECLARATION.search(text)
        if match:
            line = text.count("\n", 0, match.start()) + 1
            kind = match.group(1).upper()
            raise ImportRejected(filename, [Problem(line, "DOCTYPE", REASON.format(kind=kind))])
