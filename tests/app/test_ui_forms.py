"""The UI's pure parts, no servers: the rule form, the chart, cursors and filters, the upload
form's options, the sign-in redirect target, static files."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from starlette.datastructures import FormData

from app.engine import RuleSet
from app.importers import ImportOptions
from app.ui import assets, chart, preview, queries, ruleform
from app.ui.routing import safe_next


def _submitted(form: ruleform.RuleForm) -> list[tuple[str, str]]:
    """What a browser sends for ``form`` unchanged."""
    items: list[tuple[str, str]] = []
    for block in form.rules:
        items.append((f"r{block.index}_kind", block.kind))
        for w in block.widgets:
            if w.kind == "checks":
                items += [(w.name, v) for v in w.value]
            else:
                items.append((w.name, str(w.value)))
        for t in block.tolerances:
            items += [(f"{t.prefix}_currency", t.currency), (f"{t.prefix}_absolute", t.absolute_minor),
                      (f"{t.prefix}_relative", t.relative)]
    for t in form.tolerances:
        items += [(f"{t.prefix}_currency", t.currency), (f"{t.prefix}_absolute", t.absolute_minor),
                  (f"{t.prefix}_relative", t.relative)]
    return items


def test_the_default_rule_set_survives_a_round_trip_through_the_form() -> None:
    form = ruleform.form_from_rules(None)
    assert [b.kind for b in form.rules] == [r.kind for r in RuleSet().rules]
    raw, problems = ruleform.raw_from_form(FormData(_submitted(form)))
    rules, errors = ruleform.validate(raw)
    assert (problems, errors) == ([], [])
    assert rules == RuleSet()


def test_widgets_follow_the_engine_models() -> None:
    form = ruleform.form_from_rules(None)
    fuzzy = next(b for b in form.rules if b.kind == "fuzzy")
    widgets = {w.name.split("_", 1)[1]: w for w in fuzzy.widgets}
    assert widgets["status"].kind == "select" and widgets["status"].value == "suggested"
    assert widgets["fields"].kind == "checks" and set(widgets["fields"].value) == {"counterparty", "description"}
    assert widgets["min_similarity"].kind == "float"
    assert (widgets["date_window_days"].minimum, widgets["date_window_days"].maximum) == (0, 366)
    assert fuzzy.tolerances[0].currency == "*"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("date_window_days", "-1", "greater than or equal to 0"),
    ("date_window_days", "three", "valid integer"),
    ("status", "maybe", "'confirmed' or 'suggested'"),
], ids=["negative-window", "not-a-number", "unknown-status"])
def test_an_invalid_value_is_shown_beside_its_field(field: str, value: str, message: str) -> None:
    items = [(k, value if k == f"r0_{field}" else v) for k, v in _submitted(ruleform.form_from_rules(None))]
    raw, _ = ruleform.raw_from_form(FormData(items))
    rules, errors = ruleform.validate(raw)
    assert rules is None
    shown = ruleform.form_from_raw(raw, errors)
    widget = next(w for w in shown.rules[0].widgets if w.name == f"r0_{field}")
    assert widget.error and message in widget.error
    assert widget.value == value, "the form shows what was typed, not the default"
    assert shown.has_errors


def test_errors_without_a_field_are_shown_above_the_form() -> None:
    raw = {"rules": [{"kind": "reference"}, {"kind": "reference"}]}
    _, errors = ruleform.validate(raw)
    shown = ruleform.form_from_raw(raw, errors)
    assert any("rule names must be unique" in e for e in shown.errors)


def test_a_tolerance_row_without_currency_is_a_problem() -> None:
    items = [i for i in _submitted(ruleform.form_from_rules(None)) if not i[0].startswith("tol0_")]
    items += [("tol0_currency", ""), ("tol0_absolute", "5"), ("tol0_relative", "")]
    _, problems = ruleform.raw_from_form(FormData(items))
    assert problems and "no currency" in problems[0]


@pytest.mark.parametrize(("op", "check"), [
    ("add", lambda rules: rules[-1] == {"kind": "amount_date", "name": "amount_date_2"}),
    ("up:1", lambda rules: [r["kind"] for r in rules[:2]] == ["group", "reference"]),
    ("down:0", lambda rules: [r["kind"] for r in rules[:2]] == ["group", "reference"]),
    ("remove:0", lambda rules: rules[0]["kind"] == "group"),
    ("up:0", lambda rules: rules[0]["kind"] == "reference"),
    ("remove:99", lambda rules: len(rules) == len(RuleSet().rules)),
], ids=["add-takes-a-free-name", "up", "down", "remove", "up-at-the-top-does-nothing", "remove-out-of-range"])
def test_rule_operations(op: str, check) -> None:  # type: ignore[no-untyped-def]
    raw = RuleSet().model_dump(mode="json")
    assert check(ruleform.apply_op(raw, op, "amount_date")["rules"])


def test_reset_brings_back_the_defaults() -> None:
    assert ruleform.apply_op({"rules": []}, "reset", None) == RuleSet().model_dump(mode="json")


# -- chart ---------------------------------------------------------------------------------------

def test_chart_of_a_month_has_a_bar_pair_per_day_and_short_labels() -> None:
    points = [(dt.date(2026, 3, d), 1000 * d, 500) for d in range(1, 29)]
    c = chart.build(points, "EUR")
    assert c.grouping == "day" and len(c.bars) == 56
    assert c.x_labels[0].label == "03-01" and c.period == "2026-03-01 to 2026-03-28"
    assert all(b.height >= 0 and b.y + b.height <= c.plot_bottom + 0.01 for b in c.bars)
    assert c.y_ticks[0].label == "0.00" and c.y_ticks[-1].position <= c.y_ticks[0].position
    assert "matched 10.00 EUR" in c.bars[0].title


@pytest.mark.parametrize(("days", "grouping", "first"), [(200, "week", "W10"), (800, "month", "2026-03")],
                         ids=["weeks", "months-over-years"])
def test_long_spans_are_grouped(days: int, grouping: str, first: str) -> None:
    points = [(dt.date(2026, 3, 2) + dt.timedelta(days=d), 100, 0) for d in range(0, days, 2)]
    c = chart.build(points, "JPY")
    assert c.grouping == grouping and c.rows[0][0] == first
    assert len(c.x_labels) <= chart.MAX_LABELS
    assert sum(m for _, m, _ in c.rows) == 100 * len(points), "grouping keeps every amount"


def test_an_empty_chart_says_so() -> None:
    assert chart.build([], "EUR").empty


# -- queries: cursors, filters, LIKE -------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [("50%", "%50\\%%"), ("a_b", "%a\\_b%"), ("c:\\x", "%c:\\\\x%")],
                         ids=["percent", "underscore", "backslash"])
def test_search_text_is_literal(text: str, expected: str) -> None:
    assert queries.like(text) == expected


@pytest.mark.parametrize(("sort", "key"), [("date", dt.date(2026, 3, 1)), ("amount", -1250), ("reference", "INV|1")],
                         ids=["date", "amount", "text-with-separator"])
def test_cursors_round_trip(sort: str, key: object) -> None:
    s = queries.TABS["left"].sort(sort)
    assert queries.decode_cursor(queries.encode_cursor(key, 42), s) == (key, 42)


@pytest.mark.parametrize("cursor", ['["x", 1]', "[1]", "not json", '[1, "2"]'],
                         ids=["wrong-type", "short", "garbage", "id-not-int"])
def test_a_bad_cursor_is_refused_with_the_sort_named(cursor: str) -> None:
    with pytest.raises(queries.BadQuery, match="sort by amount"):
        queries.decode_cursor(cursor, queries.TABS["left"].sort("amount"))


def test_filters_check_ranges_and_name_the_tab_sorts() -> None:
    with pytest.raises(queries.BadQuery, match="above the highest"):
        queries.Filters(amount_min=Decimal(5), amount_max=Decimal(1)).check()
    with pytest.raises(queries.BadQuery, match="starts .* after it ends"):
        queries.Filters(date_from=dt.date(2026, 2, 1), date_to=dt.date(2026, 1, 1)).check()
    with pytest.raises(queries.BadQuery, match="one of id, amount, score, delta, rule"):
        queries.TABS["matched"].sort("date")
    assert queries.Filters(q="x", sort="amount", desc=True).as_params() == {"q": "x", "sort": "amount", "dir": "desc"}


# -- upload form ----------------------------------------------------------------------------------

def test_upload_form_options_become_import_options() -> None:
    options, problems = preview.options_from_form(FormData([
        ("opt_format", "csv"), ("opt_delimiter", "semicolon"), ("opt_decimal", ","), ("opt_thousands", " "),
        ("opt_date_format", "%d.%m.%Y"), ("opt_header_row", "2"), ("map_amount", "Betrag"), ("map_reference", "")]))
    assert problems == []
    assert (options.delimiter, options.decimal, options.thousands, options.header_row) == (";", ",", " ", 2)
    assert options.columns.model_dump(exclude_none=True) == {"amount": "Betrag"}


@pytest.mark.parametrize(("fields", "message"), [
    ([("opt_delimiter", ";;")], "delimiter ';;' is not one of"),
    ([("opt_decimal", ","), ("opt_thousands", ",")], "thousands separator"),
    ([("opt_default_currency", "EUX")], "unknown currency"),
], ids=["delimiter", "same-separators", "currency"])
def test_upload_form_problems_name_the_option(fields: list[tuple[str, str]], message: str) -> None:
    _, problems = preview.options_from_form(FormData(fields))
    assert problems and message in " ".join(problems)


def test_preview_of_a_large_file_reads_its_head_at_a_line_end() -> None:
    line = b"2026-03-02,INV-1,1.00,EUR,Acme,memo\n"
    data = b"date,reference,amount,currency,counterparty,description\n" + line * 20_000
    view = preview.build(data, "big.csv", "left", ImportOptions())
    assert view.truncated and view.problems == [] and len(view.records) == preview.PREVIEW_ROWS
    assert view.mapping["amount"] == "amount" and view.rows[0] == (2, ["2026-03-02", "INV-1", "1.00", "EUR", "Acme",
                                                                       "memo"])


def test_preview_problems_carry_the_files_own_line() -> None:
    data = b"date,amount,currency\n2026-03-01,1.00,EUR\n2026-03-02,x,EUR\n"
    view = preview.build(data, "p.csv", "left", ImportOptions())
    assert [(p.line, p.column, p.source) for p in view.problems] == [(3, "amount", "2026-03-02,x,EUR")]


def test_preview_of_an_xlsx_shows_its_sheet(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["Datum", "Betrag", "Währung"])
    ws.append([dt.date(2026, 3, 1), 12.5, "EUR"])
    path = tmp_path / "x.xlsx"
    wb.save(path)
    view = preview.build(path.read_bytes(), "x.xlsx", "left", ImportOptions())
    assert view.format == "xlsx" and view.header == ["Datum", "Betrag", "Währung"]
    assert view.mapping == {"booking_date": "Datum", "amount": "Betrag", "currency": "Währung"}
    assert view.records[0]["amount_minor"] == 1250


# -- sign-in target, static files -----------------------------------------------------------------

@pytest.mark.parametrize(("target", "expected"), [
    ("/ui/reconciliations/3/results?tab=left", "/ui/reconciliations/3/results?tab=left"),
    ("https://evil.example/ui/", "/ui/reconciliations"), ("//evil.example/ui/", "/ui/reconciliations"),
    ("/api/v1/tokens", "/ui/reconciliations"), ("/ui/\\evil", "/ui/reconciliations"), (None, "/ui/reconciliations"),
], ids=["kept", "absolute", "scheme-relative", "outside-ui", "backslash", "none"])
def test_sign_in_returns_only_to_ui_pages(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_static_urls_carry_the_content_hash() -> None:
    assert assets.url("ui.css").startswith("/ui/static/ui.css?v=")
    assert assets.HTMX in assets.ASSETS and assets.AXE in assets.ASSETS
    with pytest.raises(KeyError, match="no static file"):
        assets.url("../settings.py")
