"""Generated bank/ledger record pairs with known truth, for tests, benchmarks and the demo.

``generate(n, seed)`` plants, on two sides of about `n` records each:

    kind           left (bank)                      right (ledger)                     expected rule
    keyed          reference INV-…                  same reference (case/format noise),  reference
                                                    cent differences, dates shifted
    keyless        no reference                     own reference, same amount,          amount_date
                                                    date shifted
    split_key      one line, reference BATCH-…      2-4 lines with that reference        group
    split_subset   one line (or 2-3 lines)          2-3 lines (or one line), no shared   subset_sum
                                                    reference, same counterparty
    fuzzy          counterparty + text, no ref      similar text, amount off by a fee    fuzzy (suggested)
                                                    (0.3-1.5 %), beyond the tolerance
    missing        a line                           nothing                              unmatched
    extra          nothing                          a line                               unmatched

Currencies: EUR (most), USD, JPY (0 decimals), KWD (3 decimals). Ids are 1..n per side in a
shuffled order, so ids carry no hint of the truth. Deterministic for a given (n, seed): numpy's
PCG64 generator is stable across releases.

The trap: keyless matching on amount and date alone is ambiguous by nature; with large `n` a
few keyless pairs collide with an unrelated line of the same amount a day closer. The benchmark
reports this as measured precision/recall; it is not hidden by the generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from app.engine.rules import RuleSet, Tolerance, default_rules
from app.records import CURRENCY_EXPONENTS as _EXPONENT_ALL
from app.records import RECORD_SCHEMA

SHARES = {
    "keyed": 0.80,
    "keyless": 0.06,
    "split_key": 0.01,
    "split_subset": 0.01,
    "fuzzy": 0.01,
    "missing": 0.02,
    "extra": 0.02,
}
"""Share of `n` per planted kind (split kinds count one per split, not per line)."""

CURRENCIES = (("EUR", 0.90, 2), ("USD", 0.07, 2), ("JPY", 0.02, 0), ("KWD", 0.01, 3))
TOLERANCES = {
    "EUR": Tolerance(absolute_minor=5),
    "USD": Tolerance(absolute_minor=5),
    "JPY": Tolerance(absolute_minor=0),
    "KWD": Tolerance(absolute_minor=50),
}
_EXPONENT = {code: exponent for code, _, exponent in CURRENCIES}
_CENT_NOISE = {"EUR": 3, "USD": 3, "JPY": 0, "KWD": 40}
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


def rules() -> RuleSet:
    """The rule set the benchmark and tests run on generated data: defaults + its tolerances."""
    return RuleSet(rules=default_rules(), tolerances=TOLERANCES)


@dataclass(frozen=True)
class Dataset:
    """Two record frames and the truth planted in them.

    `truth_pairs`: left_id, right_id, kind (keyed | keyless | fuzzy), expected rule.
    `truth_groups`: one_side, one_id, many_ids (sorted list), expected rule.
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
    rng = np.random.default_rng(seed)
    counts = {kind: max(2, int(n * share)) for kind, share in SHARES.items()}
    counts["keyed"] = n - sum(v for k, v in counts.items() if k not in ("keyed", "extra"))
    left_parts: list[dict[str, np.ndarray]] = []
    right_parts: list[dict[str, np.ndarray]] = []

    # every planted transaction gets a uid; lines carry (uid, role) until ids are assigned
    next_uid = 0

    def base(size: int) -> dict[str, np.ndarray]:
        nonlocal next_uid
        uid = np.arange(next_uid, next_uid + size)
        next_uid += size
        picks = rng.choice(len(CURRENCIES), size=size, p=[c[1] for c in CURRENCIES])
        currency = np.array([c[0] for c in CURRENCIES], dtype=object)[picks]
        exponent = np.array([c[2] for c in CURRENCIES])[picks]
        # log-uniform magnitudes between 10 and 100k major units, with full minor precision
        major = np.exp(rng.uniform(np.log(10), np.log(100_000), size=size))
        magnitude = np.maximum(1, np.round(major * 10.0**exponent)).astype(np.int64)
        sign = np.where(rng.random(size) < 0.7, -1, 1)
        day = rng.integers(0, 365, size=size)
        cp = rng.integers(0, len(_COUNTERPARTIES), size=size)
        return {"uid": uid, "currency": currency, "amount": magnitude * sign, "day": day, "cp": cp}

    def shift(size: int, low: int = -2, high: int = 2) -> np.ndarray:
        return rng.integers(low, high + 1, size=size)

    def cent_noise(currency: np.ndarray, share: float) -> np.ndarray:
        limit = np.array([_CENT_NOISE[c] for c in currency])
        noisy = rng.random(len(currency)) < share
        delta = rng.integers(1, np.maximum(limit, 1) + 1) * np.where(rng.random(len(currency)) < 0.5, -1, 1)
        return np.where(noisy & (limit > 0), delta, 0)

    def line(
        b: dict[str, np.ndarray],
        kind: str,
        role: str,
        *,
        amount: np.ndarray | None = None,
        day: np.ndarray | None = None,
        reference: np.ndarray | None = None,
        description: np.ndarray | None = None,
        counterparty: np.ndarray | None = None,
        part: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
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

    def refs(prefix: str, uid: np.ndarray) -> np.ndarray:
        # polars builds the strings in bulk (a Python f-string per row costs seconds per million)
        digits = pl.Series(uid, dtype=pl.Int64).cast(pl.Utf8).str.zfill(8)
        return (f"{prefix}-" + digits).to_numpy().astype(object)

    # keyed: same reference, format noise on the ledger side, cent noise, date shift
    b = base(counts["keyed"])
    ref_left = refs("INV", b["uid"])
    # format noise on the ledger side: 20 % lower case, 10 % a space instead of the dash
    noisy = pl.DataFrame({"ref": pl.Series(ref_left, dtype=pl.Utf8), "lower": rng.random(len(ref_left)) < 0.2,
                          "space": rng.random(len(ref_left)) < 0.1})
    ref_right = noisy.select(
        pl.when(pl.col("lower")).then(pl.col("ref").str.to_lowercase()).otherwise(pl.col("ref"))
        .pipe(lambda r: pl.when(pl.col("space")).then(r.str.replace("-", " ", literal=True)).otherwise(r))
    ).to_series().to_numpy().astype(object)
    left_parts.append(line(b, "keyed", "left", reference=ref_left, description=refs("Payment INV", b["uid"])))
    right_parts.append(
        line(
            b, "keyed", "right",
            amount=b["amount"] + cent_noise(b["currency"], 0.05),
            day=b["day"] + shift(len(b["uid"])),
            reference=ref_right,
        )
    )

    # keyless: bank line without reference, ledger line with its own document number
    b = base(counts["keyless"])
    left_parts.append(line(b, "keyless", "left", description=np.full(len(b["uid"]), "CARD PAYMENT", dtype=object)))
    right_parts.append(line(b, "keyless", "right", day=b["day"] + shift(len(b["uid"])), reference=refs("DOC", b["uid"])))

    # split_key: one bank line = 2-4 ledger lines with the same batch reference
    b = base(counts["split_key"])
    sizes = rng.integers(2, 5, size=len(b["uid"]))
    left_parts.append(line(b, "split_key", "one_left", reference=refs("BATCH", b["uid"])))
    right_parts.append(_split(rng, b, sizes, "split_key", "many_right", line, refs("BATCH", b["uid"]), shift))

    # split_subset: no shared reference, same counterparty; half one-left, half one-right
    b = base(counts["split_subset"])
    half = len(b["uid"]) // 2
    sizes = rng.integers(2, 4, size=len(b["uid"]))
    first = {k: v[:half] for k, v in b.items()}
    second = {k: v[half:] for k, v in b.items()}
    left_parts.append(line(first, "split_subset", "one_left"))
    right_parts.append(_split(rng, first, sizes[:half], "split_subset", "many_right", line, None, shift))
    right_parts.append(line(second, "split_subset", "one_right", reference=refs("DOC", second["uid"])))
    left_parts.append(_split(rng, second, sizes[half:], "split_subset", "many_left", line, None, shift))

    # fuzzy: same counterparty and invoice number in differently worded text, a fee off
    b = base(counts["fuzzy"])
    names = np.array(_COUNTERPARTIES, dtype=object)[b["cp"]]
    # 1,000 to 100,000 major units (log-uniform, no pile-up at one value), so that a fee of
    # 0.3-1.5 % clears the tolerance yet stays within the fuzzy rule's 2 %
    exponent = np.array([_EXPONENT[c] for c in b["currency"]])
    major = np.exp(rng.uniform(np.log(1_000), np.log(100_000), size=len(b["uid"])))
    b["amount"] = np.sign(b["amount"]) * np.round(major * 10.0**exponent).astype(np.int64)
    beyond = np.array([TOLERANCES[c].absolute_minor + 1 for c in b["currency"]], dtype=np.int64)
    fee = np.maximum((np.abs(b["amount"]) * rng.uniform(0.003, 0.015, size=len(b["uid"]))).astype(np.int64), beyond)
    left_parts.append(
        line(b, "fuzzy", "left", description=np.array([f"SEPA {c} INVOICE {u}" for c, u in zip(names, b["uid"])], dtype=object))
    )
    right_parts.append(
        line(
            b, "fuzzy", "right",
            amount=b["amount"] - np.sign(b["amount"]) * fee,
            day=b["day"] + shift(len(b["uid"]), -4, 4),
            reference=refs("DOC", b["uid"]),
            description=np.array([f"{c.lower()} invoice {u}" for c, u in zip(names, b["uid"])], dtype=object),
        )
    )

    # missing (bank only) and extra (ledger only)
    b = base(counts["missing"])
    left_parts.append(line(b, "missing", "left", reference=refs("MIS", b["uid"])))
    b = base(counts["extra"])
    right_parts.append(line(b, "extra", "right", reference=refs("EXT", b["uid"])))

    left = _frame(rng, left_parts, "left")
    right = _frame(rng, right_parts, "right")
    return _truth(left, right)


def _split(rng, b, sizes, kind, role, line, reference, shift):  # noqa: ANN001, ANN202 - local helper
    """Split each amount of `b` into sizes[i] parts (same sign, none zero), one line per part."""
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
    return line(
        expanded, kind, role, amount=amount, day=expanded["day"] + shift(len(repeat)), reference=ref, part=part
    )


def _frame(rng: np.random.Generator, parts: list[dict[str, np.ndarray]], side: str) -> pl.DataFrame:
    columns = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = rng.permutation(len(columns["uid"]))
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
    frame = frame.with_columns(
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
    return frame


def _truth(left: pl.DataFrame, right: pl.DataFrame) -> Dataset:
    rule_of = {"keyed": "reference", "keyless": "amount_date", "fuzzy": "fuzzy", "split_key": "group", "split_subset": "subset_sum"}
    l_single = left.filter(pl.col("kind").is_in(["keyed", "keyless", "fuzzy"])).select("uid", "kind", left_id="id")
    r_single = right.filter(pl.col("kind").is_in(["keyed", "keyless", "fuzzy"])).select("uid", right_id="id")
    truth_pairs = (
        l_single.join(r_single, on="uid")
        .with_columns(rule=pl.col("kind").replace_strict(rule_of))
        .select("left_id", "right_id", "kind", "rule")
        .sort("left_id")
    )
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
    truth_groups = (
        pl.concat(groups)
        .with_columns(rule=pl.col("kind").replace_strict(rule_of))
        .select("one_side", "one_id", "many_ids", "kind", "rule")
        .sort("one_side", "one_id")
    )
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
    """Precision and recall per rule against the planted truth.

    A reported pair or group counts as correct only if it is exactly a planted one (same ids,
    same members) *and* was made by the rule expected for its kind. Rows: one per rule, plus
    ``unmatched`` (planted missing/extra lines left unmatched vs all unmatched lines).
    """
    rows = []
    truth_pairs = dataset.truth_pairs
    reported_pairs = result.pairs.select("left_id", "right_id", "rule")
    truth_groups = dataset.truth_groups.with_columns(_key=pl.col("many_ids").cast(pl.List(pl.Utf8)).list.join(","))
    reported_groups = result.groups.select(
        "one_side", "one_id", "rule", _key=pl.col("many_ids").list.sort().cast(pl.List(pl.Utf8)).list.join(",")
    )
    rule_names = sorted(
        set(truth_pairs.get_column("rule").to_list())
        | set(truth_groups.get_column("rule").to_list())
        | set(reported_pairs.get_column("rule").to_list())
        | set(reported_groups.get_column("rule").to_list())
    )
    for rule in rule_names:
        planted_p = truth_pairs.filter(pl.col("rule") == rule)
        found_p = reported_pairs.filter(pl.col("rule") == rule)
        correct_p = found_p.join(planted_p, on=["left_id", "right_id", "rule"], how="semi").height
        planted_g = truth_groups.filter(pl.col("rule") == rule)
        found_g = reported_groups.filter(pl.col("rule") == rule)
        correct_g = found_g.join(planted_g, on=["one_side", "one_id", "_key", "rule"], how="semi").height
        planted = planted_p.height + planted_g.height
        reported = found_p.height + found_g.height
        correct = correct_p + correct_g
        rows.append((rule, planted, reported, correct))
    unmatched = result.unmatched_left.height + result.unmatched_right.height
    planted_unmatched = dataset.missing_left.len() + dataset.extra_right.len()
    correct_unmatched = (
        result.unmatched_left.filter(pl.col("id").is_in(dataset.missing_left.implode())).height
        + result.unmatched_right.filter(pl.col("id").is_in(dataset.extra_right.implode())).height
    )
    rows.append(("unmatched", planted_unmatched, unmatched, correct_unmatched))
    frame = pl.DataFrame(rows, schema={"rule": pl.Utf8, "planted": pl.Int64, "reported": pl.Int64, "correct": pl.Int64}, orient="row")
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


def to_csv(records: pl.DataFrame) -> bytes:
    """Render records as a CSV file the CSV importer reads back to the same records.

    Amounts are written as exact decimal text per currency (never through a float), dates as
    ISO; the demo and the end-to-end benchmark upload these files.
    """
    exponent = pl.col("currency").replace_strict(_EXPONENT_ALL, return_dtype=pl.Int64)
    magnitude = pl.col("amount_minor").abs()
    scale = pl.lit(10, dtype=pl.Int64).pow(exponent)
    whole = (magnitude // scale).cast(pl.Utf8)
    fraction = (magnitude % scale).cast(pl.Utf8).str.zfill(exponent)
    sign = pl.when(pl.col("amount_minor") < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    amount = pl.when(exponent == 0).then(pl.concat_str(sign, whole)).otherwise(pl.concat_str(sign, whole, pl.lit("."), fraction))
    table = records.sort("id").select(
        booking_date=pl.col("booking_date").cast(pl.Utf8),
        value_date=pl.col("value_date").cast(pl.Utf8),
        reference="reference",
        amount=amount,
        currency="currency",
        counterparty="counterparty",
        description="description",
    )
    return table.write_csv().encode()
