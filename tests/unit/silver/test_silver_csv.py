"""CSV objects through silver: typing, every reason code, dedup, exactly-once positions."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from helpers import HEADER, line, sql, write_csv
from saleslake import api
from saleslake.bronze import land_csv
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
