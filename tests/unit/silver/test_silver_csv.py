"""CSV objects through silver: typing, every reason code, dedup, exactly-once positions."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from helpers import HEADER, line, long_first_row_export, sql, write_csv
from saleslake import api
from saleslake.bronze import land_csv
from saleslake.errors import InputFileError
from saleslake.silver.process import process_csv
from saleslake.sources.csv import CsvOverrides


def land_and_process(lake, settings, *paths: Path, **kw):
    result = land_csv(lake, list(paths), **kw)
    assert not result.errors, result.errors
    return process_csv(lake, settings)


def test_valid_rows_are_typed_and_enriched(tmp_path, lake, settings):
    f = write_csv(
        tmp_path / "eu" / "d1.csv",
        HEADER + "\n" + line() + "\n" + line(row_id="2", sales="25.00", discount="0", quantity="1") + "\n",
    )
    counts = land_and_process(lake, settings, f)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined, counts.rows_duplicate) == (2, 2, 0, 0)
    rows = sql(
        lake,
        "SELECT line_id, sales, quantity, unit_price, discount, profit, order_date, source_system, product_name, "
        "order_month, source_position FROM silver.sales_lines ORDER BY line_id",
    )
    assert rows[0][:6] == ("1", Decimal("100.5000"), 2, Decimal("50.2500"), Decimal("0.1000"), Decimal("10.5000"))
    assert str(rows[0][6]) == "2021-01-15" and rows[0][7] == "csv:eu" and rows[0][8] == "Widget, large"
    assert rows[0][9] == "2021-01" and rows[0][10] == "record:1" and rows[1][10] == "record:2"


def test_every_reason_code_and_all_reasons_per_row(tmp_path, lake, settings):
    bad = [
        line(row_id="1", order_id=""),  # missing_required:order_id
        line(row_id="", order_id="O-2"),  # missing_required:line_id
        line(row_id="3", order_date=""),  # missing_required:order_date
        line(row_id="4", customer=""),  # missing_required:customer_id
        line(row_id="5", product=""),  # missing_required:product_id
        line(row_id="6", quantity=""),  # missing_required:quantity
        line(row_id="7", sales=""),  # missing_required:sales
        line(row_id="8", order_date="31-02-2021"),  # invalid_date:order_date
        line(row_id="9", ship_date="soon"),  # invalid_date:ship_date
        line(row_id="10", sales="12.3x"),  # invalid_number:sales
        line(row_id="11", quantity="two"),  # invalid_number:quantity
        line(row_id="12", quantity="0"),  # non_positive_quantity
        line(row_id="13", sales="-5"),  # non_positive_sales
        line(row_id="14", discount="1.5"),  # discount_out_of_range
        line(row_id="15", ship_date="10-01-2021"),  # ship_before_order
        line(row_id="16", quantity="-1", sales="0", discount="-0.1"),  # three reasons
        line(row_id="17", profit="n/a"),  # invalid_number:profit
    ]
    good = line(row_id="18")
    f = write_csv(tmp_path / "eu" / "d1.csv", HEADER + "\n" + "\n".join([*bad, good]) + "\n")
    counts = land_and_process(lake, settings, f)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (18, 1, 17)
    got = dict(sql(lake, "SELECT source_position, list_sort(reasons) FROM silver.quarantine"))
    assert got["record:1"] == ["missing_required:order_id"]
    assert got["record:2"] == ["missing_required:line_id"]
    assert got["record:3"] == ["missing_required:order_date"]
    assert got["record:4"] == ["missing_required:customer_id"]
    assert got["record:5"] == ["missing_required:product_id"]
    assert got["record:6"] == ["missing_required:quantity"]
    assert got["record:7"] == ["missing_required:sales"]
    assert got["record:8"] == ["invalid_date:order_date"]
    assert got["record:9"] == ["invalid_date:ship_date"]
    assert got["record:10"] == ["invalid_number:sales"]
    assert got["record:11"] == ["invalid_number:quantity"]
    assert got["record:12"] == ["non_positive_quantity"]
    assert got["record:13"] == ["non_positive_sales"]
    assert got["record:14"] == ["discount_out_of_range"]
    assert got["record:15"] == ["ship_before_order"]
    assert got["record:16"] == ["discount_out_of_range", "non_positive_quantity", "non_positive_sales"]
    assert got["record:17"] == ["invalid_number:profit"]
    raw = sql(
        lake,
        "SELECT raw['sales'], raw['order_id'], bronze_uri FROM silver.quarantine WHERE source_position = 'record:10'",
    )
    assert raw[0][0] == "12.3x" and raw[0][1] == "O-1" and raw[0][2].startswith("bronze/csv/")


def test_decimal_comma_values(tmp_path, lake, settings):
    header = HEADER.replace(",", ";")

    def row(row_id, sales):
        return ";".join(
            [
                row_id,
                "O-1",
                "15/01/2021",
                "17/01/2021",
                "First Class",
                "C-1",
                "Ann",
                "Consumer",
                "Paris",
                "IdF",
                "France",
                "",
                "EU",
                "Central",
                "P-1",
                "Office",
                "Paper",
                '"Paper; A4"',
                sales,
                "2",
                "0,2",
                "-1,5",
                "3,25",
                "Low",
            ]
        )

    f = write_csv(tmp_path / "fr" / "d.csv", header + "\n" + row("1", "1234,56") + "\n" + row("2", "1.234,56") + "\n")
    counts = land_and_process(lake, settings, f)
    assert (counts.rows_valid, counts.rows_quarantined) == (1, 1)
    assert sql(lake, "SELECT sales, discount, profit, shipping_cost FROM silver.sales_lines") == [
        (Decimal("1234.5600"), Decimal("0.2000"), Decimal("-1.5000"), Decimal("3.2500"))
    ]
    assert sql(lake, "SELECT reasons FROM silver.quarantine") == [(["invalid_number:sales"],)]


def test_a_quantity_with_a_fraction_is_invalid_not_rounded(tmp_path, lake, settings):
    # found by tests/integration/test_csv_fuzz.py: TRY_CAST('0.5' AS BIGINT) is 1, '2.5' is 3
    rows = [line(row_id=str(i), quantity=q) for i, q in enumerate(["2.5", "0.5", "-0.4", "2.0", "3"], start=1)]
    point = write_csv(tmp_path / "eu" / "d.csv", HEADER + "\n" + "\n".join(rows) + "\n")

    def semicolon_row(row_id: str, quantity: str) -> str:  # decimal comma: '#' marks it until the split
        text = line(row_id=row_id, quantity=quantity, name="Widget", sales="100#50", discount="0#1", profit="10#5")
        return text.replace("12.5", "12#5").replace(",", ";").replace("#", ",")

    comma = write_csv(
        tmp_path / "fr" / "d.csv",
        HEADER.replace(",", ";") + "\n" + semicolon_row("1", "2#5") + "\n" + semicolon_row("2", "4") + "\n",
    )
    counts = land_and_process(lake, settings, point, comma)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (7, 3, 4)
    assert sorted(sql(lake, "SELECT source_system, line_id, reasons FROM silver.quarantine")) == [
        ("csv:eu", "1", ["invalid_number:quantity"]),
        ("csv:eu", "2", ["invalid_number:quantity"]),
        ("csv:eu", "3", ["invalid_number:quantity"]),
        ("csv:fr", "1", ["invalid_number:quantity"]),
    ]
    assert sql(lake, "SELECT source_system, line_id, quantity FROM silver.sales_lines ORDER BY ALL") == [
        ("csv:eu", "4", 2),
        ("csv:eu", "5", 3),
        ("csv:fr", "2", 4),
    ]


def test_malformed_records_are_quarantined_with_their_line(tmp_path, lake, settings):
    text = (
        HEADER
        + "\n"
        + line()
        + "\n"
        + line(row_id="2")
        + ",extra,fields\n"
        + line(row_id="3")
        + "\n"
        + "4,O-9,15-01-2021,17-0"
    )
    f = write_csv(tmp_path / "eu" / "d.csv", text)
    counts = land_and_process(lake, settings, f)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (4, 2, 2)
    rows = sorted(sql(lake, "SELECT reasons[1], raw_line FROM silver.quarantine"))
    assert rows[0][0] == "malformed_row:missing_columns" and rows[0][1] == "4,O-9,15-01-2021,17-0"
    assert rows[1][0] == "malformed_row:too_many_columns" and rows[1][1].endswith("extra,fields")


def test_mixed_line_ends_are_read_as_lf(tmp_path, lake, settings):
    # found while building tests/integration/test_csv_fuzz.py: DuckDB's reader detects one
    # line end per file; on a file whose records end in LF and CR LF, or in a lone CR, it
    # stopped the whole scan ("state machine reached an invalid state": a traceback from
    # `run`, and the file blocked every later run), or, after a closing quote, joined two
    # records into one malformed row
    one, two, three = line(row_id="1"), line(row_id="2"), line(row_id="3")
    lf_then_crlf = write_csv(tmp_path / "eu" / "a.csv", HEADER + "\n" + one + "\n" + two + "\n" + three + "\r\n")
    crlf_then_lf = write_csv(tmp_path / "us" / "b.csv", HEADER + "\r\n" + one + "\n" + two + "\r\n" + three + "\r\n")
    lone_cr = write_csv(tmp_path / "ca" / "c.csv", HEADER + "\n" + one + "\r" + two + "\r\r\n" + three + ",x\n")
    quoted_end = line(row_id="1").replace(",High", ',"High"')
    after_quote = write_csv(tmp_path / "mx" / "d.csv", HEADER + "\n" + quoted_end + "\r" + two + "\n")
    # a CR LF file with CR LF inside a quoted field: uniform, read as it is
    crlf = write_csv(tmp_path / "uk" / "e.csv", HEADER + "\r\n" + line(row_id="1", name="two\r\nlines") + "\r\n")
    counts = land_and_process(lake, settings, lf_then_crlf, crlf_then_lf, lone_cr, after_quote, crlf)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (12, 11, 1)
    assert sql(lake, "SELECT source_system, count(*) FROM silver.sales_lines GROUP BY ALL ORDER BY ALL") == [
        ("csv:ca", 2),
        ("csv:eu", 3),
        ("csv:mx", 2),
        ("csv:uk", 1),
        ("csv:us", 3),
    ]
    assert sql(lake, "SELECT product_name FROM silver.sales_lines WHERE source_system = 'csv:uk'") == [
        ("two\r\nlines",)
    ]
    # the lone CR ends a record; CR CR LF ends one and leaves an empty line
    assert sql(lake, "SELECT source_system, source_position, reasons FROM silver.quarantine") == [
        ("csv:ca", "line:5", ["malformed_row:too_many_columns"])
    ]


def test_a_latin1_file_with_bytes_0x80_to_0x9f_is_read(tmp_path, lake, settings):
    # found by tests/integration/test_csv_fuzz.py: landed with --encoding latin-1 (what a user
    # tries when told "not valid UTF-8"), a cp1252 dash (0x96) made DuckDB's own latin-1
    # reader fail the whole scan ("File is not latin-1 encoded"): run crashed, every time
    text = HEADER + "\n" + line(row_id="1", name="Tray \x96 large") + "\n" + line(row_id="2", name="café") + "\n"
    f = write_csv(tmp_path / "eu" / "d.csv", text, encoding="latin-1")
    counts = land_and_process(lake, settings, f, overrides=CsvOverrides(encoding="latin-1"))
    assert (counts.rows_read, counts.rows_valid) == (2, 2)
    assert sql(lake, "SELECT product_name FROM silver.sales_lines ORDER BY line_id") == [
        ("Tray \x96 large",),
        ("café",),
    ]


def test_a_cp1252_file_behind_a_utf8_bom_lands_with_encoding(tmp_path, lake, settings):
    """A UTF-8 byte-order mark before cp1252 text (found by the CSV fuzz test): refused
    as not UTF-8 like any file whose head is not UTF-8, then landed with --encoding cp1252
    as the line asks; the mark is no part of the header, and every record is read."""
    text = HEADER + "\n" + line(row_id="1", name="Renée \u2013 chair") + "\n" + line(row_id="2") + "\n"
    f = write_csv(tmp_path / "eu" / "d.csv", text, encoding="cp1252", bom=True)
    refused = land_csv(lake, [f])
    assert len(refused.errors) == 1 and "not valid UTF-8" in str(refused.errors[0]) and not refused.landed
    counts = land_and_process(lake, settings, f, overrides=CsvOverrides(encoding="cp1252"))
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (2, 2, 0)
    assert sql(lake, "SELECT product_name FROM silver.sales_lines ORDER BY line_id") == [
        ("Renée \u2013 chair",),
        ("Widget, large",),
    ]


def test_a_utf16_file_with_a_lone_surrogate_is_read(tmp_path, lake, settings):
    # DuckDB's own UTF-16 reader failed the whole scan on it ("File is not utf-16 encoded"):
    # run crashed on such a file every time; transcoded in Python, it becomes U+FFFD
    head = ("\ufeff" + HEADER + "\n" + line(row_id="1", name="Tray") + "\n").encode("utf-16-le")
    bad = (line(row_id="2", name="Tr@ay") + "\n").encode("utf-16-le").replace("@".encode("utf-16-le"), b"\x00\xd8")
    f = tmp_path / "eu" / "d.csv"
    f.parent.mkdir()
    f.write_bytes(head + bad)
    counts = land_and_process(lake, settings, f, overrides=CsvOverrides(encoding="utf-16"))
    assert (counts.rows_read, counts.rows_valid) == (2, 2)
    assert sql(lake, "SELECT product_name FROM silver.sales_lines ORDER BY line_id") == [("Tray",), ("Tr\ufffday",)]


def test_duplicates_and_corrections_latest_landed_wins(tmp_path, lake, settings):
    day1 = write_csv(tmp_path / "eu" / "d1.csv", HEADER + "\n" + line(row_id="1") + "\n" + line(row_id="2") + "\n")
    counts = land_and_process(lake, settings, day1)
    assert counts.rows_valid == 2
    # day 2 repeats line 1 exactly, corrects line 2, adds line 3, and repeats line 3 in the same file
    day2 = write_csv(
        tmp_path / "eu" / "d2.csv",
        HEADER
        + "\n"
        + "\n".join(
            [line(row_id="1"), line(row_id="2", quantity="3", sales="150.75"), line(row_id="3"), line(row_id="3")]
        )
        + "\n",
    )
    counts = land_and_process(lake, settings, day2)
    assert (counts.rows_read, counts.rows_valid, counts.rows_duplicate, counts.rows_corrected) == (4, 2, 2, 1)
    assert counts.balanced
    assert sql(lake, "SELECT line_id, quantity, sales FROM silver.sales_lines ORDER BY line_id") == [
        ("1", 2, Decimal("100.5000")),
        ("2", 3, Decimal("150.7500")),
        ("3", 2, Decimal("100.5000")),
    ]


def test_correction_moving_to_another_month_leaves_one_version(tmp_path, lake, settings):
    land_and_process(lake, settings, write_csv(tmp_path / "eu" / "d1.csv", HEADER + "\n" + line(row_id="1") + "\n"))
    fix = line(row_id="1", order_date="15-03-2021", ship_date="16-03-2021")
    land_and_process(lake, settings, write_csv(tmp_path / "eu" / "d2.csv", HEADER + "\n" + fix + "\n"))
    assert sql(lake, "SELECT count(*), max(order_month) FROM silver.sales_lines") == [(1, "2021-03")]


def test_reprocessing_and_relanding_change_nothing(tmp_path, lake, settings):
    f = write_csv(tmp_path / "eu" / "d1.csv", HEADER + "\n" + line() + "\n" + line(row_id="2", sales="") + "\n")
    land_and_process(lake, settings, f)
    before = sql(lake, "SELECT count(*), sum(sales) FROM silver.sales_lines") + sql(
        lake, "SELECT count(*) FROM silver.quarantine"
    )
    again = land_csv(lake, [f])
    assert again.landed == [] and again.already_landed == [str(f)]
    assert process_csv(lake, settings).rows_read == 0
    after = sql(lake, "SELECT count(*), sum(sales) FROM silver.sales_lines") + sql(
        lake, "SELECT count(*) FROM silver.quarantine"
    )
    assert before == after


def test_tax_and_fraud_follow_config(tmp_path, monkeypatch, lake):
    monkeypatch.setenv("SALESLAKE_TAX__FLAT_RATE", "0.085")
    monkeypatch.setenv("SALESLAKE_FRAUD__AMOUNT_THRESHOLD", "1000")
    settings = api.settings(home=lake.home)
    rows = [
        line(row_id="1", sales="25.00", discount="0"),
        line(row_id="2", sales="1000", discount="0"),
        line(row_id="3", sales="1000.01", discount="0"),
    ]
    land_and_process(lake, settings, write_csv(tmp_path / "eu" / "d.csv", HEADER + "\n" + "\n".join(rows) + "\n"))
    got = sql(
        lake,
        "SELECT line_id, tax_rate, tax_amount, is_suspected_fraud, fraud_reasons FROM silver.sales_lines ORDER BY line_id",
    )
    assert got[0][:3] == ("1", Decimal("0.0850"), Decimal("2.1300"))  # 25.00 at 8.5 % is 2.125 -> 2.13 half-up
    assert got[1][3] is False  # exactly at the threshold: not flagged
    assert got[2][3] is True and got[2][4] == ["amount_above_threshold"]


def test_positions_follow_each_files_record_order_across_a_parallel_scan(tmp_path, lake, settings):
    paths = []
    for f in range(12):
        rows = [line(row_id=f"{f}-{i}", order_id=f"O-{f}-{i}") for i in range(1, 4001)]
        if f == 5:
            rows.insert(10, "broken,line")  # a reject must not shift the positions after it
        paths.append(write_csv(tmp_path / "eu" / f"d{f:02d}.csv", HEADER + "\n" + "\n".join(rows) + "\n"))
    counts = land_and_process(lake, settings, *paths)
    assert counts.rows_valid == 48_000 and counts.rows_quarantined == 1
    wrong = sql(
        lake,
        "SELECT count(*) FROM silver.sales_lines "
        "WHERE split_part(line_id, '-', 2) <> split_part(source_position, ':', 2)",
    )
    assert wrong == [(0,)]


def test_a_first_row_longer_than_the_sniffers_look_reaches_silver(tmp_path, lake, settings):
    counts = land_and_process(lake, settings, long_first_row_export(tmp_path / "eu" / "d.csv"))
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined, counts.rows_duplicate) == (49, 49, 0, 0)
    assert sql(lake, "SELECT max(length(product_name)) FROM silver.sales_lines") == [(40_000,)]


def test_records_over_the_size_limit_are_quarantined_never_dropped(tmp_path, lake, settings):
    """A 35 MB record vanished (DuckDB's parallel scan drops a record longer than its
    32 MB buffer), a quoted one was reported with another record's line, a 20 MB one over
    200,000 lines became 258,066 rejects."""
    records = [line(row_id=str(i), order_id=f"O-{i}") for i in range(1, 51)]
    records[0] = line(row_id="1", order_id="O-1", segment="S" * 35_000_000)  # unquoted, before any sample row
    records[24] = line(row_id="25", order_id="O-25", name="N" * 35_000_000)  # quoted
    records[39] = line(row_id="40", order_id="O-40", name=("m" * 99 + "\n") * 200_000)  # quoted line ends
    f = write_csv(tmp_path / "eu" / "d.csv", HEADER + "\n" + "\n".join(records) + "\n")
    counts = land_and_process(lake, settings, f)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined, counts.rows_duplicate) == (50, 47, 3, 0)
    got = sql(
        lake,
        "SELECT source_position, reasons, raw['raw_line_bytes'], length(raw_line), left(raw_line, 200) "
        "FROM silver.quarantine ORDER BY source_position",
    )
    assert got == [
        (f"line:{n + 1}", ["malformed_row:oversized_record"], str(len(records[n - 1])), 10_000, records[n - 1][:200])
        for n in (1, 25, 40)
    ]
    valid = sql(lake, "SELECT list_sort(list(CAST(line_id AS INT))) FROM silver.sales_lines")[0][0]
    assert valid == [n for n in range(1, 51) if n not in (1, 25, 40)]


def test_the_record_size_limit_is_a_setting(tmp_path, lake, monkeypatch):
    monkeypatch.setenv("SALESLAKE_CSV__MAX_RECORD_BYTES", "4096")
    settings = api.settings(home=lake.home)
    records = [
        line(row_id="1", name="a" * 3_000),
        line(row_id="2", name="b" * 10_000),  # one line over the limit
        line(row_id="3", name=("c" * 9 + "\n") * 1_000),  # short lines, one record over the limit
        line(row_id="4"),
    ]
    # past the limit in size, so the file is searched for long records
    f = write_csv(tmp_path / "eu" / "d.csv", HEADER + "\n" + "\n".join(records) + "\n")
    counts = land_and_process(lake, settings, f)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (4, 2, 2)
    assert sql(lake, "SELECT source_position, reasons, raw['raw_line_bytes'] FROM silver.quarantine ORDER BY 1") == [
        ("line:3", ["malformed_row:oversized_record"], str(len(records[1]))),
        ("line:4", ["malformed_row:oversized_record"], str(len(records[2]))),
    ]


def test_a_record_too_long_for_duckdbs_memory_stops_the_run_with_one_line(tmp_path, lake, settings):
    records = [line(row_id=str(i)) for i in range(1, 6)]
    records[2] = line(row_id="3", name="N" * 35_000_000)
    f = write_csv(tmp_path / "eu" / "d.csv", HEADER + "\n" + "\n".join(records) + "\n")
    assert not land_csv(lake, [f]).errors
    tight = settings.model_copy(update={"duckdb_memory_limit": "20MB"})
    with pytest.raises(InputFileError) as info:
        process_csv(lake, tight)
    message = str(info.value)
    assert "a record of 35,000,149 bytes" in message and "SALESLAKE_DUCKDB_MEMORY_LIMIT" in message
    assert str(f) in message and "\n" not in message
    assert sql(lake, "SELECT count(*) FROM silver.quarantine") == [(0,)]  # nothing committed
    counts = process_csv(lake, settings)  # with the default limit the record is quarantined
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (5, 4, 1)


def test_dates_outside_the_plausible_window_are_invalid(tmp_path, lake, settings):
    """Issue 14.3: 31-12-9999 passed silver and failed gold on every later run; 01-01-0000
    was taken as 1 BC. Dates outside quality.min_date … max_date are invalid_date."""
    rows = [
        line(row_id="1", order_date="31-12-9999", ship_date="31-12-9999"),
        line(row_id="2", order_date="01-01-0000", ship_date="02-01-0000"),
        line(row_id="3", order_date="31-12-1899", ship_date="01-01-1900"),
        line(row_id="4", order_date="31-12-2100", ship_date="01-01-2101"),
        line(row_id="5", order_date="01-01-1900", ship_date="31-12-2100"),  # both bounds: valid
        line(row_id="6"),
    ]
    f = write_csv(tmp_path / "eu" / "d1.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    counts = land_and_process(lake, settings, f)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (6, 2, 4)
    assert counts.balanced
    got = dict(sql(lake, "SELECT line_id, list_sort(reasons) FROM silver.quarantine"))
    assert got == {
        "1": ["invalid_date:order_date", "invalid_date:ship_date"],
        "2": ["invalid_date:order_date", "invalid_date:ship_date"],
        "3": ["invalid_date:order_date"],
        "4": ["invalid_date:ship_date"],
    }
    assert sql(
        lake, "SELECT line_id, min(order_date), max(ship_date) FROM silver.sales_lines GROUP BY 1 ORDER BY 1"
    ) == [
        ("5", date(1900, 1, 1), date(2100, 12, 31)),
        ("6", date(2021, 1, 15), date(2021, 1, 17)),
    ]


def test_the_date_window_follows_config(tmp_path, monkeypatch, lake):
    monkeypatch.setenv("SALESLAKE_QUALITY__MIN_DATE", "2021-01-16")
    settings = api.settings(home=lake.home)
    rows = [line(row_id="1"), line(row_id="2", order_date="16-01-2021")]
    land_and_process(lake, settings, write_csv(tmp_path / "eu" / "d.csv", HEADER + "\n" + "\n".join(rows) + "\n"))
    assert sql(lake, "SELECT line_id, reasons FROM silver.quarantine") == [("1", ["invalid_date:order_date"])]
    assert sql(lake, "SELECT line_id FROM silver.sales_lines") == [("2",)]


def test_values_at_the_limits_of_their_types(tmp_path, lake, settings):
    """Values at the limits of their types neither crash silver (an overflow in the unit
    price or the tax) nor pass when gold or the warehouse could not hold them."""
    rows = [
        line(row_id="1", sales="99999999999999.9999", discount="1", quantity="1"),
        line(row_id="2", sales="99999999999999.9999", discount="0.5", quantity="1000000000"),
        line(row_id="3", quantity="1000000001"),  # above quality.max_quantity
        line(row_id="4", quantity="9223372036854775807"),
        line(row_id="5", sales="99999999999999.9999", discount="-99999.9999"),
        line(row_id="6", sales="100000000000000"),  # beyond DECIMAL(18,4)
    ]
    settings = settings.model_copy(update={"tax": settings.tax.model_copy(update={"flat_rate": Decimal("0.5")})})
    f = write_csv(tmp_path / "eu" / "d.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    counts = land_and_process(lake, settings, f)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (6, 2, 4)
    assert dict(sql(lake, "SELECT line_id, list_sort(reasons) FROM silver.quarantine")) == {
        "3": ["quantity_out_of_range"],
        "4": ["quantity_out_of_range"],
        "5": ["discount_out_of_range"],
        "6": ["invalid_number:sales"],
    }
    assert sql(lake, "SELECT line_id, unit_price, tax_amount FROM silver.sales_lines ORDER BY 1") == [
        ("1", Decimal("99999999999999.9999"), Decimal("0.0000")),
        ("2", Decimal("100000.0000"), Decimal("25000000000000.0000")),
    ]


def test_text_with_a_nul_character_is_invalid(tmp_path, lake, settings):
    """PostgreSQL text cannot hold a NUL: such a line failed every warehouse publish. (A NUL
    in a file's first 4 kB makes it binary, not an export: the line comes later.)"""
    rows = [line(row_id=str(i), order_id=f"O-{i}") for i in range(1, 60)]
    rows.append(line(row_id="60", name="nul\x00", customer="C-\x00"))
    f = write_csv(tmp_path / "eu" / "d.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    counts = land_and_process(lake, settings, f)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined) == (60, 59, 1)
    assert sql(lake, "SELECT line_id, list_sort(reasons) FROM silver.quarantine") == [
        ("60", ["invalid_text:customer_id", "invalid_text:product_name"])
    ]


def test_an_id_holding_the_key_separator_is_invalid_not_a_collision(tmp_path, lake, settings):
    """A line's key is md5(source || chr(31) || order_id || chr(31) || line_id): with the
    separator inside an id, ('A\x1fB', '1') and ('A', 'B\x1f1') would share a key and one
    would silently replace the other as a "correction"."""
    rows = [line(row_id=str(i), order_id=f"O-{i}") for i in range(1, 60)]
    rows.append(line(row_id="1", order_id="A\x1fB"))
    rows.append(line(row_id="B\x1f1", order_id="A"))
    f = write_csv(tmp_path / "eu" / "d.csv", HEADER + "\n" + "\n".join(rows) + "\n")
    counts = land_and_process(lake, settings, f)
    assert (counts.rows_read, counts.rows_valid, counts.rows_quarantined, counts.rows_duplicate) == (61, 59, 2, 0)
    assert sorted(sql(lake, "SELECT list_sort(reasons) FROM silver.quarantine")) == [
        (["invalid_text:line_id"],),
        (["invalid_text:order_id"],),
    ]
