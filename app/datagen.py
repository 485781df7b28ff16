"""Generated bank/ledger record pairs with known truth, for tests, benchmarks and the demo.

``generate(n, seed)`` plants the kinds of :data:`SHARES` on two sides of about `n` records
each. Each kind is what one rule of the *default* rule set (``match(left, right)`` without
rules) must find, and nothing else may find it:

    kind           left (bank)                      right (ledger)                     found by (defaults)
    exact          reference INV-…                  same reference (case/format noise),  reference
                                                    same amount, date shifted 0-2 days
    tolerance      reference INV-…                  same reference, amount 1 minor unit  reference
                                                    off (a rounding difference)
    discrepancy    reference INV-…                  same reference, amount beyond the    amount_discrepancy
                                                    tolerance (a fee, a partial payment) (suggested)
    keyless        no reference                     own reference, same amount,          amount_date
                                                    date shifted
    split_key      one line, reference BATCH-…      2-4 lines with that reference        group
    split_subset   one line (or 2-3 lines)          2-3 lines (or one line), no shared   subset_sum
                                                    reference, same counterparty
    fuzzy          counterparty + text, no ref      similar text, amount off by a fee    fuzzy (suggested)
                                                    (0.3-1.5 %), beyond the tolerance
    missing        a line                           nothing                              left unmatched
    extra          nothing                          a line                               left unmatched

A quarter of the missing and extra lines are *decoys* for the fuzzy rule: a bank fee
``FEE UMBRELLA`` on the left and a ledger line ``Umbrella`` on the right, within 2 % and a
week of each other. They share a name and nothing else, so both must stay unmatched.

Currencies: EUR (most), USD, JPY (0 decimals), KWD (3 decimals). Ids are 1..n per side in a
shuffled order, so ids carry no hint of the truth. Deterministic for a given (n, seed): numpy's
PCG64 generator is stable across releases.

:func:`evaluate` scores a result against the truth per kind (precision, recall);
:func:`through_importer` sends both sides through the CSV importer first (automatic column
detection, decimal point or comma), as an upload would.

The trap: keyless matching on amount and date alone is ambiguous by nature; with large `n` a
few keyless pairs collide with an unrelated line of the same amount a day closer. The benchmark
reports this as measured precision/recall; it is not hidden by the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

import numpy as np
import polars as pl

from app.records import CURRENCY_EXPONENTS as _EXPONENT_ALL
from app.records import RECORD_SCHEMA

SHARES = {
    "exact": 0.75,
    "tolerance": 0.04,
    "discrepancy": 0.01,
    "keyless": 0.06,
    "split_key": 0.01,
    "split_subset": 0.01,
    "fuzzy": 0.01,
    "missing": 0.02,
    "extra": 0.02,
}
"""Share of `n` per planted kind (split kinds count one per split, not per line)."""

DECOY_SHARE = 0.25
"""Share of the missing and extra lines planted as fuzzy decoys (a fee and a name)."""

KINDS = (
    "exact", "tolerance", "discrepancy", "keyless", "split_key", "split_subset", "fuzzy",
    "unmatched_left", "unmatched_right",
)
"""The kinds :func:`evaluate` reports, in order: missing lines are ``unmatched_left``, extra
lines ``unmatched_right``."""

KIND_OF_RULE = {
    "amount_discrepancy": "discrepancy",
    "amount_date": "keyless",
    "group": "split_key",
    "subset_sum": "split_subset",
    "fuzzy": "fuzzy",
}
"""What each default rule's matches are, for :func:`evaluate`; the ``reference`` rule's pairs
are ``exact`` or ``tolerance`` by their amount delta."""

CURRENCIES = (("EUR", 0.90, 2), ("USD", 0.07, 2), ("JPY", 0.02, 0), ("KWD", 0.01, 3))
_EXPONENT = {code: exponent for code, _, exponent in CURRENCIES}
_EPOCH = date(2025, 1, 1)
_NAME_A = (
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Soylent",
    "Tyrell", "Cyberdyne", "Wonka", "Gringotts", "Monsters", "Pied Piper", "Oceanic", "Duff",
    "Nakatomi", "Massive", "Aperture", "Blue Sun", "Weyland", "Zorg", "Oscorp", "Virtucon",
    "Sirius", "Dunder", "Kramerica", "Prestige", "Bluth", "Sterling", "Gekko", "Ewing", "Krusty",
    "Planet", "Octan", "Yoyodyne", "Spacely", "Cogswell", "Rekall",
)
_NAME_B = (
    "Trading", "Logistics", "Foods", "Media", "Energy", "Software", "Consulting", "Bakery",
    "Motors", "Pharma", "Textiles", "Insurance", "Holdings", "Retail", "Systems", "Labs",
    "Airlines", "Brewery", "Dynamics", "Robotics", "Paper", "Steel", "Hotels", "Partners", "Studios",
)
_NAME_C = ("GmbH", "Ltd", "plc", "Inc", "SARL")
_COUNTERPARTIES = tuple(f"{a} {b} {c}" for a in _NAME_A for b in _NAME_B for c in _NAME_C)
"""5,000 counterparty names: enough that same-name blocking narrows candidates, as in life."""


@dataclass(frozen=True)
class Dataset:
    """Two record frames and the truth planted in them.

    `truth_pairs`: left_id, right_id, kind (exact | tolerance | discrepancy | keyless | fuzzy).
    `truth_groups`: one_side, one_id, many_ids (sorted list), kind (split_key | split_subset).
    `missing_left` / `extra_right`: ids that must stay unmatched (left-only / right-only lines).
    """

    left: pl.DataFrame
    right: pl.DataFrame
    truth_pairs: pl.DataFrame
    truth_groups: pl.DataFrame
    missing_left: pl.Series
    extra_right: pl.Series


def generate(n: int = 10_000, seed: int = 7) -> Dataset:
    """Generate about `n` records per side with the planted kinds of :data:`SHARES`."""
    if n < 100:
        raise ValueError(f"n must be at least 100 to plant every kind, got {n}")
    counts = {kind: max(2, int(n * share)) for kind, share in SHARES.items()}
    counts["exact"] = n - sum(v for k, v in counts.items() if k not in ("exact", "extra"))
    planter = _Planter(np.random.default_rng(seed))
    for kind in ("exact", "tolerance", "discrepancy"):
        planter.keyed(kind, counts[kind])
    planter.keyless(counts["keyless"])
    planter.split_key(counts["split_key"])
    planter.split_subset(counts["split_subset"])
    planter.fuzzy(counts["fuzzy"])
    planter.unmatched(counts["missing"], counts["extra"])
    return _truth(planter.frame(planter.left, "left"), planter.frame(planter.right, "right"))


Lines = dict[str, np.ndarray]
"""Planted lines column by column: uid, kind, role, part, currency, amount, day, reference,
counterparty, description. A line carries (uid, role) until the frames give it an id."""


class _Planter:
    """Plants one kind at a time on the two sides; every planted transaction gets a uid."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.next_uid = 0
        self.left: list[Lines] = []
        self.right: list[Lines] = []

    # ---------------------------------------------------------------- building blocks

    def base(self, size: int) -> Lines:
        """`size` transactions: uid, currency, signed amount (log-uniform 10 to 100k major
        units, 70 % money out), day of the year and counterparty index."""
        rng = self.rng
        uid = np.arange(self.next_uid, self.next_uid + size)
        self.next_uid += size
        picks = rng.choice(len(CURRENCIES), size=size, p=[c[1] for c in CURRENCIES])
        currency = np.array([c[0] for c in CURRENCIES], dtype=object)[picks]
        exponent = np.array([c[2] for c in CURRENCIES])[picks]
        major = np.exp(rng.uniform(np.log(10), np.log(100_000), size=size))
        magnitude = np.maximum(1, np.round(major * 10.0**exponent)).astype(np.int64)
        sign = np.where(rng.random(size) < 0.7, -1, 1)
        day = rng.integers(0, 365, size=size)
        cp = rng.integers(0, len(_COUNTERPARTIES), size=size)
        return {"uid": uid, "currency": currency, "amount": magnitude * sign, "day": day, "cp": cp}

    def large(self, b: Lines) -> Lines:
        """`b` with amounts of 1,000 to 100,000 major units (log-uniform), so that a fee of
        0.3-1.5 % clears the 1-unit tolerance yet stays within the fuzzy rule's 2 %."""
        exponent = np.array([_EXPONENT[c] for c in b["currency"]])
        major = np.exp(self.rng.uniform(np.log(1_000), np.log(100_000), size=len(b["uid"])))
        return {**b, "amount": np.sign(b["amount"]) * np.round(major * 10.0**exponent).astype(np.int64)}

    def fee(self, amount: np.ndarray) -> np.ndarray:
        """A fee of 0.3-1.5 % of each amount, at least 2 minor units (beyond the tolerance)."""
        share = self.rng.uniform(0.003, 0.015, size=len(amount))
        return np.maximum((np.abs(amount) * share).astype(np.int64), 2)

    def shift(self, size: int, low: int = -2, high: int = 2) -> np.ndarray:
        return self.rng.integers(low, high + 1, size=size)

    def plus_minus(self, size: int) -> np.ndarray:
        return np.where(self.rng.random(size) < 0.5, -1, 1)

    @staticmethod
    def line(
        b: Lines,
        kind: str,
        role: str,
        *,
        amount: np.ndarray | None = None,
        day: np.ndarray | None = None,
        reference: np.ndarray | None = None,
        description: np.ndarray | None = None,
        counterparty: np.ndarray | None = None,
        part: np.ndarray | None = None,
    ) -> Lines:
        size = len(b["uid"])
        return {
            "uid": b["uid"],
            "kind": np.full(size, kind, dtype=object),
            "role": np.full(size, role, dtype=object),
            "part": part if part is not None else np.zeros(size, dtype=np.int64),
            "currency": b["currency"],
            "amount": b["amount"] if amount is None else amount,
            "day": b["day"] if day is None else day,
            "reference": reference if reference is not None else np.full(size, None, dtype=object),
            "counterparty": counterparty
            if counterparty is not None
            else np.array(_COUNTERPARTIES, dtype=object)[b["cp"]],
            "description": description if description is not None else np.full(size, None, dtype=object),
        }

    @staticmethod
    def refs(prefix: str, uid: np.ndarray) -> np.ndarray:
        # polars builds the strings in bulk (a Python f-string per row costs seconds per million)
        digits = pl.Series(uid, dtype=pl.Int64).cast(pl.Utf8).str.zfill(8)
        return (f"{prefix}-" + digits).to_numpy().astype(object)

    def noisy(self, references: np.ndarray) -> np.ndarray:
        """The ledger's spelling of bank references: 20 % lower case, 10 % a space for the dash."""
        rng = self.rng
        frame = pl.DataFrame({"ref": pl.Series(references, dtype=pl.Utf8), "lower": rng.random(len(references)) < 0.2,
                              "space": rng.random(len(references)) < 0.1})
        return frame.select(
            pl.when(pl.col("lower")).then(pl.col("ref").str.to_lowercase()).otherwise(pl.col("ref"))
            .pipe(lambda r: pl.when(pl.col("space")).then(r.str.replace("-", " ", literal=True)).otherwise(r))
        ).to_series().to_numpy().astype(object)

    # ---------------------------------------------------------------- the kinds

    def keyed(self, kind: str, size: int) -> None:
        """Same reference on both sides; the amount equal (exact), one minor unit off
        (tolerance) or off by more (discrepancy: 2-100 units, or 0.5-30 %; same sign)."""
        b = self.base(size)
        if kind == "discrepancy":
            magnitude = np.abs(b["amount"])
            small = self.rng.integers(2, 101, size=size)
            relative = (magnitude * self.rng.uniform(0.005, 0.3, size=size)).astype(np.int64)
            beyond = np.where(self.rng.random(size) < 0.5, small, np.maximum(relative, 2))
            delta = np.minimum(beyond, magnitude - 1) * self.plus_minus(size)
        else:
            delta = np.zeros(size, dtype=np.int64) if kind == "exact" else self.plus_minus(size)
        reference = self.refs("INV", b["uid"])
        self.left.append(self.line(b, kind, "left", reference=reference, description=self.refs("Payment INV", b["uid"])))
        self.right.append(
            self.line(b, kind, "right", amount=b["amount"] + delta, day=b["day"] + self.shift(size),
                      reference=self.noisy(reference))
        )

    def keyless(self, size: int) -> None:
        """A bank line without reference, the ledger line with its own document number."""
        b = self.base(size)
        self.left.append(self.line(b, "keyless", "left", description=np.full(size, "CARD PAYMENT", dtype=object)))
        self.right.append(self.line(b, "keyless", "right", day=b["day"] + self.shift(size), reference=self.refs("DOC", b["uid"])))

    def split_key(self, size: int) -> None:
        """One bank line = 2-4 ledger lines with the same batch reference."""
        b = self.base(size)
        sizes = self.rng.integers(2, 5, size=size)
        batch = self.refs("BATCH", b["uid"])
        self.left.append(self.line(b, "split_key", "one_left", reference=batch))
        self.right.append(self.split(b, sizes, "split_key", "many_right", batch))

    def split_subset(self, size: int) -> None:
        """No shared reference, same counterparty; half one-left, half one-right."""
        b = self.base(size)
        half = size // 2
        sizes = self.rng.integers(2, 4, size=size)
        first = {k: v[:half] for k, v in b.items()}
        second = {k: v[half:] for k, v in b.items()}
        self.left.append(self.line(first, "split_subset", "one_left"))
        self.right.append(self.split(first, sizes[:half], "split_subset", "many_right", None))
        self.right.append(self.line(second, "split_subset", "one_right", reference=self.refs("DOC", second["uid"])))
        self.left.append(self.split(second, sizes[half:], "split_subset", "many_left", None))

    def fuzzy(self, size: int) -> None:
        """Same counterparty and invoice number in differently worded text, a fee off."""
        b = self.large(self.base(size))
        names = np.array(_COUNTERPARTIES, dtype=object)[b["cp"]]
        fee = self.fee(b["amount"])
        self.left.append(
            self.line(b, "fuzzy", "left",
                      description=np.array([f"SEPA {c} INVOICE {u}" for c, u in zip(names, b["uid"])], dtype=object))
        )
        self.right.append(
            self.line(
                b, "fuzzy", "right",
                amount=b["amount"] - np.sign(b["amount"]) * fee,
                day=b["day"] + self.shift(size, -4, 4),
                reference=self.refs("DOC", b["uid"]),
                description=np.array([f"{c.lower()} invoice {u}" for c, u in zip(names, b["uid"])], dtype=object),
            )
        )

    def unmatched(self, missing: int, extra: int) -> None:
        """Bank-only and ledger-only lines; :data:`DECOY_SHARE` of them as fuzzy decoys."""
        decoys = int(min(missing, extra) * DECOY_SHARE)
        b = self.base(missing - decoys)
        self.left.append(self.line(b, "missing", "left", reference=self.refs("MIS", b["uid"])))
        b = self.base(extra - decoys)
        self.right.append(self.line(b, "extra", "right", reference=self.refs("EXT", b["uid"])))
        # decoys: "FEE UMBRELLA" (bank) and "Umbrella" (ledger), a fee apart, within a week
        b = self.large(self.base(decoys))
        names = np.array(_NAME_A, dtype=object)[self.rng.integers(0, len(_NAME_A), size=decoys)]
        nobody = np.full(decoys, None, dtype=object)
        self.left.append(
            self.line(b, "missing", "decoy_left", counterparty=nobody,
                      description=np.array([f"FEE {name.upper()}" for name in names], dtype=object))
        )
        self.right.append(
            self.line(b, "extra", "decoy_right", counterparty=nobody, description=names,
                      amount=b["amount"] - np.sign(b["amount"]) * self.fee(b["amount"]),
                      day=b["day"] + self.shift(decoys, -4, 4), reference=self.refs("EXT", b["uid"]))
        )

    def split(self, b: Lines, sizes: np.ndarray, kind: str, role: str, reference: np.ndarray | None) -> Lines:
        """Split each amount of `b` into sizes[i] parts (same sign, none zero), one line per part."""
        rng = self.rng
        repeat = np.repeat(np.arange(len(b["uid"])), sizes)
        part = np.concatenate([np.arange(s) for s in sizes]) if len(sizes) else np.zeros(0, dtype=np.int64)
        weights = rng.uniform(0.2, 1.0, size=len(repeat))
        totals = np.bincount(repeat, weights=weights)
        magnitude = np.abs(b["amount"])[repeat]
        share = np.floor(magnitude * weights / totals[repeat]).astype(np.int64)
        share = np.maximum(share, 1)
        # the last part of each split takes the rounding remainder so the parts sum exactly
        last = np.r_[np.diff(repeat) != 0, True]
        part_sums = np.bincount(repeat, weights=share).astype(np.int64)
        share[last] += np.abs(b["amount"]) - part_sums
        expanded = {k: v[repeat] for k, v in b.items()}
        amount = share * np.sign(b["amount"])[repeat]
        ref = None if reference is None else reference[repeat]
        return self.line(
            expanded, kind, role, amount=amount, day=expanded["day"] + self.shift(len(repeat)), reference=ref, part=part
        )

    def frame(self, parts: list[Lines], side: str) -> pl.DataFrame:
        """One side as records (plus uid, kind, role, part), in a shuffled order, ids 1..n."""
        columns = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        order = self.rng.permutation(len(columns["uid"]))
        columns = {key: value[order] for key, value in columns.items()}
        size = len(order)
        frame = pl.DataFrame(
            {
                "uid": columns["uid"].astype(np.int64),
                "kind": columns["kind"].astype(str),
                "role": columns["role"].astype(str),
                "part": columns["part"].astype(np.int64),
                "id": np.arange(1, size + 1, dtype=np.int64),
                "side": np.full(size, side),
                "reference": pl.Series(columns["reference"].tolist(), dtype=pl.Utf8),
                "amount_minor": columns["amount"].astype(np.int64),
                "currency": columns["currency"].astype(str),
                "day": columns["day"].astype(np.int32),
                "counterparty": pl.Series(columns["counterparty"].tolist(), dtype=pl.Utf8),
                "description": pl.Series(columns["description"].tolist(), dtype=pl.Utf8),
            }
        )
        epoch = (_EPOCH - date(1970, 1, 1)).days
        return frame.with_columns(
            booking_date=(pl.col("day") + epoch).cast(pl.Date),
            value_date=pl.when(pl.col("id") % 3 == 0).then((pl.col("day") + epoch + 1).cast(pl.Date)),
            line=pl.col("id") + 1,
        ).with_columns(
            raw=pl.concat_str(
                [pl.col("booking_date").cast(pl.Utf8), pl.col("reference").fill_null(""), pl.col("amount_minor").cast(pl.Utf8),
                 pl.col("currency"), pl.col("counterparty").fill_null(""), pl.col("description").fill_null("")],
                separator=";",
            )
        )


_PAIR_KINDS = ("exact", "tolerance", "discrepancy", "keyless", "fuzzy")


def _truth(left: pl.DataFrame, right: pl.DataFrame) -> Dataset:
    l_single = left.filter(pl.col("kind").is_in(_PAIR_KINDS)).select("uid", "kind", left_id="id")
    r_single = right.filter(pl.col("kind").is_in(_PAIR_KINDS)).select("uid", right_id="id")
    truth_pairs = l_single.join(r_single, on="uid").select("left_id", "right_id", "kind").sort("left_id")
    groups = []
    for one_role, many_role, one_frame, many_frame, one_side in (
        ("one_left", "many_right", left, right, "left"),
        ("one_right", "many_left", right, left, "right"),
    ):
        ones = one_frame.filter(pl.col("role") == one_role).select("uid", "kind", one_id="id")
        many = (
            many_frame.filter(pl.col("role") == many_role)
            .group_by("uid")
            .agg(many_ids=pl.col("id").sort())
        )
        groups.append(ones.join(many, on="uid").with_columns(one_side=pl.lit(one_side)))
    truth_groups = pl.concat(groups).select("one_side", "one_id", "many_ids", "kind").sort("one_side", "one_id")
    records_left = left.select(list(RECORD_SCHEMA)).sort("id")
    records_right = right.select(list(RECORD_SCHEMA)).sort("id")
    return Dataset(
        left=records_left,
        right=records_right,
        truth_pairs=truth_pairs,
        truth_groups=truth_groups,
        missing_left=left.filter(pl.col("kind") == "missing").get_column("id").sort(),
        extra_right=right.filter(pl.col("kind") == "extra").get_column("id").sort(),
    )


def evaluate(dataset: Dataset, result) -> pl.DataFrame:  # noqa: ANN001 - MatchResult, imported lazily
    """Precision and recall per planted kind (:data:`KINDS`) for a run of the default rules.

    Each reported match gets a kind from its rule (:data:`KIND_OF_RULE`; the reference rule's
    pairs are ``exact`` with no amount delta, else ``tolerance``); unmatched lines are
    ``unmatched_left`` / ``unmatched_right``. A reported match is correct only if it is exactly
    a planted one of that kind (same ids, same members). Columns: kind, planted, reported,
    correct, precision, recall (1.0 where nothing was planted or reported).
    """
    kind = pl.Enum([*KINDS, "other"])  # a million pair kinds as small codes, not strings
    by_rule = pl.col("rule").replace_strict(KIND_OF_RULE, default="other")
    pair_kind = pl.when(pl.col("rule") == "reference").then(
        pl.when(pl.col("amount_delta_minor") == 0).then(pl.lit("exact")).otherwise(pl.lit("tolerance"))
    ).otherwise(by_rule)
    reported_pairs = result.pairs.select("left_id", "right_id", kind=pair_kind.cast(kind))
    planted_pairs = dataset.truth_pairs.with_columns(pl.col("kind").cast(kind))
    correct_pairs = reported_pairs.join(planted_pairs, on=["left_id", "right_id", "kind"], how="semi")
    members = pl.col("many_ids").list.sort().cast(pl.List(pl.Utf8)).list.join(",")
    reported_groups = result.groups.select("one_side", "one_id", members, kind=by_rule.cast(kind))
    planted_groups = dataset.truth_groups.select("one_side", "one_id", members, pl.col("kind").cast(kind))
    correct_groups = reported_groups.join(planted_groups, on=["one_side", "one_id", "many_ids", "kind"], how="semi")

    def per_kind(*frames: pl.DataFrame) -> dict[str, int]:
        counts = pl.concat([frame.select("kind") for frame in frames]).group_by("kind").len()
        return dict(zip(counts.get_column("kind").cast(pl.Utf8).to_list(), counts.get_column("len").to_list()))

    planted = per_kind(planted_pairs, planted_groups)
    reported = per_kind(reported_pairs, reported_groups)
    correct = per_kind(correct_pairs, correct_groups)
    for name, found, truth in (
        ("unmatched_left", result.unmatched_left.get_column("id"), dataset.missing_left),
        ("unmatched_right", result.unmatched_right.get_column("id"), dataset.extra_right),
    ):
        planted[name], reported[name] = truth.len(), found.len()
        correct[name] = int(found.is_in(truth.implode()).sum())
    rows = [(name, planted.get(name, 0), reported.get(name, 0), correct.get(name, 0)) for name in KINDS]
    frame = pl.DataFrame(rows, schema={"kind": pl.Utf8, "planted": pl.Int64, "reported": pl.Int64, "correct": pl.Int64}, orient="row")
    return frame.with_columns(
        precision=pl.when(pl.col("reported") > 0).then(pl.col("correct") / pl.col("reported")).otherwise(1.0),
        recall=pl.when(pl.col("planted") > 0).then(pl.col("correct") / pl.col("planted")).otherwise(1.0),
    )


def records_used_twice(result) -> int:  # noqa: ANN001
    """How many (side, id) appear in more than one match (must be 0)."""
    links = result.group_links()
    left = pl.concat([result.pairs.get_column("left_id"), links.get_column("left_id").unique()])
    right = pl.concat([result.pairs.get_column("right_id"), links.get_column("right_id").unique()])
    return (left.len() - left.n_unique()) + (right.len() - right.n_unique())


_HEADERS = {
    ".": ("booking_date", "value_date", "reference", "amount", "currency", "counterparty", "description"),
    ",": ("Buchungstag", "Valuta", "Referenz", "Betrag", "Währung", "Auftraggeber", "Verwendungszweck"),
}
"""Header names per decimal separator: English with a decimal point, German (as a German bank
exports) with a decimal comma. The importer finds both without a column mapping."""


def to_csv(records: pl.DataFrame, *, decimal: str = ".") -> bytes:
    """Render records as a CSV file the CSV importer reads back to the same records.

    Amounts are written as exact decimal text per currency (never through a float). With
    ``decimal="."``: comma-separated, ISO dates, English headers. With ``decimal=","``: a German
    bank export, semicolon-separated, dates ``dd.mm.yyyy``, German headers; read it with
    ``ImportOptions(decimal=",")``. The demo and the end-to-end benchmark upload these files.
    """
    if decimal not in _HEADERS:
        raise ValueError(f"decimal must be '.' or ',', got {decimal!r}")
    exponent = pl.col("currency").replace_strict(_EXPONENT_ALL, return_dtype=pl.Int64)
    magnitude = pl.col("amount_minor").abs()
    scale = pl.lit(10, dtype=pl.Int64).pow(exponent)
    whole = (magnitude // scale).cast(pl.Utf8)
    fraction = (magnitude % scale).cast(pl.Utf8).str.zfill(exponent)
    sign = pl.when(pl.col("amount_minor") < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    amount = pl.when(exponent == 0).then(pl.concat_str(sign, whole)).otherwise(
        pl.concat_str(sign, whole, pl.lit(decimal), fraction)
    )
    day_format = "%Y-%m-%d" if decimal == "." else "%d.%m.%Y"
    names = dict(zip(("booking_date", "value_date", "reference", "amount", "currency", "counterparty", "description"),
                     _HEADERS[decimal]))
    table = records.sort("id").select(
        pl.col("booking_date").dt.strftime(day_format).alias(names["booking_date"]),
        pl.col("value_date").dt.strftime(day_format).alias(names["value_date"]),
        pl.col("reference").alias(names["reference"]),
        amount.alias(names["amount"]),
        pl.col("currency").alias(names["currency"]),
        pl.col("counterparty").alias(names["counterparty"]),
        pl.col("description").alias(names["description"]),
    )
    return table.write_csv(separator="," if decimal == "." else ";").encode()


def through_importer(dataset: Dataset, *, decimal: str = ".") -> Dataset:
    """`dataset` with both sides written by :func:`to_csv` and read back by the importer.

    Nothing is configured but the decimal separator: the format, delimiter, columns and date
    pattern are detected, as for an upload with default options. Ids survive (the importer
    numbers lines in file order, which is id order), so the truth still applies.
    """
    from app.importers import ImportOptions, parse

    options = ImportOptions(decimal=decimal)
    sides = {
        side: parse(to_csv(records, decimal=decimal), filename=f"{side}.csv", side=side, options=options).records
        for side, records in (("left", dataset.left), ("right", dataset.right))
    }
    return replace(dataset, left=sides["left"], right=sides["right"])
