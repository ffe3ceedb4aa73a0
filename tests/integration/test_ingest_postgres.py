"""`saleslake ingest postgres`: incremental extract of the operational shop (a real
PostgreSQL, the session's ``postgres_service``, a fresh database per test) into bronze,
silver and, through `run`, gold."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import psycopg
import pytest
from typer.testing import CliRunner

from saleslake import api
from saleslake.cli import app
from saleslake.errors import TransientError, UserError
from saleslake.sample.oltp import SQL_INJECTION_TEXT
from saleslake.sources.postgres import OltpSourceError

LIVE = """
    SELECT l.order_line_id, l.quantity * l.unit_price AS sales
    FROM order_lines l JOIN orders o USING (order_id)
    WHERE o.status <> 'cancelled' AND o.deleted_at IS NULL AND l.deleted_at IS NULL
"""


def owner(s) -> psycopg.Connection:
    pg = s.postgres
    return psycopg.connect(
        host="127.0.0.1", port=pg.port, dbname=pg.database, user=pg.user, password=pg.password("owner"), autocommit=True
    )


def source_state(s) -> tuple[int, Decimal, set[str]]:
    with owner(s) as conn:
        rows = conn.execute(LIVE).fetchall()
    return len(rows), sum((r[1] for r in rows), Decimal(0)), {str(r[0]) for r in rows}


def silver_state(s) -> tuple[int, Decimal, set[str]]:
    t = api.query("SELECT line_id, sales FROM silver.sales_lines WHERE source_system = 'oltp'", settings=s)
    ids = t["line_id"].to_pylist()
    assert len(ids) == len(set(ids)), "a line is in silver twice"
    return len(ids), sum(t["sales"].to_pylist(), Decimal(0)), set(ids)


def test_first_extract_then_mutations_exactly_once(postgres_settings) -> None:
    s = postgres_settings
    api.generate_oltp(orders=2000, seed=3, settings=s)
    first = api.ingest_postgres(settings=s)
    assert first.extract_seq == 0
    with owner(s) as conn:
        for table in ("orders", "order_lines", "customers", "products", "stores"):
            assert first.tables[table] == conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    expected = source_state(s)
    assert silver_state(s) == expected
    assert first.silver.rows_valid == expected[0] and first.silver.rows_quarantined == 0
    assert first.reference["customers"] == 500 and first.reference["products"] > 3000

    # nothing changed: nothing taken, silver unchanged
    again = api.ingest_postgres(settings=s)
    assert sum(again.tables.values()) == 0 and again.silver.rows_valid == 0 and again.removed == 0
    assert silver_state(s) == expected

    for round_no in range(1, 4):
        summary = api.generate_oltp(mutate=True, settings=s)
        assert summary.shared_updated_at_rows > 1  # many rows share one updated_at
        result = api.ingest_postgres(settings=s)
        assert result.extract_seq == 2 * round_no  # one extract per ingest, reruns included
        changed_orders = summary.changes["orders_cancelled"]
        assert result.tables["orders"] >= changed_orders
        assert result.removed >= 1  # cancellations and deletions leave silver
        assert result.tables["order_lines"] >= summary.changes["new_order_lines"]
        assert silver_state(s) == source_state(s), f"round {round_no}"
        # updated rows replace, nothing doubles, and a rerun takes nothing again
        rerun = api.ingest_postgres(settings=s)
        assert sum(rerun.tables.values()) == 0
        assert silver_state(s) == source_state(s)

    # shipped orders got their ship date in silver
    with owner(s) as conn:
        shipped = dict(
            conn.execute(
                "SELECT l.order_line_id::text, o.ship_date FROM order_lines l JOIN orders o USING (order_id) "
                "WHERE o.status <> 'cancelled' AND o.deleted_at IS NULL AND l.deleted_at IS NULL"
            ).fetchall()
        )
    t = api.query("SELECT line_id, ship_date FROM silver.sales_lines WHERE source_system = 'oltp'", settings=s)
    assert dict(zip(t["line_id"].to_pylist(), t["ship_date"].to_pylist())) == shipped


def test_rows_sharing_updated_at_and_late_commit_in_overlap(postgres_settings) -> None:
    s = postgres_settings
    api.generate_oltp(orders=300, seed=5, settings=s)
    api.ingest_postgres(settings=s)
    with owner(s) as conn:
        # one transaction: 40 orders change with one identical updated_at
        conn.execute("UPDATE orders SET ship_mode = 'Second Class', updated_at = now() WHERE order_id <= 40")
        top = conn.execute("SELECT max(updated_at) FROM orders").fetchone()[0]
    first = api.ingest_postgres(settings=s)
    assert first.tables["orders"] == 40
    with owner(s) as conn:
        # a late commit: updated_at older than the watermark, within the overlap window
        conn.execute(
            "UPDATE orders SET ship_mode = 'First Class', updated_at = %s - interval '2 seconds' "
            "WHERE order_id BETWEEN 41 AND 45",
            (top,),
        )
        # and another row at exactly the watermark's updated_at
        conn.execute("UPDATE orders SET ship_mode = 'Same Day', updated_at = %s WHERE order_id = 46", (top,))
    late = api.ingest_postgres(settings=s)
    assert late.tables["orders"] == 6  # the 40 already taken are not taken again
    t = api.query(
        "SELECT order_id, any_value(ship_mode) AS m FROM silver.sales_lines WHERE source_system = 'oltp' "
        "AND CAST(order_id AS BIGINT) <= 46 GROUP BY 1",
        settings=s,
    )
    got = dict(zip(t["order_id"].to_pylist(), t["m"].to_pylist()))
    with owner(s) as conn:
        live = {
            str(r[0]): r[1]
            for r in conn.execute(
                "SELECT order_id, ship_mode FROM orders WHERE order_id <= 46 AND status <> 'cancelled' "
                "AND deleted_at IS NULL AND order_id IN (SELECT order_id FROM order_lines WHERE deleted_at IS NULL)"
            )
        }
    assert got == live
    assert silver_state(s) == source_state(s)


def test_crash_between_extract_and_commit_then_rerun(postgres_settings, monkeypatch) -> None:
    s = postgres_settings
    api.generate_oltp(orders=500, seed=11, settings=s)
    api.ingest_postgres(settings=s)
    api.generate_oltp(mutate=True, settings=s)

    import saleslake.silver.oltp as silver_oltp

    real = silver_oltp.apply_extract

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash after bronze and positions were written")

    monkeypatch.setattr(silver_oltp, "apply_extract", crash)
    with pytest.raises(RuntimeError):
        api.ingest_postgres(settings=s)
    monkeypatch.setattr(silver_oltp, "apply_extract", real)
    result = api.ingest_postgres(settings=s)
    assert result.extract_seq == 2  # the crashed extract 1 never committed
    assert silver_state(s) == source_state(s)
    assert sum(api.ingest_postgres(settings=s).tables.values()) == 0
    assert silver_state(s) == source_state(s)


def test_lost_connection_during_extract_is_retried(postgres_settings, monkeypatch) -> None:
    """The server drops the extract's session mid-way (as in a restart): retried, nothing
    lost or doubled."""
    s = postgres_settings
    api.generate_oltp(orders=400, seed=13, settings=s)
    import saleslake.sources.postgres as src

    real = src.copy_to_parquet
    calls = {"n": 0}

    def killing(conn, query, table, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third table of the first attempt
            pid = conn.info.backend_pid
            with owner(s) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return real(conn, query, table, *args, **kwargs)

    monkeypatch.setattr(src, "copy_to_parquet", killing)
    result = api.ingest_postgres(settings=s)
    assert result.attempts == 2
    assert silver_state(s) == source_state(s)


def test_scd2_history_from_updated_at_and_sql_text_in_gold(postgres_settings) -> None:
    s = postgres_settings
    api.generate_oltp(orders=600, seed=17, settings=s)
    api.ingest_postgres(settings=s)
    api.run(settings=s)
    with owner(s) as conn:
        customer, segment, _name = conn.execute(
            "SELECT customer_id, segment, customer_name FROM customers c WHERE EXISTS "
            "(SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id) ORDER BY customer_id LIMIT 1"
        ).fetchone()
        new_segment = "Corporate" if segment != "Corporate" else "Consumer"
        conn.execute(
            "UPDATE customers SET segment = %s, updated_at = timestamptz '2026-03-01 12:00:00+00' "
            "WHERE customer_id = %s",
            (new_segment, customer),
        )
        product = conn.execute(
            "SELECT product_id FROM products WHERE product_name LIKE %s", ("%" + SQL_INJECTION_TEXT,)
        ).fetchone()[0]
        conn.execute(
            "UPDATE products SET product_name = product_name || ' v2', "
            "updated_at = timestamptz '2026-04-01 08:00:00+00' WHERE product_id = %s",
            (product,),
        )
    api.ingest_postgres(settings=s)
    api.run(settings=s)
    t = api.query(
        f"SELECT segment, valid_from, valid_to, is_current, version FROM gold.dim_customer "
        f"WHERE customer_id = '{customer}' ORDER BY version",
        settings=s,
    ).to_pylist()
    assert [r["segment"] for r in t] == [segment, new_segment]
    assert t[1]["valid_from"] == date(2026, 3, 1) and t[0]["valid_to"] == date(2026, 3, 1)
    assert t[1]["is_current"] and t[1]["valid_to"] == date(9999, 12, 31)
    p = api.query(
        f"SELECT product_name, valid_from FROM gold.dim_product WHERE product_id = '{product}' ORDER BY version",
        settings=s,
    ).to_pylist()
    assert p[-1]["product_name"].endswith(SQL_INJECTION_TEXT + " v2") and p[-1]["valid_from"] == date(2026, 4, 1)
    names = api.query("SELECT DISTINCT customer_name FROM gold.dim_customer", settings=s)["customer_name"].to_pylist()
    assert "Robert" + SQL_INJECTION_TEXT in names
    # stores get name and channel from their reference states, the planted name unchanged
    stores = api.query(
        "SELECT store_id, store_name, channel FROM gold.dim_store WHERE store_sk <> -1", settings=s
    ).to_pylist()
    assert stores and all(r["store_name"] and r["channel"] in ("store", "outlet") for r in stores)
    assert any(r["store_name"] == 'Kiosk "Terminal 2"' + SQL_INJECTION_TEXT for r in stores)
    # reconciliation: gold facts equal silver lines
    f = api.query("SELECT count(*) AS n, sum(sales) AS s FROM gold.fact_sales", settings=s).to_pylist()[0]
    n, total, _ = source_state(s)
    assert (f["n"], f["s"]) == (n, total)
    # a cancellation leaves gold
    with owner(s) as conn:
        order_id = conn.execute(
            "SELECT order_id FROM orders WHERE status = 'placed' AND deleted_at IS NULL ORDER BY order_id LIMIT 1"
        ).fetchone()[0]
        conn.execute(
            "UPDATE orders SET status = 'cancelled', cancelled_at = now(), updated_at = now() WHERE order_id = %s",
            (order_id,),
        )
    api.ingest_postgres(settings=s)
    api.run(settings=s)
    assert (
        api.query(f"SELECT count(*) AS n FROM gold.fact_sales WHERE order_id = '{order_id}'", settings=s).to_pylist()[
            0
        ]["n"]
        == 0
    )
    f = api.query("SELECT count(*) AS n, sum(sales) AS s FROM gold.fact_sales", settings=s).to_pylist()[0]
    n, total, _ = source_state(s)
    assert (f["n"], f["s"]) == (n, total)


def test_bad_inputs(postgres_settings, monkeypatch) -> None:
    s = postgres_settings
    runner = CliRunner()
    # wrong password: clear message, no password
    import os

    reader_file = os.environ["SALESLAKE_POSTGRES_READER_PASSWORD_FILE"]
    monkeypatch.delenv("SALESLAKE_POSTGRES_READER_PASSWORD_FILE")
    monkeypatch.setenv("SALESLAKE_POSTGRES_READER_PASSWORD", "wrong-secret-123")
    with pytest.raises(UserError) as info:
        api.ingest_postgres(settings=s)
    assert "wrong-secret-123" not in str(info.value) and "refused" in str(info.value)
    monkeypatch.delenv("SALESLAKE_POSTGRES_READER_PASSWORD")
    monkeypatch.setenv("SALESLAKE_POSTGRES_READER_PASSWORD_FILE", reader_file)
    # wrong DSN: nobody listens there
    bad = s.model_copy(update={"oltp": s.oltp.model_copy(update={"retries": 0})})
    with pytest.raises(TransientError) as info:
        api.ingest_postgres(dsn="postgresql://saleslake_reader@127.0.0.1:1/shop", settings=bad)
    assert "127.0.0.1:1" in str(info.value)
    # missing table
    with pytest.raises(OltpSourceError, match=r"table public\.stores \(logical stores\) not found"):
        api.ingest_postgres(settings=s)
    api.generate_oltp(orders=100, seed=1, settings=s)
    with owner(s) as conn:
        conn.execute("ALTER TABLE orders RENAME COLUMN ship_mode TO shipping_mode")
    with pytest.raises(OltpSourceError, match=r"column public\.orders\.ship_mode not found"):
        api.ingest_postgres(settings=s)
    result = runner.invoke(
        app,
        ["ingest", "postgres", "--home", str(s.home)],
        env={"SALESLAKE_POSTGRES__PORT": str(s.postgres.port), "SALESLAKE_POSTGRES__DATABASE": s.postgres.database},
    )
    assert result.exit_code == 1 and "ship_mode not found" in result.output
    assert "Traceback" not in result.output
    with owner(s) as conn:
        conn.execute("ALTER TABLE orders RENAME COLUMN shipping_mode TO ship_mode")
        conn.execute("ALTER TABLE orders ALTER COLUMN order_ts TYPE text")
    with pytest.raises(OltpSourceError, match=r"order_ts has type text .*expected timestamptz"):
        api.ingest_postgres(settings=s)
    with pytest.raises(UserError, match="unknown table"):
        api.ingest_postgres(tables=["nope"], settings=s)


def test_the_extract_reads_a_password_only_to_connect_and_only_its_roles(postgres_settings, monkeypatch, tmp_path):
    """The reader's password is read when the extract connects as the reader: a DSN naming
    the owner takes the owner's and needs no reader password at all; a reader password
    file that is missing is one line naming it."""
    s = postgres_settings
    api.generate_oltp(orders=100, seed=1, settings=s)
    missing = tmp_path / "no-such-password-file"
    monkeypatch.setenv("SALESLAKE_POSTGRES_READER_PASSWORD_FILE", str(missing))
    as_owner = api.ingest_postgres(dsn=s.postgres.dsn_for("owner"), settings=s)
    with owner(s) as conn:
        assert as_owner.tables["orders"] == conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 100
    result = CliRunner().invoke(
        app,
        ["ingest", "postgres", "--home", str(s.home)],
        env={"SALESLAKE_POSTGRES__PORT": str(s.postgres.port), "SALESLAKE_POSTGRES__DATABASE": s.postgres.database},
    )
    lines = [t for t in result.output.splitlines() if t.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "SALESLAKE_POSTGRES_READER_PASSWORD_FILE" in lines[0] and str(missing) in lines[0]


def test_quarantine_tables_option_and_cli(postgres_settings) -> None:
    """A line breaking CONTRACT §4 is quarantined with its reason and leaves silver;
    --tables limits the extract; the CLI prints a summary."""
    s = postgres_settings
    api.generate_oltp(orders=300, seed=19, settings=s)
    runner = CliRunner()
    env = {"SALESLAKE_POSTGRES__PORT": str(s.postgres.port), "SALESLAKE_POSTGRES__DATABASE": s.postgres.database}
    result = runner.invoke(app, ["ingest", "postgres", "--home", str(s.home)], env=env)
    assert result.exit_code == 0, result.output
    assert "extract 0:" in result.output and "lines valid" in result.output
    assert silver_state(s) == source_state(s)
    with owner(s) as conn:
        conn.execute("ALTER TABLE order_lines DROP CONSTRAINT order_lines_quantity_check")
        line_id = conn.execute(
            "SELECT l.order_line_id FROM order_lines l JOIN orders o USING (order_id) WHERE o.status <> 'cancelled' "
            "AND o.deleted_at IS NULL AND l.deleted_at IS NULL ORDER BY 1 LIMIT 1"
        ).fetchone()[0]
        conn.execute("UPDATE order_lines SET quantity = 0, updated_at = now() WHERE order_line_id = %s", (line_id,))
        conn.execute(
            "UPDATE customers SET segment = 'Home Office', updated_at = now() WHERE customer_id = 'CU-0000001'"
        )
    only_customers = api.ingest_postgres(tables=["customers"], settings=s)
    assert only_customers.tables == {"customers": 1} and only_customers.reference == {"customers": 1}
    assert str(line_id) in silver_state(s)[2]  # lines not extracted yet
    both = api.ingest_postgres(settings=s)
    assert both.tables["order_lines"] == 1 and both.tables["customers"] == 0
    assert both.silver.rows_quarantined == 1 and both.removed == 1
    q = api.quarantine(settings=s).to_pylist()
    assert any(r["line_id"] == str(line_id) and "non_positive_quantity" in r["reasons"] for r in q)
    n, total, keys = source_state(s)
    assert silver_state(s) == (n - 1, total, keys - {str(line_id)})  # quantity 0: sales 0
    # a rerun changes nothing
    assert sum(api.ingest_postgres(settings=s).tables.values()) == 0
    assert len([r for r in api.quarantine(settings=s).to_pylist() if r["line_id"] == str(line_id)]) == 1
    positions = api.query("SELECT DISTINCT table_name FROM system.oltp_positions", settings=s)
    assert len(positions) == 5


def test_server_restart_during_extract(postgres_settings, postgres_service, monkeypatch) -> None:
    """The real server restarts between two tables of an extract: the read is retried
    with backoff once it is back, from the same position; nothing lost or doubled."""
    from saleslake.devservices.postgres import start_postgres, stop_postgres

    s = postgres_settings
    api.generate_oltp(orders=400, seed=23, settings=s)
    api.ingest_postgres(settings=s)
    api.generate_oltp(mutate=True, settings=s)
    import saleslake.sources.postgres as src

    real = src.copy_to_parquet
    calls = {"n": 0}

    def restarting(conn, query, table, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            stop_postgres(postgres_service)
            start_postgres(postgres_service)
        return real(conn, query, table, *args, **kwargs)

    monkeypatch.setattr(src, "copy_to_parquet", restarting)
    try:
        result = api.ingest_postgres(settings=s)
    finally:
        start_postgres(postgres_service)  # idempotent: leave it running for the other tests
    assert result.attempts == 2
    assert silver_state(s) == source_state(s)
    assert sum(api.ingest_postgres(settings=s).tables.values()) == 0


def _new_order(conn, order_id: int, customer: str, minutes: int, product: str, quantity: int) -> None:
    """An order placed ``minutes`` after 2026-01-01 12:00 UTC (after the generated shop's
    orders), one line, copied from order 1's shape."""
    conn.execute(
        """INSERT INTO orders SELECT %s, %s, store_id, channel, timestamptz '2026-01-01 12:00:00+00' + %s * interval '1 minute',
                  'placed', ship_mode, order_priority, NULL, ship_city, ship_state, ship_country, ship_postal_code,
                  ship_region, ship_market, currency, NULL, now(), now(), NULL FROM orders WHERE order_id = 1""",
        (order_id, customer, minutes),
    )
    conn.execute(
        """INSERT INTO order_lines SELECT %s, %s, 1, %s, %s, 10.00, 0, 4.00, 0, now(), now(), NULL""",
        (order_id * 100, order_id, product, quantity),
    )


def test_velocity_and_quantity_norm_on_operational_lines(postgres_settings) -> None:
    """The history rules of CONTRACT §7 for the operational source, decided in gold:
    seven orders of one customer within ten minutes (over two extracts, each followed by
    an incremental gold build) flag the sixth and seventh; a quantity far above the
    product's norm (its mean over the shop's two years of orders) is flagged. Silver keeps
    the line rules only."""
    fraud = postgres_settings.fraud.model_copy(update={"quantity_norm_min_lines": 8, "quantity_norm_days": 731})
    s = postgres_settings.model_copy(update={"fraud": fraud})
    api.generate_oltp(orders=400, seed=9, settings=s)
    api.ingest_postgres(settings=s)
    api.run(settings=s)
    norm = api.query(
        "SELECT product_id, count(*) AS n, avg(quantity) AS q FROM silver.sales_lines "
        "GROUP BY 1 ORDER BY n DESC, product_id LIMIT 1",
        settings=s,
    ).to_pylist()[0]
    assert norm["n"] >= s.fraud.quantity_norm_min_lines
    with owner(s) as conn:
        customer = conn.execute("SELECT customer_id FROM customers ORDER BY customer_id LIMIT 1").fetchone()[0]
        for i in range(4):  # orders 0..3 at minutes 0, 1, 2, 3
            _new_order(conn, 900_000 + i, customer, i, norm["product_id"], 1)
    api.ingest_postgres(settings=s)
    api.run(settings=s)
    with owner(s) as conn:
        for i in range(4, 7):  # minutes 4, 5, 6: the 6th and 7th order in the window
            _new_order(conn, 900_000 + i, customer, i, norm["product_id"], 1)
        big = int(norm["q"] * 10) + 1
        _new_order(conn, 900_100, customer, 600, norm["product_id"], big)
    api.ingest_postgres(settings=s)
    api.run(settings=s)
    gold_runs = [r for r in api.status(limit=10, settings=s) if "gold" in r.get("stages", {})]
    assert gold_runs[0]["stages"]["gold"]["details"]["fact_changes"]["mode"] == "incremental"
    rows = api.query(
        "SELECT order_id, quantity, fraud_reasons, is_suspected_fraud FROM gold.fact_sales "
        "WHERE CAST(order_id AS BIGINT) >= 900000 ORDER BY CAST(order_id AS BIGINT)",
        settings=s,
    ).to_pylist()
    flagged = {r["order_id"]: r["fraud_reasons"] for r in rows if r["is_suspected_fraud"]}
    assert flagged == {"900005": "velocity", "900006": "velocity", "900100": "quantity_above_norm"}
    assert len(rows) == 8
    history = "SELECT count(*) AS n FROM silver.sales_lines WHERE list_has_any(fraud_reasons, ['velocity', 'quantity_above_norm'])"
    assert api.query(history, settings=s).to_pylist() == [{"n": 0}]


def test_implausible_dates_and_amounts_are_quarantined_not_blocking_gold(postgres_settings) -> None:
    """Issue 14.3 for the operational source: dates outside quality.min_date … max_date
    (an order's, a reference state's updated_at, which starts its SCD2 version) and
    amounts beyond their types are quarantined; gold builds and reconciles."""
    s = postgres_settings
    api.generate_oltp(orders=300, seed=23, settings=s)
    live = "o.status <> 'cancelled' AND o.deleted_at IS NULL AND l.deleted_at IS NULL"
    with owner(s) as conn:
        # before the first extract: a state older than any watermark is only read then
        conn.execute(
            "UPDATE customers SET updated_at = timestamptz '1800-01-01 00:00:00+00' WHERE customer_id = 'CU-0000002'"
        )
        conn.execute("ALTER TABLE order_lines DROP CONSTRAINT order_lines_quantity_check")
        far, huge = conn.execute(
            f"SELECT min(l.order_id), max(l.order_line_id) FROM order_lines l JOIN orders o USING (order_id) WHERE {live}"
        ).fetchone()
        conn.execute(
            "UPDATE orders SET order_ts = timestamptz '9999-12-31 12:00:00+00', ship_date = NULL, status = 'placed', "
            "updated_at = now() WHERE order_id = %s",
            (far,),
        )
        conn.execute(
            "UPDATE order_lines SET quantity = 1000000, unit_price = 9999999999.99, updated_at = now() "
            "WHERE order_line_id = %s",
            (huge,),
        )
        far_lines = {
            str(r[0])
            for r in conn.execute(
                "SELECT order_line_id FROM order_lines WHERE order_id = %s AND deleted_at IS NULL", (far,)
            ).fetchall()
        }
        product = conn.execute("SELECT min(product_id) FROM products").fetchone()[0]
        conn.execute(
            "UPDATE products SET category = repeat('x', 1001), updated_at = now() WHERE product_id = %s", (product,)
        )
    result = api.ingest_postgres(settings=s)
    assert result.reference_quarantined == {"customers": 1, "products": 1}
    reasons = {
        (r["source_position"].split("@")[0], tuple(sorted(r["reasons"])))
        for r in api.quarantine(limit=100, settings=s).to_pylist()
    }
    assert ("postgres:customers/CU-0000002", ("invalid_date:updated_at",)) in reasons
    assert (f"postgres:products/{product}", ("text_too_long:category",)) in reasons
    assert (f"postgres:order_lines/{huge}", ("invalid_number:profit", "invalid_number:sales")) in reasons
    assert {(f"postgres:order_lines/{i}", ("invalid_date:order_date",)) for i in far_lines} <= reasons
    assert result.silver.rows_quarantined == len(far_lines) + 1 and result.silver.balanced
    in_silver = silver_state(s)[2]
    assert not (far_lines | {str(huge)}) & in_silver
    run = api.run(settings=s)
    assert run.status == "succeeded" and run.message == "gold published"
    f = api.query("SELECT count(*) AS n, sum(sales) AS s FROM gold.fact_sales", settings=s).to_pylist()[0]
    silver = api.query("SELECT count(*) AS n, sum(sales) AS s FROM silver.sales_lines", settings=s).to_pylist()[0]
    assert f == silver
    years = api.query("SELECT max(year) AS hi FROM gold.dim_date", settings=s).to_pylist()[0]["hi"]
    assert years <= 2100
