"""Benchmark of the matching engine on generated data with known truth.

    python benchmarks/bench_engine.py                 # 1,000,000 x ~1,000,000 records
    python benchmarks/bench_engine.py --rows 100000   # quicker
    python benchmarks/bench_engine.py --no-datacompy  # without the datacompy comparison
    python benchmarks/bench_engine.py --truth-rows ""   # without the planted-truth table

What it measures, each stage in its own child process so that peak memory (RSS, from
``getrusage``; tracemalloc cannot see polars' Rust allocations) belongs to that stage alone:

* ``exact``: the reference rule alone (the exact-key pass) on the generated data;
* ``full``: the default rule set (reference, group, subset_sum, amount_discrepancy,
  amount_date, fuzzy) with its default tolerance (one minor unit);
* ``engine-exact-key`` vs ``datacompy``: the same exact-key frames (references normalised
  beforehand, so a plain join can find them) compared by our reference rule and by
  datacompy's ``PolarsCompare`` joined on the reference with the same absolute tolerance.
  datacompy is timed twice: the comparison alone, and with ``all_mismatch()``, the rows that
  differ with both values, which is what our ``match()`` also returns (as discrepancies).

Timings cover ``match()`` (or datacompy's comparison) only, not loading the parquet input;
the RSS peak (VmHWM) covers the whole child, input included. Then precision and recall per
planted kind for the full run, and the check that no record is used twice.

Last, the planted-truth table (issue 12) at ``--truth-rows`` (10,000 and 100,000 records per
side): both sides written as CSV and read back by the importer with nothing configured but the
decimal separator (decimal point, and decimal comma with German headers), matched with the
default rules, each kind's precision and recall beside the 0.99 target.

Targets (issue 3): exact-key pass <= 2 s, full rule set <= 10 s on 2 cores, peak RSS <= 1.5 GB,
engine at least 3x faster than datacompy. The machine's load average is printed beside the
figures: on a shared machine the wall times move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"exact": 2.0, "full": 10.0, "rss_gb": 1.5, "datacompy_ratio": 3.0, "truth": 0.99}


def _peak_rss_gb() -> float:
    """This process's peak RSS (VmHWM). Not ``getrusage().ru_maxrss``: on Linux that value
    survives fork+exec, so every child would report the parent's peak (the data generator's)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB on Linux


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- child stages


def _child(stage: str, data: Path) -> dict[str, object]:
    import polars as pl

    from app import datagen
    from app.engine import ReferenceRule, RuleSet, match

    out: dict[str, object] = {"stage": stage}
    if stage in ("exact", "full"):
        left, right = pl.read_parquet(data / "left.parquet"), pl.read_parquet(data / "right.parquet")
        rules = RuleSet() if stage == "full" else RuleSet(rules=[ReferenceRule()])
        cpu, started = _cpu_seconds(), time.perf_counter()
        result = match(left, right, rules)
        out["seconds"] = time.perf_counter() - started
        out["cpu_seconds"] = _cpu_seconds() - cpu
        out["pairs"], out["groups"] = result.pairs.height, result.groups.height
        out["rule_stats"] = result.rule_stats.to_dicts()
        if stage == "full":
            dataset = datagen.Dataset(
                left=left, right=right,
                truth_pairs=pl.read_parquet(data / "truth_pairs.parquet"),
                truth_groups=pl.read_parquet(data / "truth_groups.parquet"),
                missing_left=pl.read_parquet(data / "missing.parquet").get_column("id"),
                extra_right=pl.read_parquet(data / "extra.parquet").get_column("id"),
            )
            out["evaluation"] = datagen.evaluate(dataset, result).to_dicts()
            out["used_twice"] = datagen.records_used_twice(result)
            out["status"] = result.pairs.group_by("rule", "status").len().sort("rule", "status").to_dicts()
    elif stage == "engine-exact-key":
        left, right = pl.read_parquet(data / "key_left.parquet"), pl.read_parquet(data / "key_right.parquet")
        rules = RuleSet(rules=[ReferenceRule(normalize="exact", date_window_days=366)])
        cpu, started = _cpu_seconds(), time.perf_counter()
        result = match(left, right, rules)
        out["seconds"] = time.perf_counter() - started
        out["cpu_seconds"] = _cpu_seconds() - cpu
        out["pairs"] = result.pairs.height
    elif stage == "datacompy":
        from datacompy.polars import PolarsCompare

        columns = ["reference", "amount_minor", "currency", "booking_date"]
        left = pl.read_parquet(data / "key_left.parquet").select(columns)
        right = pl.read_parquet(data / "key_right.parquet").select(columns)
        cpu, started = _cpu_seconds(), time.perf_counter()
        tolerance = RuleSet().tolerances["*"].absolute_minor  # the engine's default, for the same question
        compare = PolarsCompare(
            left, right, join_columns=["reference", "currency"], abs_tol=tolerance, df1_name="left", df2_name="right"
        )
        out["pairs"] = compare.intersect_rows.height
        out["seconds"] = time.perf_counter() - started
        out["cpu_seconds"] = _cpu_seconds() - cpu
        # the rows that differ, with both values: datacompy's counterpart of our discrepancies
        mismatches = compare.all_mismatch()
        out["seconds_with_mismatches"] = time.perf_counter() - started
        out["mismatch_rows"] = mismatches.height
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    out["peak_rss_gb"] = _peak_rss_gb()
    return out


def _run_child(stage: str, data: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", stage, "--data", str(data)],
        capture_output=True, text=True, cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- parent


def _prepare(rows: int, seed: int, data: Path) -> dict[str, int]:
    import polars as pl

    from app import datagen
    from app.engine.candidates import normalise_text

    started = time.perf_counter()
    dataset = datagen.generate(rows, seed=seed)
    dataset.left.write_parquet(data / "left.parquet")
    dataset.right.write_parquet(data / "right.parquet")
    dataset.truth_pairs.write_parquet(data / "truth_pairs.parquet")
    dataset.truth_groups.write_parquet(data / "truth_groups.parquet")
    dataset.missing_left.to_frame("id").write_parquet(data / "missing.parquet")
    dataset.extra_right.to_frame("id").write_parquet(data / "extra.parquet")
    # exact-key data for the side-by-side run: normalised references present on both sides
    key = normalise_text(pl.col("reference"), "alnum")
    dataset.left.with_columns(reference=key).drop_nulls("reference").write_parquet(data / "key_left.parquet")
    dataset.right.with_columns(reference=key).drop_nulls("reference").write_parquet(data / "key_right.parquet")
    print(f"generated {dataset.left.height:,} left x {dataset.right.height:,} right records "
          f"(seed {seed}) in {time.perf_counter() - started:.1f} s")
    return {"left": dataset.left.height, "right": dataset.right.height}


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _truth_table(rows: int, seed: int) -> bool:
    """Print the planted-truth table at `rows` per side, decimal point and comma; True if all met."""
    from app import datagen
    from app.engine import match

    generated = datagen.generate(rows, seed=seed)
    scores = {}
    for decimal in (".", ","):
        dataset = datagen.through_importer(generated, decimal=decimal)
        scores[decimal] = {r["kind"]: r for r in datagen.evaluate(dataset, match(dataset.left, dataset.right)).to_dicts()}
    target = TARGETS["truth"]
    print(f"\n  {generated.left.height:,} x {generated.right.height:,} records (seed {seed}); "
          f"decimal point (English headers) | decimal comma (German headers); target {target:.2f}")
    print(f"  {'kind':<16}{'planted':>9}{'reported':>10}{'precision':>11}{'recall':>9} |{'reported':>10}"
          f"{'precision':>11}{'recall':>9}  verdict")
    met = True
    for kind in datagen.KINDS:
        point, comma = scores["."][kind], scores[","][kind]
        ok = all(r[m] >= target for r in (point, comma) for m in ("precision", "recall"))
        met = met and ok
        print(f"  {kind:<16}{point['planted']:>9,}{point['reported']:>10,}{point['precision']:>11.4f}{point['recall']:>9.4f} |"
              f"{comma['reported']:>10,}{comma['precision']:>11.4f}{comma['recall']:>9.4f}  {_verdict(ok)}")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="records per side (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-datacompy", action="store_true", help="skip the datacompy comparison")
    parser.add_argument("--truth-rows", default="10000,100000",
                        help="records per side of the planted-truth tables, comma-separated; empty: none")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, Path(args.data))))
        return 0

    import polars as pl

    print(f"engine benchmark: {os.cpu_count()} CPUs, polars {pl.__version__} ({pl.thread_pool_size()} threads), "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        data = Path(tmp)
        _prepare(args.rows, args.seed, data)
        stages = ["exact", "full", "engine-exact-key"] + ([] if args.no_datacompy else ["datacompy"])
        results = {}
        for stage in stages:
            results[stage] = _run_child(stage, data)
            r = results[stage]
            print(f"  {stage:<17} {r['seconds']:7.2f} s wall  {r['cpu_seconds']:7.2f} s cpu  "
                  f"peak RSS {r['peak_rss_gb']:.2f} GB  load {os.getloadavg()[0]:.2f}")

    exact, full = results["exact"], results["full"]
    peak = max(r["peak_rss_gb"] for stage, r in results.items() if stage != "datacompy")
    print()
    print(f"{'figure':<38}{'measured':>12}{'target':>12}{'ratio':>9}  verdict")
    rows = [
        ("exact-key pass (s)", exact["seconds"], TARGETS["exact"], exact["seconds"] <= TARGETS["exact"]),
        ("full rule set (s)", full["seconds"], TARGETS["full"], full["seconds"] <= TARGETS["full"]),
        ("peak RSS, engine stages (GB)", peak, TARGETS["rss_gb"], peak <= TARGETS["rss_gb"]),
    ]
    for name, measured, target, ok in rows:
        print(f"{name:<38}{measured:>12.2f}{target:>12.2f}{measured / target:>9.2f}  {_verdict(ok)}")
    if "datacompy" in results:
        ours, theirs = results["engine-exact-key"], results["datacompy"]
        speedup = theirs["seconds"] / ours["seconds"]
        print(f"{'datacompy / engine on exact keys (x)':<38}{speedup:>12.2f}{TARGETS['datacompy_ratio']:>12.2f}"
              f"{speedup / TARGETS['datacompy_ratio']:>9.2f}  {_verdict(speedup >= TARGETS['datacompy_ratio'])}")
        full_compare = theirs["seconds_with_mismatches"] / ours["seconds"]
        print(f"{'  ... with all_mismatch() (x)':<38}{full_compare:>12.2f}{TARGETS['datacompy_ratio']:>12.2f}"
              f"{full_compare / TARGETS['datacompy_ratio']:>9.2f}  {_verdict(full_compare >= TARGETS['datacompy_ratio'])}")
        print(f"   engine match() {ours['seconds']:.2f} s ({ours['pairs']:,} pairs with discrepancies, summary, "
              f"unmatched; {ours['peak_rss_gb']:.2f} GB) vs datacompy PolarsCompare {theirs['seconds']:.2f} s "
              f"({theirs['pairs']:,} joined rows), {theirs['seconds_with_mismatches']:.2f} s with all_mismatch() "
              f"({theirs['mismatch_rows']:,} rows); {theirs['peak_rss_gb']:.2f} GB")

    print("\nper rule (full set):")
    for stat in full["rule_stats"]:
        print(f"  {stat['rule']:<18} {stat['seconds']:6.2f} s  candidates {stat['candidates']:>9,}  pairs {stat['pairs']:>9,}  "
              f"groups {stat['groups']:>7,}  suggested {stat['suggested']:>7,}  skipped {stat['skipped_ambiguous']:>6,}")
    print("\ncorrectness of the full run against planted truth:")
    print(f"  {'kind':<16}{'planted':>10}{'reported':>10}{'correct':>10}{'precision':>11}{'recall':>9}")
    for row in full["evaluation"]:
        print(f"  {row['kind']:<16}{row['planted']:>10,}{row['reported']:>10,}{row['correct']:>10,}"
              f"{row['precision']:>11.4f}{row['recall']:>9.4f}")
    print(f"  records used twice: {full['used_twice']}")
    statuses = ", ".join(f"{s['rule']}/{s['status']} {s['len']:,}" for s in full["status"])
    print(f"  pair statuses: {statuses}")

    sizes = [int(size) for size in args.truth_rows.split(",") if size.strip()]
    if sizes:
        print("\nplanted truth with the default rules, both sides through the CSV importer (columns detected):")
        met = [_truth_table(size, args.seed) for size in sizes]
        print(f"\n  every kind at target {TARGETS['truth']:.2f}: {_verdict(all(met))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
