"""The metric names a PromQL expression reads, without a PromQL parser.

Enough for the expressions of our dashboards and rules: strings, label matchers, range and
subquery brackets and grouping clauses are removed, then every identifier that is not a
function call, a keyword or part of a number is a metric name.

Trap: a selector written only as ``{__name__="x"}`` names no metric here (none of ours is).
"""

from __future__ import annotations

import re

KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                      "bool", "offset", "inf", "nan", "atan2"})
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names selected by ``expr`` (``rate(foo_total{a="b"}[5m]) / bar`` -> {foo_total, bar})."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    return {name for name, call in _IDENT.findall(text) if not call and name.lower() not in KEYWORDS}
