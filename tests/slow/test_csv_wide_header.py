"""A header of 100,000 columns followed by data rows (issue 14): it was skipped as header
only; now it lands and every row is accounted for in silver (DuckDB takes seconds to bind
100,000 columns, hence a slow test)."""

from __future__ import annotations

from helpers import line, sql, wide_export, write_csv
from saleslake import api


def test_an_export_with_100000_columns_lands_and_reaches_silver(tmp_path, settings, lake):
    wide = wide_export(tmp_path / "emea" / "wide.csv", rows=20)
    # the same rows again (duplicates) and one without the extra columns (malformed)
    again = write_csv(tmp_path / "emea" / "again.csv", wide.read_text() + line(row_id="21") + "\n")
    landed = api.ingest_csv([wide, again], settings=settings)
    assert landed.header_only == [] and landed.errors == [] and len(landed.landed) == 2
    silver = api.run(until="silver", settings=settings).stages["silver"]
    assert (silver.rows_read, silver.rows_valid, silver.rows_quarantined, silver.rows_duplicate) == (41, 20, 1, 20)
    assert sql(lake, "SELECT count(*), count(DISTINCT line_id) FROM silver.sales_lines") == [(20, 20)]
    assert sql(lake, "SELECT source_position, reasons FROM silver.quarantine") == [
        ("line:22", ["malformed_row:missing_columns"])
    ]
