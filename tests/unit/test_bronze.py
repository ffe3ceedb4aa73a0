"""Landing in bronze: content addressing, manifest, dialect decided per source."""

from __future__ import annotations

import hashlib

from helpers import HEADER, line, long_first_row_export, sql, wide_export, write_csv
from saleslake.bronze import land_csv, manifest_rows
from saleslake.sources.csv import CsvOverrides


def test_landing_is_content_addressed_and_recorded(tmp_path, lake):
    f = write_csv(tmp_path / "emea" / "2021-01-15.csv", HEADER + "\n" + line() + "\n")
    result = land_csv(lake, [f])
    [row] = result.landed
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    assert row["object_id"] == sha and row["source"] == "emea" and row["landed_seq"] == 1
    landed = lake.home / row["bronze_uri"]
    assert landed.name == f"{sha}.csv" and landed.read_bytes() == f.read_bytes()
    assert "ingest_date=" in row["bronze_uri"]
    # the same bytes under another name are the same object
    copy = write_csv(tmp_path / "emea" / "copy.csv", f.read_text())
    again = land_csv(lake, [copy, f])
    assert again.landed == [] and len(again.already_landed) == 2
    assert [r["landed_seq"] for r in manifest_rows(lake)] == [1]


def test_deep_look_decides_dates_beyond_the_quick_sample(tmp_path, lake):
    early = [line(row_id=str(i), order_date="01-02-2021", ship_date="03-02-2021") for i in range(1, 200)]
    late = line(row_id="200", order_date="20-02-2021", ship_date="22-02-2021")
    f = write_csv(tmp_path / "south" / "d.csv", HEADER + "\n" + "\n".join([*early, late]) + "\n")
    [row] = land_csv(lake, [f]).landed
    assert row["date_format"] == "%d-%m-%Y"


def test_source_date_format_is_remembered(tmp_path, lake):
    land_csv(
        lake,
        [
            write_csv(
                tmp_path / "us" / "a.csv", HEADER + "\n" + line(order_date="01/20/2021", ship_date="01/22/2021") + "\n"
            )
        ],
    )
    later = land_csv(
        lake,
        [
            write_csv(
                tmp_path / "us" / "b.csv", HEADER + "\n" + line(order_date="02/03/2021", ship_date="02/05/2021") + "\n"
            )
        ],
    )
    assert later.landed[0]["date_format"] == "%m/%d/%Y"
    assert sql(lake, "SELECT count(*) FROM system.bronze_manifest") == [(2,)]


def test_bad_file_does_not_stop_the_others(tmp_path, lake):
    good = write_csv(tmp_path / "x" / "good.csv", HEADER + "\n" + line() + "\n")
    bad = tmp_path / "x" / "bad.csv"
    bad.write_bytes(b"")
    result = land_csv(lake, [tmp_path / "x"])
    assert [r["original_name"] for r in result.landed] == ["good.csv"]
    assert len(result.errors) == 1 and "empty" in str(result.errors[0]) and good.exists()


def test_a_file_that_changes_while_landing_is_not_landed(tmp_path, lake, monkeypatch):
    f = write_csv(tmp_path / "x" / "a.csv", HEADER + "\n" + line() + "\n")
    import saleslake.bronze as bronze

    monkeypatch.setattr(bronze, "WHOLE_READ_BYTES", 0)  # a large file: hashed first, then copied
    monkeypatch.setattr(bronze, "sha256_of", lambda path: "0" * 64)  # the bytes hashed first differ from those copied
    result = land_csv(lake, [f])
    assert result.landed == [] and "changed while it was being landed" in str(result.errors[0])
    assert not list((lake.bronze).rglob("*.csv")) and not list(lake.bronze.rglob("*.partial"))


def _objects(lake) -> list[str]:
    return sorted(p.name for p in lake.bronze.rglob("*") if p.is_file())


def test_files_that_do_not_land_leave_no_object(tmp_path, lake):
    good = write_csv(tmp_path / "x" / "good.csv", HEADER + "\n" + line() + "\n")
    (tmp_path / "x" / "empty.csv").write_bytes(b"")
    (tmp_path / "x" / "binary.csv").write_bytes(b"\x00\x01\x02" * 100)
    write_csv(tmp_path / "x" / "header.csv", HEADER + "\n")
    result = land_csv(lake, [tmp_path / "x"])
    assert [r["original_name"] for r in result.landed] == ["good.csv"]
    assert len(result.errors) == 2 and len(result.header_only) == 1
    assert _objects(lake) == [f"{hashlib.sha256(good.read_bytes()).hexdigest()}.csv"]


def test_an_undecidable_date_order_lands_nothing_until_it_is_given(tmp_path, lake):
    f = write_csv(
        tmp_path / "us" / "a.csv", HEADER + "\n" + line(order_date="01/02/2021", ship_date="03/02/2021") + "\n"
    )
    result = land_csv(lake, [f])
    assert result.landed == [] and "--date-format" in str(result.errors[0])
    assert _objects(lake) == [] and manifest_rows(lake) == []
    from saleslake.sources.csv import CsvOverrides

    [row] = land_csv(lake, [f], overrides=CsvOverrides(date_format="%m/%d/%Y")).landed
    assert _objects(lake) == [f"{row['object_id']}.csv"]


def test_large_files_land_as_small_ones_do(tmp_path, lake, monkeypatch):
    import saleslake.bronze as bronze

    body = HEADER + "\n" + "\n".join(line(row_id=str(i)) for i in range(1, 50)) + "\n"
    small = write_csv(tmp_path / "emea" / "small.csv", body)
    large = write_csv(tmp_path / "emea" / "large.csv", body.replace("\n", "\r\n"))
    [small_row] = land_csv(lake, [small]).landed
    monkeypatch.setattr(bronze, "WHOLE_READ_BYTES", 0)  # hashed, then copied and verified
    [large_row] = land_csv(lake, [large]).landed
    assert (lake.home / large_row["bronze_uri"]).read_bytes() == large.read_bytes()
    assert large_row["object_id"] == hashlib.sha256(large.read_bytes()).hexdigest()
    assert {k: v for k, v in large_row.items() if k in ("delimiter", "date_format", "columns")} == {
        k: v for k, v in small_row.items() if k in ("delimiter", "date_format", "columns")
    }
    assert _objects(lake) == sorted([f"{small_row['object_id']}.csv", f"{large_row['object_id']}.csv"])


def test_sniffing_in_a_child_process_gives_the_same_landing(tmp_path, lake, monkeypatch):
    import saleslake.bronze as bronze

    def folder(name: str, first: int):  # new bytes each time (landing is content-addressed)
        write_csv(tmp_path / name / "a.csv", HEADER + "\n" + line(row_id=str(first)) + "\n")
        write_csv(
            tmp_path / name / "b.csv",
            "\n".join([HEADER.replace(",", ";"), line(row_id=str(first + 1)).replace(",", ";"), ""]),
        )
        (tmp_path / name / "empty.csv").write_bytes(b"")
        write_csv(tmp_path / name / "header.csv", HEADER + "\n")
        return tmp_path / name

    in_process = land_csv(lake, [folder("one", 1)], source="s1")
    monkeypatch.setattr(bronze, "SNIFF_PROCESS_FILES", 1)
    answered: list = []
    original = bronze._ChildSniffer.answers
    monkeypatch.setattr(bronze._ChildSniffer, "answers", lambda self: answered.append(original(self)) or answered[-1])
    in_child = land_csv(lake, [folder("two", 3)], source="s2")
    assert len(answered) == 1 and len(answered[0]) == 4  # the child answered (no fallback)

    def described(result):
        rows = [
            {k: v for k, v in r.items() if k in ("original_name", "delimiter", "date_format", "columns", "header")}
            for r in result.landed
        ]
        return rows, [str(e).replace("/two/", "/one/") for e in result.errors], len(result.header_only)

    assert described(in_child) == described(in_process)
    assert len(in_child.landed) == 2 and "empty" in str(in_child.errors[0])


def test_a_long_first_row_or_a_wide_header_lands(tmp_path, lake, monkeypatch):
    """Neither fits in the sniffer's first 32 KB; both were skipped as header only."""
    import saleslake.bronze as bronze

    long_row = long_first_row_export(tmp_path / "emea" / "long.csv")
    wide = wide_export(tmp_path / "emea" / "wide.csv")
    result = land_csv(lake, [long_row, wide])
    assert result.header_only == [] and result.errors == []
    landed = {r["original_name"]: r for r in result.landed}
    assert set(landed) == {"long.csv", "wide.csv"} and len(landed["wide.csv"]["header"]) == 100_024
    # the same from the child process that sniffs large folders
    monkeypatch.setattr(bronze, "SNIFF_PROCESS_FILES", 1)
    again = [
        long_first_row_export(tmp_path / "apac" / "long.csv"),
        write_csv(tmp_path / "apac" / "long2.csv", long_row.read_text() + line(row_id="50") + "\n"),
    ]
    result = land_csv(lake, again, source="apac")
    assert result.header_only == [] and len(result.landed) == 1 and len(result.already_landed) == 1


def test_a_file_whose_records_are_all_longer_than_the_sample_asks_for_the_date_format(tmp_path, lake):
    f = write_csv(tmp_path / "x" / "a.csv", HEADER + "\n" + line(name="x" * 5_000_000) + "\n")
    result = land_csv(lake, [f])
    assert result.landed == [] and result.header_only == []
    assert "no row to tell the date order from" in str(result.errors[0]) and "--date-format" in str(result.errors[0])


def test_a_byte_past_the_head_does_not_refuse_a_file_whose_dates_need_the_deep_look(tmp_path, lake):
    """The head (32 KB) decides the encoding (README "Encoding"): a cp1252 byte past it is
    its record's problem, also when the source's dates are undecided and the deep look
    (4 MB) reads further. It refused the file ("not valid UTF-8") instead of asking for
    --date-format, and refused it again when the date format was given."""
    rows = [line(row_id=str(i), order_date="01-02-2021", ship_date="03-02-2021") for i in range(1, 300)]
    text = HEADER + "\n" + "\n".join(rows) + "\n"
    assert len(text) > 40_000
    f = tmp_path / "south" / "d.csv"
    f.parent.mkdir()
    bad = line(row_id="300", name="Ren\xe9e", order_date="01-02-2021", ship_date="03-02-2021")
    f.write_bytes(text.encode() + (bad + "\n").encode("cp1252"))
    asked = land_csv(lake, [f])
    assert [str(e) for e in asked.errors if "cannot tell whether dates" in str(e)] == [str(e) for e in asked.errors]
    assert len(asked.errors) == 1 and not asked.landed
    [row] = land_csv(lake, [f], overrides=CsvOverrides(date_format="%d-%m-%Y")).landed
    assert row["encoding"] == "utf-8"
