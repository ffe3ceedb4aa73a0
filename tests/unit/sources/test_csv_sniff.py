"""Dialect detection and file-level errors of regional CSV exports."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import HEADER, line, long_first_row_export, wide_export, write_csv
from saleslake.contract import canonical_column
from saleslake.errors import InputFileError
from saleslake.sources.csv import (
    CsvOverrides,
    DateEvidence,
    date_evidence,
    decide_date_format,
    resolve_date_formats,
    sniff,
)


@pytest.mark.parametrize(
    "header, canonical",
    [
        ("Row ID", "line_id"),
        ("row_id", "line_id"),
        ("ROW-ID", "line_id"),
        ("Sub-Category", "sub_category"),
        ("subcategory", "sub_category"),
        ("Country/Region", "country"),
        ("State/Province", "state"),
        ("\ufeffRow ID", "line_id"),
        ("Unknown Col", None),
    ],
)
def test_headers_match_case_space_dash_underscore_insensitively(header, canonical):
    assert canonical_column(header) == canonical


def test_comma_file_with_quoted_commas(tmp_path: Path):
    f = write_csv(tmp_path / "a.csv", HEADER + "\n" + line() + "\n" + line(row_id="2", order_date="13-01-2021") + "\n")
    sniffed = sniff(f)
    assert sniffed.delimiter == "," and sniffed.decimal == "." and sniffed.encoding == "utf-8"
    assert sniffed.columns["product_name"] == 17 and not sniffed.extra_columns
    assert sniffed.dates.day_first_seen and not sniffed.dates.month_first_seen
    assert decide_date_format(sniffed.dates) == "%d-%m-%Y"


def test_semicolon_decimal_comma_bom_crlf(tmp_path: Path):
    header = HEADER.replace(",", ";")
    row = line(sales="100,50", discount="0,1", profit="-3,25").replace(",", ";").replace(";;", ";")
    # rebuild the row explicitly: semicolons between fields, commas inside numbers
    row = ";".join(
        [
            "1",
            "O-1",
            "15/01/2021",
            "17/01/2021",
            "Standard Class",
            "C-1",
            "Ann",
            "Consumer",
            "Berlin",
            "Berlin",
            "Germany",
            "",
            "EU",
            "Central",
            "P-1",
            "Furniture",
            "Chairs",
            "Desk",
            "100,50",
            "2",
            "0,1",
            "-3,25",
            "1,5",
            "High",
        ]
    )
    f = write_csv(tmp_path / "b.csv", header + "\r\n" + row + "\r\n", bom=True)
    sniffed = sniff(f)
    assert (sniffed.delimiter, sniffed.decimal, sniffed.encoding) == (";", ",", "utf-8-sig")
    assert decide_date_format(sniffed.dates) == "%d/%m/%Y"


def test_aliases_and_absent_optional_columns(shared_data: Path):
    sniffed = sniff(shared_data / "superstore_us_2023" / "superstore_us_2023.csv")
    assert sniffed.encoding == "utf-8-sig"
    assert "country" in sniffed.columns and "state" in sniffed.columns
    assert "market" not in sniffed.columns and "shipping_cost" not in sniffed.columns
    assert decide_date_format(sniffed.dates) == "%d/%m/%y"


def test_extra_columns_are_kept_and_reported(tmp_path: Path):
    f = write_csv(tmp_path / "c.csv", HEADER + ",Sales Rep\n" + line() + ",Bob\n")
    assert sniff(f).extra_columns == ("Sales Rep",)


@pytest.mark.parametrize(
    "values, expected",
    [
        (["13-01-2021"], "%d-%m-%Y"),
        (["01/13/2021"], "%m/%d/%Y"),
        (["03/01/19", "25/01/19"], "%d/%m/%y"),
        (["2021-01-13"], "%Y-%m-%d"),
        (["01-02-2021", "03-04-2021"], None),
        (["13-01-2021", "01-13-2021"], "inconsistent"),
    ],
)
def test_date_format_decision(values, expected):
    assert decide_date_format(date_evidence(values)) == expected


def test_ambiguous_dates_pool_evidence_per_source(tmp_path: Path):
    ambiguous = sniff(
        write_csv(
            tmp_path / "s" / "d1.csv", HEADER + "\n" + line(order_date="01-02-2021", ship_date="03-02-2021") + "\n"
        )
    )
    decisive = sniff(
        write_csv(
            tmp_path / "s" / "d2.csv", HEADER + "\n" + line(order_date="20-02-2021", ship_date="23-02-2021") + "\n"
        )
    )
    resolved = resolve_date_formats([ambiguous, decisive], ["s", "s"], {})
    assert [f.date_format for f in resolved] == ["%d-%m-%Y", "%d-%m-%Y"]
    # alone, the ambiguous file asks for --date-format ...
    with pytest.raises(InputFileError, match="--date-format"):
        resolve_date_formats([ambiguous], ["s"], {})
    # ... unless the source's format was decided at an earlier ingest
    assert resolve_date_formats([ambiguous], ["s"], {"s": "%d-%m-%Y"})[0].date_format == "%d-%m-%Y"


def test_contradicting_date_orders_are_an_error(tmp_path: Path):
    a = sniff(
        write_csv(tmp_path / "a.csv", HEADER + "\n" + line(order_date="20-02-2021", ship_date="21-02-2021") + "\n")
    )
    b = sniff(
        write_csv(tmp_path / "b.csv", HEADER + "\n" + line(order_date="02-20-2021", ship_date="02-21-2021") + "\n")
    )
    with pytest.raises(InputFileError, match="day-first in some rows and month-first"):
        resolve_date_formats([a, b], ["s", "s"], {})


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary data"),
        (HEADER.encode() + b"\n1,O-1,15-01-2021,17-01-2021,x,C-1,Ren\xe9e\n", "not valid UTF-8"),
        (b'{"orders": [1, 2, 3]}\n', "not a sales CSV export"),
        (b"Row ID,Order ID,Customer ID\n1,O-1,C-1\n", "missing required column(s): Order Date"),
        (HEADER.replace(",", "|").encode() + b"\n", None),
    ],
)
def test_bad_files_give_one_clear_line(tmp_path: Path, content: bytes, message: str | None):
    f = tmp_path / "bad.csv"
    f.write_bytes(content)
    if message is None:  # pipe-delimited header only: detected, but no data rows
        assert sniff(f) is None
        return
    with pytest.raises(InputFileError) as info:
        sniff(f)
    text = str(info.value)
    assert message in text and str(f) in text and "\n" not in text


def test_wrong_forced_delimiter_is_reported(tmp_path: Path):
    f = write_csv(tmp_path / "a.csv", HEADER + "\n" + line() + "\n")
    with pytest.raises(InputFileError, match="check --delimiter"):
        sniff(f, CsvOverrides(delimiter=";"))


def test_other_encoding_with_override(tmp_path: Path):
    f = write_csv(tmp_path / "a.csv", HEADER + "\n" + line(name="Renée's chair") + "\n", encoding="cp1252")
    with pytest.raises(InputFileError, match="--encoding"):
        sniff(f)
    assert sniff(f, CsvOverrides(encoding="cp1252")).encoding == "cp1252"
    with pytest.raises(InputFileError, match="unknown encoding"):
        sniff(f, CsvOverrides(encoding="klingon-8"))


def test_evidence_merge_is_monotonic():
    merged = DateEvidence(separator="-", year_digits=4).merge(DateEvidence(day_first_seen=True))
    assert merged.separator == "-" and merged.day_first_seen


def test_a_first_row_longer_than_the_quick_look_is_data_not_header_only(tmp_path: Path):
    sniffed = sniff(long_first_row_export(tmp_path / "a.csv"))
    assert sniffed is not None, "skipped as header only"
    assert sniffed.data_rows_seen == 49 and sniffed.dates.day_first_seen


def test_a_header_of_100000_columns_is_read_whole(tmp_path: Path):
    sniffed = sniff(wide_export(tmp_path / "a.csv"))
    assert sniffed is not None, "skipped as header only"
    assert len(sniffed.header) == 100_024 and sniffed.header[-1] == "Extra 99999"
    assert len(sniffed.extra_columns) == 100_000 and sniffed.columns["order_priority"] == 23
    assert sniffed.data_rows_seen == 3


def test_header_only_is_decided_from_the_whole_file(tmp_path: Path):
    blank = "\r\n" * 3_000_000  # 6 MB of line ends: past every look at the head
    assert sniff(write_csv(tmp_path / "a.csv", HEADER + blank)) is None
    assert sniff(write_csv(tmp_path / "b.csv", HEADER)) is None
    data_far_below = sniff(write_csv(tmp_path / "c.csv", HEADER + blank + line() + "\n"))
    assert data_far_below is not None and data_far_below.header == tuple(HEADER.split(","))


def test_a_first_record_longer_than_the_deep_look_samples_the_rows_after_it(tmp_path: Path):
    rows = [line(row_id="1", name="x" * 5_000_000), line(row_id="2", order_date="20-01-2021", ship_date="21-01-2021")]
    sniffed = sniff(write_csv(tmp_path / "a.csv", HEADER + "\n" + "\n".join(rows) + "\n"))
    assert sniffed is not None and sniffed.data_rows_seen == 1
    assert decide_date_format(sniffed.dates) == "%d-%m-%Y"


def test_a_first_line_too_long_for_a_header_is_one_clear_line(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("saleslake.sources.csv.MAX_HEADER_BYTES", 1 << 20)
    f = write_csv(tmp_path / "a.csv", HEADER + ",x" * 600_000 + "\n" + line() + "\n")
    with pytest.raises(InputFileError, match="the first line is longer than 1,048,576 bytes") as info:
        sniff(f)
    assert "\n" not in str(info.value)


def _semicolon_decimal_comma_row(row_id: str, name: str = "Desk") -> str:
    fields = line(row_id=row_id, sales="100,50", discount="0,1", profit="-3,25", name=name).split(",")
    # line() quotes the name and joins with commas: rebuild with semicolons, commas in numbers
    quoted = '"' + name.replace('"', '""') + '"'
    return ";".join([*fields[:17], quoted, "100,50", "2", "0,1", "-3,25", "12,5", "High"])


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_blank_lines_after_the_header_do_not_fill_the_sample(tmp_path: Path, end: str):
    """More blank lines than the sample holds (60) between the header and the data, in a
    small file: the sample is the records after them (the decimal comma and day-first
    dates are seen), not the blank lines (which left it empty: decimal point assumed)."""
    rows = [_semicolon_decimal_comma_row(str(i)) for i in range(1, 4)]
    text = HEADER.replace(",", ";") + end * 71 + end.join(rows) + end
    sniffed = sniff(write_csv(tmp_path / "a.csv", text))
    assert sniffed is not None and sniffed.data_rows_seen == 3
    assert (sniffed.delimiter, sniffed.decimal) == (";", ",")
    assert decide_date_format(sniffed.dates) == "%d-%m-%Y"


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_the_sample_after_a_record_longer_than_the_deep_look_reads_any_line_end(tmp_path: Path, end: str):
    rows = [_semicolon_decimal_comma_row("1", name="x" * 5_000_000), _semicolon_decimal_comma_row("2")]
    sniffed = sniff(write_csv(tmp_path / "a.csv", HEADER.replace(",", ";") + end + end.join(rows) + end))
    assert sniffed is not None and sniffed.data_rows_seen == 1
    assert sniffed.decimal == "," and decide_date_format(sniffed.dates) == "%d-%m-%Y"


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_a_quoted_line_break_is_no_record_end_for_the_sample(tmp_path: Path, end: str):
    """A first record with a line break inside quotes, then a field that runs past the
    quick look: the look goes on to the end of the record (it stopped at the quoted line
    break, and the sample held only the record's first line: no amount, decimal point
    assumed for a decimal-comma export)."""
    rows = [_semicolon_decimal_comma_row("1", name="Desk" + end + "x" * 40_000), _semicolon_decimal_comma_row("2")]
    sniffed = sniff(write_csv(tmp_path / "a.csv", HEADER.replace(",", ";") + end + end.join(rows) + end))
    assert sniffed is not None and sniffed.data_rows_seen == 2
    assert sniffed.decimal == "," and decide_date_format(sniffed.dates) == "%d-%m-%Y"
    cut = write_csv(tmp_path / "b.csv", HEADER.replace(",", ";") + end + rows[0] + end + rows[1][:30])
    sniffed = sniff(cut)  # the whole file: its last record is cut, the one before is whole
    assert sniffed is not None and sniffed.decimal == ","


def test_bytes_that_are_not_utf8_in_the_head_refuse_the_file_with_or_without_a_bom(tmp_path: Path):
    """One rule (README): the head decides the encoding. Bytes that are not UTF-8 in it
    refuse the file, asking for --encoding, whether or not it starts with a byte-order
    mark (a BOM file used to land, each such record quarantined as invalid_encoding)."""
    text = HEADER + "\n" + line(name="Renée") + "\n"
    for bom in (False, True):
        f = write_csv(tmp_path / f"bom{bom}.csv", text, encoding="cp1252", bom=bom)
        with pytest.raises(InputFileError, match=r"not valid UTF-8 \(byte 0xe9 at offset \d+\).*--encoding") as info:
            sniff(f)
        assert "\n" not in str(info.value)
        sniffed = sniff(f, CsvOverrides(encoding="cp1252"))  # what the line asks for: it lands
        assert sniffed.encoding == "cp1252" and sniffed.header == tuple(HEADER.split(","))


def test_a_utf8_file_with_a_bom_given_another_encoding_names_the_cause(tmp_path: Path):
    """The BOM read as cp1252 ("ï»¿") used to spoil the first column's name: "missing
    required column(s): Row ID", which points at the wrong cause."""
    f = write_csv(tmp_path / "a.csv", HEADER + "\n" + line(name="Renée") + "\n", bom=True)
    with pytest.raises(InputFileError) as info:
        sniff(f, CsvOverrides(encoding="cp1252"))
    message = str(info.value)
    assert "UTF-8 byte-order mark" in message and "drop --encoding" in message and "\n" not in message
    assert sniff(f).encoding == "utf-8-sig"


def test_a_bom_file_refused_for_a_byte_in_a_grown_head_lands_with_encoding(tmp_path: Path):
    """A first record longer than the quick look makes the head grow past 32 KB; a cp1252
    byte there refuses the file. The --encoding the line asks for then read it, until the
    check "UTF-8 indeed?" looked at the first 32 KB alone (found by the CSV fuzz test)."""
    rows = [line(row_id="1", name="x" * 40_000), line(row_id="2", name="Renée")]
    f = write_csv(tmp_path / "a.csv", HEADER + "\n" + "\n".join(rows) + "\n", encoding="cp1252", bom=True)
    with pytest.raises(InputFileError, match="not valid UTF-8"):
        sniff(f)
    sniffed = sniff(f, CsvOverrides(encoding="latin-1"))
    assert sniffed is not None and sniffed.encoding == "latin-1" and sniffed.data_rows_seen == 2
