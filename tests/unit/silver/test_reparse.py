"""A landed file parsed again with corrected dialect options (issue 14.4): its silver and
quarantine rows are replaced exactly once, whatever was landed after it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from helpers import HEADER, line, sql, write_csv
from saleslake import api
from saleslake.bronze import land_csv, reparse_csv
from saleslake.retention import apply_retention
from saleslake.silver import process
from saleslake.silver.process import process_csv
from saleslake.sources.csv import CsvOverrides


def export(path: Path, *rows: str) -> Path:
    return write_csv(path, HEADER + "\n" + "\n".join(rows) + "\n")


def comma_line(row_id: str, sales: str) -> str:
    """A line whose every amount reads the same with a decimal comma: ``sales`` such as 1,5."""
    return line(row_id=row_id, sales=f'"{sales}"', discount="0", profit="1").replace(",12.5,High", ",12,High")


def silver_lines(lake) -> list[tuple]:
    return sql(lake, "SELECT line_id, quantity, sales, order_date, landed_seq FROM silver.sales_lines ORDER BY 1")


def quarantined(lake) -> list[tuple]:
    return sql(lake, "SELECT line_id, list_sort(reasons) FROM silver.quarantine ORDER BY 1")


def accounting(counts) -> tuple:
    assert counts.balanced
    return counts.rows_read, counts.rows_valid, counts.rows_quarantined, counts.rows_duplicate


def test_a_wrong_decimal_is_corrected_by_a_reparse_exactly_once(tmp_path, lake, settings):
    f = export(tmp_path / "eu" / "d1.csv", line(row_id="1"), line(row_id="2", sales="25.25"), line(row_id="3"))
    assert land_csv(lake, [f], overrides=CsvOverrides(decimal=",")).landed
    assert accounting(process_csv(lake, settings)) == (3, 0, 3, 0)  # every amount invalid
    # landing it again with the right option changes nothing (content-addressed)
    assert land_csv(lake, [f], overrides=CsvOverrides(decimal=".")).already_landed == [str(f)]

    result = reparse_csv(lake, [f], overrides=CsvOverrides(decimal="."))
    assert [r["replaces_seq"] for r in result.reparsed] == [1] and not result.errors
    assert accounting(process_csv(lake, settings)) == (3, 3, 0, 0)
    assert quarantined(lake) == []
    assert [(r[0], r[2], r[4]) for r in silver_lines(lake)] == [
        ("1", Decimal("100.5000"), 1),  # the original landing's sequence: its place among versions
        ("2", Decimal("25.2500"), 1),
        ("3", Decimal("100.5000"), 1),
    ]
    # the same reparse again is a no-op, and so is the run after it
    again = reparse_csv(lake, [f], overrides=CsvOverrides(decimal="."))
    assert again.reparsed == [] and again.already_landed == [str(f)]
    assert accounting(process_csv(lake, settings)) == (0, 0, 0, 0)
    assert len(silver_lines(lake)) == 3 and quarantined(lake) == []


def test_a_reparse_that_validates_fewer_rows_leaves_no_stale_keys(tmp_path, lake, settings):
    rows = [
        line(row_id="1", order_date="05-01-2021", ship_date="06-01-2021"),  # valid either way round
        line(row_id="2", order_date="15-01-2021", ship_date="17-01-2021"),  # day-first only
        line(row_id="3", order_date="16-01-2021", ship_date="17-01-2021"),
    ]
    f = export(tmp_path / "eu" / "d1.csv", *rows)
    land_csv(lake, [f])
    assert accounting(process_csv(lake, settings)) == (3, 3, 0, 0)
    # parsed month-first: rows 2 and 3 become invalid and must leave silver
    reparse_csv(lake, [f], overrides=CsvOverrides(date_format="%m-%d-%Y"))
    assert accounting(process_csv(lake, settings)) == (3, 1, 2, 0)
    assert [(r[0], str(r[3])) for r in silver_lines(lake)] == [("1", "2021-05-01")]
    assert quarantined(lake) == [
        ("2", ["invalid_date:order_date", "invalid_date:ship_date"]),
        ("3", ["invalid_date:order_date", "invalid_date:ship_date"]),
    ]
    # and back: the quarantine rows of that parse go, every line is back
    reparse_csv(lake, [f], overrides=CsvOverrides(date_format="%d-%m-%Y"))
    assert accounting(process_csv(lake, settings)) == (3, 3, 0, 0)
    assert [(r[0], str(r[3])) for r in silver_lines(lake)] == [
        ("1", "2021-01-05"),
        ("2", "2021-01-15"),
        ("3", "2021-01-16"),
    ]
    assert quarantined(lake) == []


def test_a_correction_landed_later_under_another_name_still_wins(tmp_path, lake, settings):
    first = export(tmp_path / "eu" / "d1.csv", line(row_id="1"), line(row_id="2"), comma_line("3", "1,5"))
    land_csv(lake, [first], overrides=CsvOverrides(decimal=","))  # wrong: 100.50 is invalid, 1,5 is 1.5
    process_csv(lake, settings)
    assert [r[0] for r in silver_lines(lake)] == ["3"]
    # a later export corrects lines 2 and 3 (another name, other bytes)
    fix = export(tmp_path / "eu" / "d1-fixed.csv", line(row_id="2", quantity="5"), line(row_id="3", quantity="7"))
    land_csv(lake, [fix])
    process_csv(lake, settings)
    reparse_csv(lake, [first], overrides=CsvOverrides(decimal="."))
    counts = process_csv(lake, settings)
    # line 3 parsed as text "1,5" with a decimal point is invalid now: quarantined, while the
    # later correction of it stays in silver; line 2's correction wins over the reparse
    assert accounting(counts) == (3, 2, 1, 0)
    assert [(r[0], r[1], r[4]) for r in silver_lines(lake)] == [("1", 2, 1), ("2", 5, 2), ("3", 7, 2)]
    assert quarantined(lake) == [("3", ["invalid_number:sales"])]


def test_a_reparse_before_the_first_run_parses_the_file_once(tmp_path, lake, settings):
    f = export(tmp_path / "eu" / "d1.csv", line(row_id="1"), line(row_id="2"))
    land_csv(lake, [f], overrides=CsvOverrides(decimal=","))
    reparse_csv(lake, [f], overrides=CsvOverrides(decimal="."))
    assert accounting(process_csv(lake, settings)) == (2, 2, 0, 0)  # the superseded parse is never read
    assert quarantined(lake) == [] and len(silver_lines(lake)) == 2


def test_retention_keeps_the_object_a_pending_reparse_reads(tmp_path, lake, settings):
    f = export(tmp_path / "eu" / "d1.csv", line(row_id="1"), line(row_id="2"))
    land_csv(lake, [f], overrides=CsvOverrides(decimal=","))
    process_csv(lake, settings)
    reparse_csv(lake, [f], overrides=CsvOverrides(decimal="."))  # the same day: the same object
    now = settings.model_copy(update={"bronze": settings.bronze.model_copy(update={"retention_days": 0})})
    assert apply_retention(lake, now).files_deleted == 0  # the first landing is processed, the reparse not
    assert accounting(process_csv(lake, settings)) == (2, 2, 0, 0)
    assert apply_retention(lake, now).files_deleted == 1


def test_reparse_options_source_and_errors(tmp_path, lake, settings):
    f = export(tmp_path / "eu" / "d1.csv", line(row_id="1"))
    never = export(tmp_path / "eu" / "d2.csv", line(row_id="2"))
    land_csv(lake, [f], currency="EUR")
    process_csv(lake, settings)
    result = reparse_csv(lake, [f, never], source="germany")
    assert [str(e).split(":")[0] for e in result.errors] == [str(never)]
    assert "land it without --reparse" in str(result.errors[0])
    assert [(r["source"], r["currency"]) for r in result.reparsed] == [("germany", "EUR")]
    process_csv(lake, settings)
    # the rows move to the new source: none stays under the old one
    assert sql(lake, "SELECT source_system, count(*) FROM silver.sales_lines GROUP BY 1") == [("csv:germany", 1)]


def fingerprint(lake) -> tuple:
    return (
        sql(
            lake, "SELECT line_key, row_hash, source_position, landed_seq, batch_id FROM silver.sales_lines ORDER BY 1"
        ),
        sql(
            lake,
            "SELECT quarantine_key, reasons, source_position, landed_seq, batch_id FROM silver.quarantine ORDER BY 1",
        ),
    )


def wrong_then_reparsed(tmp_path: Path, lake) -> None:
    f = export(tmp_path / "eu" / "d1.csv", line(row_id="1"), comma_line("2", "2,5"))
    land_csv(lake, [f], overrides=CsvOverrides(decimal=","))
    process_csv(lake, api.settings(home=lake.home))
    reparse_csv(lake, [f], overrides=CsvOverrides(decimal="."))


@pytest.mark.parametrize("crash_at", ["_write_quarantine", "write_upserts"])
def test_a_crash_in_the_reparse_run_is_completed_by_a_rerun(tmp_path, lake, settings, monkeypatch, crash_at):
    """Killed after the manifest row and before any silver commit, or between the
    quarantine and the lines commit: the rerun gives what an uninterrupted run gives."""
    from saleslake.lake import Lake

    clean = Lake(tmp_path / "clean")
    wrong_then_reparsed(tmp_path / "a", clean)
    assert accounting(process_csv(clean, settings)) == (2, 1, 1, 0)

    wrong_then_reparsed(tmp_path / "b", lake)

    def crash(*args, **kwargs):
        raise RuntimeError(f"killed in {crash_at}")

    monkeypatch.setattr(process, crash_at, crash)
    with pytest.raises(RuntimeError):
        process_csv(lake, settings)
    monkeypatch.undo()
    counts = process_csv(lake, settings)
    assert counts.balanced and counts.rows_read > 0
    assert fingerprint(lake) == fingerprint(clean)
    assert [(r[0], r[2]) for r in silver_lines(lake)] == [("1", Decimal("100.5000"))]
    assert quarantined(lake) == [("2", ["invalid_number:sales"])]
    assert accounting(process_csv(lake, settings)) == (0, 0, 0, 0)


@pytest.mark.parametrize("killed", [False, True])
def test_the_quality_gate_forgets_the_rows_a_reparse_replaced(tmp_path, lake, settings, monkeypatch, killed):
    f = export(tmp_path / "eu" / "d1.csv", *[line(row_id=str(i)) for i in range(1, 11)])
    api.ingest_csv([f], decimal=",", settings=settings)
    api.run("silver", settings=settings)
    with pytest.raises(api.QualityGateError, match="10 of 10 rows"):
        api.quality_gate(settings=settings)
    api.ingest_csv([f], decimal=".", reparse=True, settings=settings)
    if killed:  # the run that replaces the rows dies between its two commits: the rerun's gate is the same

        def crash(*args, **kwargs):
            raise RuntimeError("killed")

        monkeypatch.setattr(process, "write_upserts", crash)
        with pytest.raises(RuntimeError):
            api.run("silver", settings=settings)
        monkeypatch.undo()
    api.run("silver", settings=settings)
    assert api.quality_gate(settings=settings)["share"] == 0.0


def test_the_gate_keeps_counting_what_was_published_before_the_reparse(tmp_path, lake, settings):
    """Replaced rows leave the gate's share only when the run that counted them is in the
    window (since the last gold): otherwise they were never in it."""
    from saleslake.runs import Ledger, StageRecord, utcnow

    bad = [line(row_id=str(i), sales="") for i in (1, 2)]
    f = export(tmp_path / "eu" / "d1.csv", *bad, *[line(row_id=str(i)) for i in range(3, 11)])
    api.ingest_csv([f], settings=settings)
    api.run("silver", settings=settings)
    Ledger(lake, "published", "run").record(StageRecord("gold", "succeeded", utcnow(), utcnow()))  # gold of that
    g = export(tmp_path / "eu" / "d2.csv", *[line(row_id=f"g{i}", sales="" if i < 5 else "1") for i in range(10)])
    api.ingest_csv([g], settings=settings)
    api.ingest_csv([f], source="eu2", reparse=True, settings=settings)  # 10 rows again, the same 2 bad
    api.run("silver", settings=settings)
    # this window: d2 (10 read, 5 quarantined) and the reparse (10 read, 2 quarantined)
    assert api.quality_gate(max_quarantine_share=1, settings=settings)["share"] == 7 / 20


@pytest.mark.parametrize("one_run", [False, True], ids=["runs-between", "one-run"])
def test_a_version_the_wrong_parse_replaced_is_back_when_the_right_parse_rejects_the_line(
    tmp_path, lake, settings, one_run
):
    """Line 1 lands valid; a later file corrects it, but lands with the wrong --decimal, which
    happens to read its amount (1,5 is 1.5); its right parse rejects that amount. As if the
    later file had landed right once: its line 1 is quarantined and the earlier version,
    which the wrong parse had replaced, is line 1 in silver (it was lost from silver).
    ``one_run``: both files in one run, so the earlier version never was in silver."""
    first = export(tmp_path / "eu" / "d0.csv", comma_line("1", "100"), comma_line("2", "200"))
    land_csv(lake, [first])
    if not one_run:
        process_csv(lake, settings)
    later = export(tmp_path / "eu" / "d1.csv", comma_line("1", "1,5"))
    land_csv(lake, [later], overrides=CsvOverrides(decimal=","))  # wrong
    assert accounting(process_csv(lake, settings)) == ((1, 1, 0, 0) if not one_run else (3, 3, 0, 0))
    assert [(r[0], r[2]) for r in silver_lines(lake)] == [("1", Decimal("1.5000")), ("2", Decimal("200.0000"))]

    reparse_csv(lake, [later], overrides=CsvOverrides(decimal="."))
    assert accounting(process_csv(lake, settings)) == (1, 0, 1, 0)
    assert quarantined(lake) == [("1", ["invalid_number:sales"])]
    assert [(r[0], r[2], r[4]) for r in silver_lines(lake)] == [
        ("1", Decimal("100.0000"), 1),
        ("2", Decimal("200.0000"), 1),
    ]
