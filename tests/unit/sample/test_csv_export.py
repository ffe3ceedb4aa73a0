"""The regional CSV export generator: layout, dialects, determinism and exact counts.

The counts of the summary are checked against an independent reading of the files: a
small CSV parser plus the rules of CONTRACT §4, written here without the generator's
internals.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter, defaultdict
from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from saleslake.contract import CSV_FIELDS, REQUIRED_FIELDS
from saleslake.errors import UserError
from saleslake.sample.csv_export import REGIONS, SUMMARY_FILE, GenerationSummary, file_days, generate_csv

ROWS = 6_000
ERROR_RATE = 0.05
SEED = 7
BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary, list[int]]:
    out = tmp_path_factory.mktemp("exports")
    calls: list[int] = []
    summary = generate_csv(out, rows=ROWS, error_rate=ERROR_RATE, seed=SEED, progress=calls.append)
    return out, summary, calls


# ---------------------------------------------------------------------------------------
# An independent reader and validator (CONTRACT §2 and §4)
# ---------------------------------------------------------------------------------------

FIELDS = list(CSV_FIELDS.values())


def read_rows(path: Path, region: str) -> list[dict[str, str]]:
    d = REGIONS[region].dialect
    raw = path.read_bytes()
    if d.bom:
        assert raw.startswith(BOM), path
        raw = raw[len(BOM) :]
    else:
        assert not raw.startswith(BOM), path
    text = raw.decode("utf-8")
    if d.crlf:
        assert text.count("\n") == text.count("\r\n"), path
    else:
        assert "\r" not in text, path
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=d.delimiter))
    assert rows[0] == list(CSV_FIELDS), path
    for row in rows[1:]:
        assert len(row) == len(FIELDS), (path, row)
    return [dict(zip(FIELDS, row)) for row in rows[1:]]


def parse_date(value: str, fmt: str) -> date | None:
    try:
        return datetime.strptime(value, fmt).date()
    except ValueError:
        return None


def parse_number(value: str, decimal_sep: str, integer: bool = False) -> Decimal | None:
    pattern = r"-?\d+" if integer else r"-?\d+(" + re.escape(decimal_sep) + r"\d+)?"
    if not re.fullmatch(pattern, value):
        return None
    try:
        return Decimal(value.replace(decimal_sep, "."))
    except InvalidOperation:  # pragma: no cover
        return None


def validate(rec: dict[str, str], region: str) -> tuple[list[str], dict[str, object]]:
    d = REGIONS[region].dialect
    reasons = [f"missing_required:{f}" for f in REQUIRED_FIELDS if rec[f] == ""]
    parsed: dict[str, object] = {}
    for f in ("order_date", "ship_date"):
        if rec[f] != "":
            parsed[f] = parse_date(rec[f], d.date_format)
            if parsed[f] is None:
                reasons.append(f"invalid_date:{f}")
    for f in ("sales", "quantity", "discount", "profit", "shipping_cost"):
        if rec[f] != "":
            parsed[f] = parse_number(rec[f], d.decimal, integer=f == "quantity")
            if parsed[f] is None:
                reasons.append(f"invalid_number:{f}")
    if parsed.get("quantity") is not None and parsed["quantity"] <= 0:
        reasons.append("non_positive_quantity")
    if parsed.get("sales") is not None and parsed["sales"] <= 0:
        reasons.append("non_positive_sales")
    if parsed.get("discount") is not None and not (0 <= parsed["discount"] <= 1):
        reasons.append("discount_out_of_range")
    if parsed.get("order_date") and parsed.get("ship_date") and parsed["ship_date"] < parsed["order_date"]:
        reasons.append("ship_before_order")
    return reasons, parsed


def files_in_order(out: Path) -> list[tuple[str, Path]]:
    return [
        (region, p)
        for region in sorted(p.name for p in out.iterdir() if p.is_dir())
        for p in sorted((out / region).glob("*.csv"))
    ]


def recount(out: Path) -> dict[str, object]:
    """What a pipeline following the contract derives from the files."""
    reasons: Counter[str] = Counter()
    defective = duplicates = corrections = rows = 0
    latest: dict[tuple[str, str, str], tuple[str, ...]] = {}
    first_file: dict[tuple[str, str, str], int] = {}
    sales: dict[tuple[str, str, str], Decimal] = {}
    keys_without_region: dict[tuple[str, str], str] = {}
    for position, (region, path) in enumerate(files_in_order(out)):
        for rec in read_rows(path, region):
            rows += 1
            why, parsed = validate(rec, region)
            if why:
                defective += 1
                reasons.update(why)
                continue
            key = (region, rec["order_id"], rec["line_id"])
            assert keys_without_region.setdefault(key[1:], region) == region
            values = tuple(rec.values())
            if key in latest:
                assert first_file[key] < position, "a re-sent line comes in a later file"
                if latest[key] == values:
                    duplicates += 1
                else:
                    corrections += 1
            else:
                first_file[key] = position
            latest[key] = values
            sales[key] = parsed["sales"]
    total = sum(sales.values(), Decimal(0))
    return {
        "rows_written": rows,
        "valid_unique_lines": len(latest),
        "exact_duplicates": duplicates,
        "corrections": corrections,
        "defective_rows": defective,
        "defects_by_reason": dict(reasons),
        "expected_silver_sales": total,
        "outliers": sum(1 for v in sales.values() if v > 10_000),
    }


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------


def test_layout_one_file_per_region_and_day(run):
    out, summary, _ = run
    days = file_days(ROWS, len(REGIONS))
    assert days == 7
    assert summary.regions == sorted(REGIONS)
    assert summary.files == len(REGIONS) * days
    assert (summary.first_date, summary.last_date) == ("2021-01-01", "2021-01-07")
    for region in REGIONS:
        names = sorted(p.name for p in (out / region).iterdir())
        assert names == [f"{region}_{date(2021, 1, 1) + timedelta(days=t)}.csv" for t in range(days)]
    assert json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8")) == json.loads(json.dumps(asdict(summary)))


def test_file_days_is_clamped():
    assert file_days(0, 13) == 7
    assert file_days(1_000_000, 13) == 153
    assert file_days(10_000_000, 13) == 1461
    assert file_days(100_000_000, 13) == 1461
    assert file_days(5_000, 1) == 10


def test_count_invariant_and_progress(run):
    _, s, calls = run
    assert s.rows_written == ROWS == sum(calls)
    assert len(calls) == 7
    assert s.rows_written == s.valid_unique_lines + s.exact_duplicates + s.corrections + s.defective_rows
    assert sum(s.rows_by_region.values()) == ROWS
    assert s.exact_duplicates > 0 and s.corrections > 0


def test_summary_matches_an_independent_reading_of_the_files(run):
    out, s, _ = run
    got = recount(out)
    assert got["rows_written"] == s.rows_written
    assert got["valid_unique_lines"] == s.valid_unique_lines
    assert got["exact_duplicates"] == s.exact_duplicates
    assert got["corrections"] == s.corrections
    assert got["defective_rows"] == s.defective_rows
    assert got["defects_by_reason"] == s.defects_by_reason
    assert got["expected_silver_sales"] == Decimal(s.expected_silver_sales)
    assert got["outliers"] == s.outliers


def test_defects_cover_every_reason_at_about_the_error_rate(run):
    _, s, _ = run
    assert abs(s.defective_rows / s.rows_written - ERROR_RATE) < 0.015
    expected_codes = {f"missing_required:{f}" for f in REQUIRED_FIELDS} | {
        "invalid_date:order_date",
        "invalid_date:ship_date",
        *(f"invalid_number:{f}" for f in ("sales", "quantity", "discount", "profit", "shipping_cost")),
        "non_positive_quantity",
        "non_positive_sales",
        "discount_out_of_range",
        "ship_before_order",
    }
    assert set(s.defects_by_reason) == expected_codes
    assert 0 < s.two_defect_rows < s.defective_rows
    assert sum(s.defects_by_reason.values()) == s.defective_rows + s.two_defect_rows


def test_no_defects_when_error_rate_is_zero(tmp_path):
    s = generate_csv(tmp_path, rows=1_500, regions=["west", "north"], error_rate=0.0, seed=3)
    assert s.defective_rows == 0 and s.defects_by_reason == {}
    assert recount(tmp_path)["defective_rows"] == 0


def test_dialects_per_region(run):
    out, _, _ = run
    first = {region: (out / region / f"{region}_2021-01-04.csv").read_bytes() for region in REGIONS}
    assert first["emea"].startswith(BOM + b"Row ID,Order ID,")
    assert first["central"].startswith(b"Row ID;Order ID;") and b"\r\n" in first["central"]
    assert first["north"].startswith(b"Row ID;Order ID;") and b"\r" not in first["north"]
    assert first["east"].startswith(b"Row ID,") and first["east"].count(b"\n") == first["east"].count(b"\r\n")
    assert b"\r" not in first["west"] and b"\r" not in first["africa"]
    assert sum(1 for b in first.values() if b.startswith(BOM)) == 1
    # Dates: 2021-01-04 written the region's way.
    assert b",01/04/2021," in first["east"] and b",01/04/2021," in first["west"]
    assert b",04/01/21," in first["canada"]
    assert b";04/01/2021;" in first["central"]
    assert b",04-01-2021," in first["africa"]
    # Decimal comma in the semicolon regions, decimal point elsewhere.
    central = read_rows(out / "central" / "central_2021-01-04.csv", "central")
    assert any("," in r["sales"] for r in central) and not any("." in r["sales"] for r in central)
    east = read_rows(out / "east" / "east_2021-01-04.csv", "east")
    assert any("." in r["sales"] for r in east)


def test_every_file_tells_day_first_from_month_first(run):
    out, _, _ = run
    for region, path in files_in_order(out):
        fmt = REGIONS[region].dialect.date_format
        day_pos = 0 if fmt.startswith("%d") else 1
        firsts = []
        for rec in read_rows(path, region):
            for f in ("order_date", "ship_date"):
                if parse_date(rec[f], fmt):
                    firsts.append(int(re.split(r"[-/]", rec[f])[day_pos]))
        if firsts:
            assert max(firsts) > 12, path


def test_quoted_product_names_round_trip_through_pyarrow(run):
    out, _, _ = run
    for region, delimiter in (("africa", ","), ("north", ";"), ("emea", ",")):
        path = out / region / f"{region}_2021-01-05.csv"
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types={k: pa.string() for k in CSV_FIELDS}, strings_can_be_null=False
            ),
        )
        assert table.column_names == list(CSV_FIELDS)
        mine = read_rows(path, region)
        assert table.column("Product Name").to_pylist() == [r["product_name"] for r in mine]
        assert table.column("Postal Code").to_pylist() == [r["postal_code"] for r in mine]
    names = {r["product_name"] for region, p in files_in_order(out) for r in read_rows(p, region)}
    assert any('"' in n for n in names) and any("," in n for n in names)
    raw = "".join(p.read_text(encoding="utf-8") for p in sorted((out / "africa").glob("*.csv")))
    assert '""' in raw  # embedded quotes are doubled
    assert re.search(r',"[^",]+, [^"]+",', raw)  # embedded commas are quoted


def test_postal_codes_keep_leading_zeros(run):
    out, _, _ = run
    codes = {r["postal_code"] for p in sorted((out / "east").glob("*.csv")) for r in read_rows(p, "east")}
    assert any(c.startswith("0") and len(c) == 5 for c in codes)
    assert "" not in codes  # US exports always carry the postal code
    africa = {r["postal_code"] for p in sorted((out / "africa").glob("*.csv")) for r in read_rows(p, "africa")}
    assert africa == {""}


def test_scd2_attributes_follow_the_order_date(run):
    out, _, _ = run
    customers: dict[str, set[tuple[date, str, str]]] = defaultdict(set)
    products: dict[str, set[tuple[date, str, str]]] = defaultdict(set)
    for region, path in files_in_order(out):
        fmt = REGIONS[region].dialect.date_format
        for rec in read_rows(path, region):
            if validate(rec, region)[0]:
                continue
            day = parse_date(rec["order_date"], fmt)
            customers[rec["customer_id"]].add((day, rec["customer_name"], rec["segment"]))
            products[rec["product_id"]].add((day, rec["product_name"], rec["sub_category"]))
    for history in (customers, products):
        changed = 0
        for versions in history.values():
            attrs = {v[1:] for v in versions}
            assert len(attrs) <= 2
            if len(attrs) == 2:
                changed += 1
                # One change date: all lines of the first version are ordered before the second.
                by_attr = defaultdict(list)
                for day, *a in versions:
                    by_attr[tuple(a)].append(day)
                (a, da), (_b, db) = sorted(by_attr.items(), key=lambda kv: min(kv[1]))
                assert max(da) < min(db)
        assert changed > 0


def test_deterministic_bytes(tmp_path):
    def snapshot(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.csv"))}

    a = generate_csv(tmp_path / "a", rows=2_500, regions=["central", "east", "emea"], seed=11)
    b = generate_csv(tmp_path / "b", rows=2_500, regions=["emea", "east", "central"], seed=11)
    c = generate_csv(tmp_path / "c", rows=2_500, regions=["central", "east", "emea"], seed=12)
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    assert asdict(a) == asdict(b)
    sc = snapshot(tmp_path / "c")
    assert sc.keys() == snapshot(tmp_path / "a").keys()
    assert all(sc[k] != v for k, v in snapshot(tmp_path / "a").items())
    assert a.expected_silver_sales != c.expected_silver_sales


def test_only_product_names_need_quoting(run):
    out, _, _ = run
    for region, path in files_in_order(out)[::7]:
        d = REGIONS[region].dialect.delimiter
        for rec in read_rows(path, region):
            for f, v in rec.items():
                if f not in ("product_name", "sales", "quantity", "discount", "profit", "shipping_cost"):
                    assert d not in v and '"' not in v, (f, v)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"regions": ["atlantis"]}, "unknown region"),
        ({"error_rate": 1.5}, "error rate"),
        ({"rows": -1}, "rows"),
        ({"regions": []}, "no region"),
    ],
)
def test_bad_arguments_are_user_errors(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        generate_csv(tmp_path, **kwargs)


def test_region_names_are_normalised_and_ordered(tmp_path):
    s = generate_csv(tmp_path, rows=100, regions=["West", "central-asia"], seed=1)
    assert s.regions == ["central_asia", "west"]
    assert s.rows_written == 100 == sum(s.rows_by_region.values())


def test_refreshes_its_own_folder_and_refuses_foreign_files(tmp_path):
    first = tmp_path / "first"
    generate_csv(first, rows=8_000, regions=["west", "east"], seed=1)  # 8 days
    again = generate_csv(first, rows=100, regions=["west"], seed=2)  # 7 days, one region
    assert sorted(p.relative_to(first).as_posix() for p in first.rglob("*.csv")) == [
        f"west/west_{date(2021, 1, 1) + timedelta(days=t)}.csv" for t in range(7)
    ]
    assert recount(first)["rows_written"] == again.rows_written == 100

    foreign = tmp_path / "foreign"
    (foreign / "west").mkdir(parents=True)
    (foreign / "west" / "west_2030-01-01.csv").write_text("x\n")
    with pytest.raises(UserError, match="another run"):
        generate_csv(foreign, rows=100, regions=["west"], seed=1)
    (foreign / "west" / "west_2030-01-01.csv").unlink()
    (foreign / "west" / "mine.csv").write_text("x\n")
    with pytest.raises(UserError, match="did not write"):
        generate_csv(foreign, rows=100, regions=["west"], seed=1)
