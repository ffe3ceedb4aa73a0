"""SCD2 business-time history through the whole pipeline, with late-arriving lines."""

from __future__ import annotations

from helpers import HEADER, line, write_csv
from saleslake import api


def q(settings, query):
    return [tuple(r.values()) for r in api.query(query, settings).to_pylist()]


def history(settings, customer="C-7"):
    return q(
        settings,
        f"SELECT segment, valid_from::VARCHAR, valid_to::VARCHAR, version, is_current FROM gold.dim_customer "
        f"WHERE customer_id = '{customer}' ORDER BY valid_from",
    )


def fact_segments(settings, customer="C-7"):
    return q(
        settings,
        f"SELECT f.line_id, c.segment FROM gold.fact_sales f JOIN gold.dim_customer c USING (customer_sk) "
        f"WHERE c.customer_id = '{customer}' ORDER BY f.line_id",
    )


def test_late_lines_resplit_history_and_repoint_facts(tmp_path, settings):
    day1 = [
        line(row_id="1", customer="C-7", segment="Consumer", order_date="10-03-2021", ship_date="12-03-2021"),
        line(row_id="2", customer="C-7", segment="Corporate", order_date="20-03-2021", ship_date="22-03-2021"),
    ]
    api.ingest_csv([write_csv(tmp_path / "eu" / "day1.csv", HEADER + "\n" + "\n".join(day1) + "\n")], settings=settings)
    api.run(settings=settings)
    assert history(settings) == [
        ("Consumer", "2021-03-10", "2021-03-20", 1, False),
        ("Corporate", "2021-03-20", "9999-12-31", 2, True),
    ]

    # a late export brings an older line (Home Office on 1 March) and one inside the first version
    late = [
        line(row_id="3", customer="C-7", segment="Home Office", order_date="01-03-2021", ship_date="02-03-2021"),
        line(row_id="4", customer="C-7", segment="Corporate", order_date="15-03-2021", ship_date="16-03-2021"),
    ]
    api.ingest_csv([write_csv(tmp_path / "eu" / "late.csv", HEADER + "\n" + "\n".join(late) + "\n")], settings=settings)
    api.run(settings=settings)
    assert history(settings) == [
        ("Home Office", "2021-03-01", "2021-03-10", 1, False),
        ("Consumer", "2021-03-10", "2021-03-15", 2, False),
        ("Corporate", "2021-03-15", "9999-12-31", 3, True),
    ]
    assert fact_segments(settings) == [("1", "Consumer"), ("2", "Corporate"), ("3", "Home Office"), ("4", "Corporate")]
    # the pipeline's gold equals a rebuild from scratch
    before = q(settings, "SELECT sum(hash(line_key, customer_sk, product_sk)) FROM gold.fact_sales")
    api.rebuild_gold(settings=settings)
    assert q(settings, "SELECT sum(hash(line_key, customer_sk, product_sk)) FROM gold.fact_sales") == before


def test_correction_changes_the_version_a_fact_points_at(tmp_path, settings):
    rows = [
        line(row_id="1", customer="C-9", segment="Consumer", order_date="10-03-2021", ship_date="12-03-2021"),
        line(row_id="2", customer="C-9", segment="Consumer", order_date="20-03-2021", ship_date="22-03-2021"),
    ]
    api.ingest_csv([write_csv(tmp_path / "eu" / "a.csv", HEADER + "\n" + "\n".join(rows) + "\n")], settings=settings)
    api.run(settings=settings)
    assert [h[:2] for h in history(settings, "C-9")] == [("Consumer", "2021-03-10")]
    fix = line(row_id="2", customer="C-9", segment="Corporate", order_date="20-03-2021", ship_date="22-03-2021")
    api.ingest_csv([write_csv(tmp_path / "eu" / "b.csv", HEADER + "\n" + fix + "\n")], settings=settings)
    result = api.run(settings=settings)
    assert result.stages["silver"].rows_corrected == 1
    assert [h[:3] for h in history(settings, "C-9")] == [
        ("Consumer", "2021-03-10", "2021-03-20"),
        ("Corporate", "2021-03-20", "9999-12-31"),
    ]
    assert fact_segments(settings, "C-9") == [("1", "Consumer"), ("2", "Corporate")]
