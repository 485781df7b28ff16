"""Rules, tolerances and date windows: the configuration of one matching run.

A :class:`RuleSet` holds rules in priority order. Each rule sees only the records that the
rules before it left unmatched, so put the strictest rule first. Kinds::

    Rule (discriminated by `kind`)
     ├── ReferenceRule   "reference"   same reference and currency, amount within tolerance (or,
     │                                 with amounts="beyond_tolerance", beyond it: a discrepancy
     │                                 pair), booking date within the window
     ├── AmountDateRule  "amount_date" no key: same currency, amount within tolerance, date within
     │                                 the window
     ├── GroupRule       "group"       one record = the sum of several on the other side that share
     │                                 a grouping field (e.g. reference), within tolerance/window
     ├── SubsetSumRule   "subset_sum"  one record = the sum of 2..max_size records found by a
     │                                 bounded search among a few blocked candidates
     └── FuzzyRule       "fuzzy"       counterparty/description similarity (rapidfuzz) among
                                       candidates blocked by amount and date -> *suggested* pairs

Tolerances (:class:`Tolerance`) are per currency: an amount difference is accepted when
``|right - left| <= max(absolute_minor, floor(relative * max(|left|, |right|)))``. Look-up order
for a currency: the rule's own `tolerances`, else the set's, by currency code then ``"*"``;
nothing found means exact amounts only. The set's default is :data:`DEFAULT_TOLERANCES`: one
minor unit for every currency (a rounding difference); a table you give replaces it.

The trap: a tolerance is in *minor units of the record's currency*. ``absolute_minor=5`` is five
cents in EUR but five yen in JPY and five fils (0.005) in KWD; set tolerances per currency.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.records import CURRENCY_EXPONENTS


class Tolerance(BaseModel):
    """Accepted amount difference: ``max(absolute_minor, floor(relative * max(|l|, |r|)))``.

    `relative` is a fraction (``Decimal("0.001")`` = 0.1 %), kept exact: it is applied with
    integer arithmetic, never through a float.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    absolute_minor: int = Field(0, ge=0, le=10**12)
    relative: Decimal = Field(Decimal(0), ge=0, le=Decimal("0.5"))

    def ratio(self) -> tuple[int, int]:
        """`relative` as an exact (numerator, denominator) pair."""
        numerator, denominator = self.relative.as_integer_ratio()
        return numerator, denominator

    def allowed(self, left_minor: int, right_minor: int) -> int:
        """The allowed |difference| for one pair (the scalar twin of the engine's expression)."""
        numerator, denominator = self.ratio()
        biggest = max(abs(left_minor), abs(right_minor))
        return max(self.absolute_minor, biggest * numerator // denominator)


Tolerances = dict[str, Tolerance]


def _check_tolerance_keys(value: Tolerances | None) -> Tolerances | None:
    if value is None:
        return None
    bad = [key for key in value if key != "*" and key not in CURRENCY_EXPONENTS]
    if bad:
        raise ValueError(
            f"tolerance keys {bad} are not ISO 4217 codes; use codes such as 'EUR' or '*' for any"
        )
    return value


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        default=None, description="label recorded on every pair this rule makes; default: kind"
    )
    date_window_days: int = Field(3, ge=0, le=366, description="max |booking date difference|")
    tolerances: Tolerances | None = Field(
        default=None, description="overrides the set's tolerances for this rule"
    )
    status: Literal["confirmed", "suggested"] = "confirmed"
    on_ambiguity: Literal["suggest", "best_first", "skip"] = Field(
        default="suggest",
        description="when a record has more than one candidate: 'suggest' assigns best-first "
        "but marks the pair suggested; 'best_first' assigns and keeps `status`; 'skip' leaves "
        "such records to later rules",
    )

    @field_validator("tolerances")
    @classmethod
    def _tolerance_keys(cls, value: Tolerances | None) -> Tolerances | None:
        return _check_tolerance_keys(value)

    @property
    def label(self) -> str:
        return self.name or self.kind  # type: ignore[attr-defined]


class ReferenceRule(_Rule):
    """Exact reference (after normalisation) + currency, amount within tolerance, date in window.

    `normalize`: ``"alnum"`` compares upper-cased letters and digits only (``"INV-0042 "`` equals
    ``"inv0042"``); ``"casefold"`` trims and upper-cases; ``"exact"`` compares verbatim.
    A reference that occurs more than `max_key_repeats` times on one side is not an identifier
    (``"SALARY"``); such records are left to later rules instead of exploding the join.

    `amounts`: ``"within_tolerance"`` (the usual); ``"beyond_tolerance"`` takes the other pairs of
    the same key: amounts of the same sign that differ by *more* than the tolerance. Such a pair
    is a discrepancy pair: linked, its amount difference listed in the discrepancies. Trap: the
    default set runs it after the group rules, or it would take one part of a split payment
    that shares its reference with the whole.
    """

    kind: Literal["reference"] = "reference"
    normalize: Literal["alnum", "casefold", "exact"] = "alnum"
    max_key_repeats: int = Field(100, ge=1)
    amounts: Literal["within_tolerance", "beyond_tolerance"] = "within_tolerance"


class AmountDateRule(_Rule):
    """Keyless: same currency, amount within tolerance, booking date within the window.

    A record with more than `max_candidates` candidates is skipped by this rule (a thousand
    lines of 9.99 are not matched by amount). With the default ``on_ambiguity="suggest"`` a pair
    is confirmed only when each of its records had exactly one candidate.
    """

    kind: Literal["amount_date"] = "amount_date"
    max_candidates: int = Field(50, ge=1, le=10_000)


class GroupRule(_Rule):
    """One record = sum of two or more on the other side sharing `group_by` values.

    The many-side records are grouped by `group_by` (and currency); a group matches a one-side
    record when the fields in `match_on` are equal, the sum is within tolerance and every member's
    booking date is within the window of the one record's. `direction` says which side holds the
    single record: ``"both"`` tries one-left/many-right, then one-right/many-left.
    """

    kind: Literal["group"] = "group"
    group_by: tuple[Literal["reference", "counterparty", "description", "booking_date", "value_date"], ...] = (
        "reference",
    )
    match_on: tuple[Literal["reference", "counterparty", "description", "booking_date", "value_date"], ...] = (
        "reference",
    )
    direction: Literal["both", "one_left", "one_right"] = "both"
    max_size: int = Field(50, ge=2, le=1000)

    @model_validator(mode="after")
    def _match_on_subset(self) -> GroupRule:
        if not self.group_by:
            raise ValueError("group_by needs at least one field, e.g. ('reference',)")
        extra = [f for f in self.match_on if f not in self.group_by]
        if extra:
            raise ValueError(f"match_on fields {extra} must also be in group_by {list(self.group_by)}")
        return self


class SubsetSumRule(_Rule):
    """One record = sum of 2..`max_size` records on the other side, found by bounded search.

    Candidates for a target record: same currency and sign, smaller absolute amount, booking
    date within the window, equal `block_on` fields (normalised like references; empty tuple:
    no blocking). Only the `max_candidates` candidates closest in date are searched, so the
    search is at most C(max_candidates, max_size) subsets per target.
    """

    kind: Literal["subset_sum"] = "subset_sum"
    block_on: tuple[Literal["reference", "counterparty", "description"], ...] = ("counterparty",)
    max_candidates: int = Field(12, ge=2, le=20)
    max_size: int = Field(3, ge=2, le=4)
    direction: Literal["both", "one_left", "one_right"] = "both"


class FuzzyRule(_Rule):
    """Text similarity among candidates blocked by amount tolerance and date window.

    Similarity is rapidfuzz's `scorer` on the normalised text of `fields` (joined), in 0..1; a
    pair needs at least `min_similarity`. Its pairs are *suggested* by default: a person confirms.
    A record with more than `max_candidates` candidates keeps the ones closest in amount (and
    then date): unlike the keyless rule, a crowd is not ambiguity here, the text decides.

    The default scorer ``"balanced"`` is the mean of ``token_set_ratio`` and
    ``token_sort_ratio``. The trap it avoids: ``token_set_ratio`` alone scores 100 whenever one
    text's words are a subset of the other's, so a bare counterparty name ("ACME GMBH") would
    equal every ACME invoice line.

    A score is not evidence by itself: short texts that share a name score high ("FEE UMBRELLA"
    against "UMBRELLA": 0.9). So a pair must also share at least `min_shared_words` words
    (letters and digits), and at least one shared word must be *distinctive*: on at most
    `common_word_lines` of the lines the rule sees on each side. A name on many lines
    ("PIED PIPER"), "SEPA" or "INVOICE" says nothing about which line is which; an invoice
    number does. ``common_word_lines=None`` switches the second check off. Trap: among a handful
    of lines every word is rare, so on small inputs only `min_shared_words` protects.
    """

    kind: Literal["fuzzy"] = "fuzzy"
    status: Literal["confirmed", "suggested"] = "suggested"
    date_window_days: int = Field(7, ge=0, le=366)
    fields: tuple[Literal["reference", "counterparty", "description"], ...] = ("counterparty", "description")
    scorer: Literal["balanced", "token_set_ratio", "token_sort_ratio", "ratio", "partial_ratio", "WRatio"] = "balanced"
    min_similarity: float = Field(0.8, ge=0.0, le=1.0)
    max_candidates: int = Field(50, ge=1, le=10_000)
    min_shared_words: int = Field(2, ge=1, le=20)
    common_word_lines: int | None = Field(3, ge=1)

    @field_validator("fields")
    @classmethod
    def _some_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("fields needs at least one of reference, counterparty, description")
        return value


Rule = Annotated[
    Union[ReferenceRule, AmountDateRule, GroupRule, SubsetSumRule, FuzzyRule],
    Field(discriminator="kind"),
]


def default_rules() -> list[Rule]:
    """The rules an unconfigured reconciliation runs, most reliable first.

    Blocked rules run before the unblocked keyless one: reference, group by reference, the
    subset search among lines of the same counterparty, then the same reference with amounts
    beyond the tolerance (``amount_discrepancy``, suggested). Otherwise a keyless amount+date
    match takes one part of a split payment (small amounts collide often in a large month) and
    the whole group is lost. Fuzzy (suggestions only) runs last.
    """
    return [
        ReferenceRule(),
        GroupRule(),
        SubsetSumRule(),
        ReferenceRule(name="amount_discrepancy", amounts="beyond_tolerance", status="suggested"),
        AmountDateRule(),
        FuzzyRule(tolerances={"*": Tolerance(relative=Decimal("0.02"))}),
    ]


DEFAULT_TOLERANCES: Tolerances = {"*": Tolerance(absolute_minor=1)}
"""One minor unit for every currency (a cent, a yen, a fils): the rounding difference two
systems produce. Anything more is a discrepancy pair when the reference agrees."""


class RuleSet(BaseModel):
    """Rules in priority order plus per-currency tolerances.

    The default is strict on money: one minor unit (:data:`DEFAULT_TOLERANCES`) for every
    confirming rule, a 2 % tolerance only for the fuzzy rule, whose pairs are suggestions.
    Tolerances you give *replace* the default table: ``{"EUR": ...}`` alone leaves every other
    currency exact; add ``"*"`` to cover them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = Field(default_factory=default_rules)
    tolerances: Tolerances = Field(default_factory=lambda: dict(DEFAULT_TOLERANCES))

    @field_validator("tolerances")
    @classmethod
    def _tolerance_keys(cls, value: Tolerances) -> Tolerances:
        return _check_tolerance_keys(value) or {}

    @model_validator(mode="after")
    def _unique_labels(self) -> RuleSet:
        if not self.rules:
            raise ValueError("a rule set needs at least one rule")
        counts = Counter(rule.label for rule in self.rules)  # linear: a long list must not stall validation
        dupes = sorted(label for label, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"rule names must be unique, {dupes} repeat; set `name` on each")
        return self

    def tolerance_for(self, rule: _Rule, currency: str) -> Tolerance:
        """The tolerance `rule` applies to amounts in `currency`."""
        for table in (rule.tolerances or {}, self.tolerances):
            for key in (currency, "*"):
                if key in table:
                    return table[key]
        return Tolerance()
