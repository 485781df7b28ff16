"""A :class:`~app.engine.RuleSet` as an HTML form, and the form back as a RuleSet.

The widgets are derived from the engine's pydantic models, so a new rule field appears in the
form without a change here: a ``Literal`` is a select, a tuple of literals a group of
checkboxes, an int or float a number input with the model's bounds, ``name`` a text input;
tolerances are rows of (currency or ``*``, absolute in minor units, relative fraction).

Field names: ``r<i>_<field>`` for rule ``i``, ``r<i>_tol<j>_<part>`` for its tolerance rows,
``tol<j>_<part>`` for the set's. The ``op`` button says what to do: ``run``, ``add`` (with
``add_kind``), ``up:<i>``, ``down:<i>``, ``remove:<i>`` or ``reset``; anything but ``run``
re-renders the form.

Validation is the engine's own (``RuleSet.model_validate``); each error is shown beside the
field its location names, and those without one (e.g. duplicate rule names) above the form.

Trap: an empty number field means "the rule's default", which the form then shows; it does
not mean zero.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from app.engine.rules import Rule, RuleSet

RULE_CLASSES: dict[str, type[BaseModel]] = {
    cls.model_fields["kind"].default: cls for cls in typing.get_args(typing.get_args(Rule)[0])
}
"""kind -> rule model, read from the engine's discriminated union (reference, amount_date, ...)."""

_SKIP = ("kind", "tolerances")
_BLANK_TOLERANCE_ROWS = 1

_HELP = {
    "name": "label stored on each match this rule makes (default: the kind); must be unique",
    "date_window_days": "largest booking-date difference, in days",
    "status": "what the rule's matches start as: confirmed, or suggested for a person to review",
    "min_similarity": "0..1; text similarity a pair needs",
    "on_ambiguity": "several candidates: suggest (best first, marked suggested), best first (keeps the status) "
                    "or skip (left to later rules)",
}


@dataclass
class Widget:
    name: str
    label: str
    kind: str  # select, checks, int, float, text
    value: Any
    choices: tuple[str, ...] = ()
    minimum: Any = None
    maximum: Any = None
    help: str | None = None
    error: str | None = None


@dataclass
class ToleranceRow:
    prefix: str
    currency: str = ""
    absolute_minor: str = ""
    relative: str = ""


@dataclass
class RuleBlock:
    index: int
    kind: str
    title: str
    widgets: list[Widget]
    tolerances: list[ToleranceRow]
    errors: list[str] = field(default_factory=list)


@dataclass
class RuleForm:
    rules: list[RuleBlock]
    tolerances: list[ToleranceRow]
    errors: list[str] = field(default_factory=list)
    kinds: tuple[str, ...] = tuple(RULE_CLASSES)

    @property
    def has_errors(self) -> bool:
        return bool(self.errors or self.invalid_rules)

    @property
    def invalid_rules(self) -> list[tuple[RuleBlock, list[str]]]:
        """Each rule with a problem and its problems (``field: reason``), for the summary above the form."""
        out = []
        for b in self.rules:
            found = list(b.errors) + [f"{w.label}: {w.error}" for w in b.widgets if w.error]
            if found:
                out.append((b, found))
        return out


def _widget_kind(info: FieldInfo) -> tuple[str, tuple[str, ...]]:
    ann = info.annotation
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return "select", tuple(typing.get_args(ann))
    if origin is tuple:
        inner = typing.get_args(ann)[0]
        return "checks", tuple(typing.get_args(inner))
    if ann is int:
        return "int", ()
    if ann is float:
        return "float", ()
    return "text", ()


def _bounds(info: FieldInfo) -> tuple[Any, Any]:
    low = high = None
    for meta in info.metadata:
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    return low, high


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return info.default


def _tolerance_rows(prefix: str, table: dict[str, Any] | None) -> list[ToleranceRow]:
    rows = []
    for j, (currency, tol) in enumerate(sorted((table or {}).items())):
        tol = tol if isinstance(tol, dict) else dict(tol)
        rows.append(ToleranceRow(f"{prefix}tol{j}", currency, str(tol.get("absolute_minor", "") or ""),
                                 str(tol.get("relative", "") or "")))
    for k in range(_BLANK_TOLERANCE_ROWS):
        rows.append(ToleranceRow(f"{prefix}tol{len(rows) + k}"))
    return rows


def _block(index: int, raw: dict[str, Any]) -> RuleBlock:
    kind = str(raw.get("kind"))
    cls = RULE_CLASSES[kind]
    widgets = []
    for name, info in cls.model_fields.items():
        if name in _SKIP:
            continue
        wkind, choices = _widget_kind(info)
        low, high = _bounds(info)
        value = raw.get(name, _default(info))
        if wkind == "checks":
            value = list(value or ())
        widgets.append(Widget(f"r{index}_{name}", name.replace("_", " "), wkind,
                              "" if value is None else value, choices, low, high,
                              _HELP.get(name) or info.description))
    title = raw.get("name") or kind
    return RuleBlock(index, kind, str(title), widgets, _tolerance_rows(f"r{index}_", raw.get("tolerances")))


def form_from_raw(raw: dict[str, Any], errors: list[dict[str, Any]] | None = None) -> RuleForm:
    """The form for a raw rule-set document (valid or not), with validation errors placed."""
    blocks = [_block(i, r) for i, r in enumerate(raw.get("rules") or []) if r.get("kind") in RULE_CLASSES]
    form = RuleForm(blocks, _tolerance_rows("", raw.get("tolerances")))
    for err in errors or []:
        _place(form, err)
    return form


def form_from_rules(rules: RuleSet | dict[str, Any] | None) -> RuleForm:
    """The form for a stored rule set (a reconciliation's or a run's); ``None``: the defaults."""
    if rules is None:
        rules = RuleSet()
    raw = rules.model_dump(mode="json") if isinstance(rules, RuleSet) else rules
    return form_from_raw(raw)


def _place(form: RuleForm, err: dict[str, Any]) -> None:
    loc = list(err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int) and loc[1] < len(form.rules):
        block = form.rules[loc[1]]
        rest = [p for p in loc[2:] if p != block.kind]
        if rest:
            for w in block.widgets:
                if w.name == f"r{block.index}_{rest[0]}":
                    w.error = msg
                    return
            block.errors.append(f"{rest[0]}: {msg}")
        else:
            block.errors.append(msg)
        return
    where = ".".join(str(p) for p in loc)
    form.errors.append(f"{where}: {msg}" if where else msg)


def _tolerances_of(form: Any, prefix: str, problems: list[str]) -> dict[str, Any] | None:
    table: dict[str, Any] = {}
    j = 0
    while f"{prefix}tol{j}_currency" in form:
        currency = str(form.get(f"{prefix}tol{j}_currency") or "").strip().upper()
        absolute = str(form.get(f"{prefix}tol{j}_absolute") or "").strip()
        relative = str(form.get(f"{prefix}tol{j}_relative") or "").strip()
        j += 1
        if not currency and not absolute and not relative:
            continue
        if not currency:
            problems.append(f"a tolerance row ({prefix or 'all rules'}) has amounts but no currency; use a code "
                            "such as EUR or * for any")
            continue
        entry: dict[str, Any] = {}
        if absolute:
            entry["absolute_minor"] = absolute
        if relative:
            entry["relative"] = relative
        table[currency] = entry
    return table or None


def raw_from_form(form: Any) -> tuple[dict[str, Any], list[str]]:
    """The submitted rule form as a raw RuleSet document (not validated) and form-level problems."""
    problems: list[str] = []
    rules = []
    i = 0
    while f"r{i}_kind" in form:
        kind = str(form.get(f"r{i}_kind"))
        if kind not in RULE_CLASSES:
            problems.append(f"rule {i + 1}: kind {kind!r} is not one of {', '.join(RULE_CLASSES)}")
            i += 1
            continue
        rule: dict[str, Any] = {"kind": kind}
        for name, info in RULE_CLASSES[kind].model_fields.items():
            if name in _SKIP:
                continue
            wkind, _ = _widget_kind(info)
            key = f"r{i}_{name}"
            if wkind == "checks":
                rule[name] = list(form.getlist(key)) if hasattr(form, "getlist") else form.get(key, [])
                continue
            value = str(form.get(key) or "").strip()
            if value != "":
                rule[name] = value
        tolerances = _tolerances_of(form, f"r{i}_", problems)
        if tolerances:
            rule["tolerances"] = tolerances
        rules.append(rule)
        i += 1
    raw: dict[str, Any] = {"rules": rules}
    set_tolerances = _tolerances_of(form, "", problems)
    if set_tolerances:
        raw["tolerances"] = set_tolerances
    return raw, problems


def apply_op(raw: dict[str, Any], op: str, add_kind: str | None) -> dict[str, Any]:
    """Add, move or remove a rule in a raw document (ops other than ``run``)."""
    rules = list(raw.get("rules") or [])
    verb, _, arg = op.partition(":")
    if verb == "reset":
        return RuleSet().model_dump(mode="json")
    if verb == "add" and add_kind in RULE_CLASSES:
        taken = {r.get("name") or r.get("kind") for r in rules}
        rule: dict[str, Any] = {"kind": add_kind}
        if add_kind in taken:
            n = 2
            while f"{add_kind}_{n}" in taken:
                n += 1
            rule["name"] = f"{add_kind}_{n}"
        rules.append(rule)
    elif verb in ("up", "down", "remove") and arg.isdigit() and int(arg) < len(rules):
        i = int(arg)
        if verb == "remove":
            rules.pop(i)
        else:
            j = i - 1 if verb == "up" else i + 1
            if 0 <= j < len(rules):
                rules[i], rules[j] = rules[j], rules[i]
    return {**raw, "rules": rules}


def validate(raw: dict[str, Any]) -> tuple[RuleSet | None, list[dict[str, Any]]]:
    """The engine's validation: ``(RuleSet, [])`` or ``(None, errors)``."""
    try:
        return RuleSet.model_validate(raw), []
    except ValidationError as exc:
        return None, [dict(e) for e in exc.errors()]
