"""`saleslake generate oltp`: the operational shop database, filled and mutated in a real
PostgreSQL (the session's ``postgres_service``, a fresh database per test)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pge
from typer.testing import CliRunner

from saleslake import api
from saleslake.cli import app
from saleslake.devservices.postgres import create_database
from saleslake.errors import UserError
from saleslake.sample.oltp import SQL_INJECTION_TEXT, TABLES, OltpGeneratorError

KEYS = {
    "stores": "store_id",
    "customers": "customer_id",
    "products": "product_id",
    "orders": "order_id",
    "order_lines": "order_line_id",
}


def owner(settings, database: str | None = None) -> psycopg.Connection:
    pg = settings.postgres
    return psycopg.connect(
        host="127.0.0.1",
        port=pg.port,
        dbname=database or pg.database,
        user=pg.user,
        password=pg.password("owner"),
        autocommit=True,
    )


def fingerprint(settings, database: str | None = None) -> dict[str, str]:
    """md5 of every table's full content in key order."""
    with owner(settings, database) as conn:
        return {
            t: conn.execute(f"SELECT md5(string_agg(t::text, '|' ORDER BY {KEYS[t]})) FROM {t} t").fetchone()[0]
            for t in TABLES
        }


def rows(conn: psycopg.Connection, table: str) -> dict:
    return {r[0]: r for r in conn.execute(f"SELECT {KEYS[table]}, * FROM {table}").fetchall()}


def test_fill_counts_keys_and_determinism(postgres_settings, postgres_service) -> None:
    s = postgres_settings
    summary = api.generate_oltp(orders=3000, seed=7, settings=s)
    assert summary.action == "filled" and summary.seed == 7 and summary.orders == 3000
    assert summary.dsn == f"postgresql://saleslake@127.0.0.1:{s.postgres.port}/{s.postgres.database}"
    with owner(s) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        assert counts == summary.tables == summary.loaded
        assert counts["orders"] == 3000 and counts["customers"] == 750 and counts["products"] == 3003
        assert 3000 * 1.5 < counts["order_lines"] < 3000 * 4
        assert counts["stores"] >= 26

        # primary, unique and foreign keys exist and hold
        constraints = {
            r[0]
            for r in conn.execute(
                "SELECT conname FROM pg_constraint WHERE contype IN ('p', 'f', 'u') AND connamespace = 'public'::regnamespace"
            )
        }
        assert {
            "orders_customer_fk",
            "orders_store_fk",
            "order_lines_order_fk",
            "order_lines_product_fk",
            "orders_pkey",
            "order_lines_pkey",
            "order_lines_order_id_line_no_key",
        } <= constraints
        orphans = conn.execute("""
            SELECT (SELECT count(*) FROM order_lines l LEFT JOIN orders o USING (order_id) WHERE o.order_id IS NULL)
                 + (SELECT count(*) FROM order_lines l LEFT JOIN products p USING (product_id) WHERE p.product_id IS NULL)
                 + (SELECT count(*) FROM orders o LEFT JOIN customers c USING (customer_id) WHERE c.customer_id IS NULL)
                 + (SELECT count(*) FROM orders o WHERE o.store_id IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM stores s WHERE s.store_id = o.store_id))""").fetchone()[0]
        assert orphans == 0
        assert (
            conn.execute(
                "SELECT count(*) FROM orders o WHERE NOT EXISTS "
                "(SELECT 1 FROM order_lines l WHERE l.order_id = o.order_id)"
            ).fetchone()[0]
            == 0
        )
        indexed = {r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'")}
        for table, key in KEYS.items():
            assert any(f"ON public.{table} USING btree (updated_at, {key})" in d for d in indexed), table

        # realistic states: every status, cancellations, soft deletes, unshipped orders
        status = dict(conn.execute("SELECT status, count(*) FROM orders GROUP BY 1").fetchall())
        assert set(status) == {"placed", "shipped", "delivered", "cancelled"}
        assert status["delivered"] > 0.8 * 3000 and status["cancelled"] >= 10
        assert (
            conn.execute(
                "SELECT count(*) FROM orders WHERE (ship_date IS NULL) <> (status IN ('placed', 'cancelled'))"
            ).fetchone()[0]
            == 0
        )
        assert conn.execute("SELECT count(*) FROM orders WHERE deleted_at IS NOT NULL").fetchone()[0] >= 1
        assert conn.execute("SELECT count(*) FROM order_lines WHERE deleted_at IS NOT NULL").fetchone()[0] >= 1
        bad_times = conn.execute(
            "SELECT "
            + " + ".join(
                f"(SELECT count(*) FROM {t} WHERE updated_at < created_at OR deleted_at > updated_at)" for t in TABLES
            )
        ).fetchone()[0]
        assert bad_times == 0
        assert conn.execute(
            "SELECT min(order_ts) >= '2024-01-01', max(order_ts) < '2026-01-01' FROM orders"
        ).fetchone() == (True, True)
        assert conn.execute("SELECT bool_and(store_id IS NULL) FROM orders WHERE channel = 'web'").fetchone()[0]
        # money: sales = quantity × unit_price > 0, discount in [0, 0.7], unit price = list price (no changes yet)
        assert (
            conn.execute(
                "SELECT count(*) FROM order_lines l JOIN products p USING (product_id) "
                "WHERE l.unit_price <> p.list_price OR l.quantity <= 0 OR l.discount > 0.7"
            ).fetchone()[0]
            == 0
        )
        # the product catalog is the CSV exports' catalog
        from saleslake.sample.csv_export import master_data

        catalog = master_data(seed=7, rows=0)
        some = dict(
            conn.execute(
                "SELECT product_id, product_name FROM products WHERE product_id = ANY(%s)", (catalog.product_id[:50],)
            ).fetchall()
        )
        assert some == dict(zip(catalog.product_id[:50], catalog.product_name[:50]))

    # same seed, same shop (in another database); another seed, another shop
    twin = f"{s.postgres.database}_twin"
    other = f"{s.postgres.database}_other"
    for name in (twin, other):
        create_database(postgres_service, name, "owner")
    dsn = f"postgresql://saleslake@127.0.0.1:{s.postgres.port}/"
    api.generate_oltp(dsn=dsn + twin, orders=3000, seed=7, settings=s)
    api.generate_oltp(dsn=dsn + other, orders=3000, seed=8, settings=s)
    first = fingerprint(s)
    assert fingerprint(s, twin) == first
    different = fingerprint(s, other)
    assert all(different[t] != first[t] for t in ("customers", "orders", "order_lines"))


def test_text_with_quotes_and_sql_arrives_verbatim(postgres_settings) -> None:
    s = postgres_settings
    api.generate_oltp(orders=500, settings=s)
    with owner(s) as conn:
        names = [r[0] for r in conn.execute("SELECT customer_name FROM customers ORDER BY customer_id LIMIT 3")]
        assert names == ["Robert'); DROP TABLE orders; --", 'Zoë "Zed" O\'Connor-Łukasiewicz', "Sam Back\\slash"]
        assert conn.execute("SELECT address_line FROM customers WHERE customer_id = 'CU-0000003'").fetchone() == (
            'c/o Reception\nBuilding 2; Suite "B"',
        )
        products = dict(conn.execute("SELECT product_id, product_name FROM products WHERE product_id LIKE '%-999999%'"))
        assert products == {
            "OFF-PA-99999901": "Copy Paper'); DROP TABLE orders; --",
            "FUR-TA-99999902": 'Conference Table 72" x 36" "Executive"',
            "TEC-AC-99999903": "USB-C Hub; DELETE FROM products WHERE '1'='1",
        }
        stores = [r[0] for r in conn.execute("SELECT store_name FROM stores WHERE store_name LIKE '%DROP TABLE%'")]
        assert stores == ['Kiosk "Terminal 2"' + SQL_INJECTION_TEXT]
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 500  # still there, of course


def test_rerun_changes_nothing_and_other_values_need_replace(postgres_settings) -> None:
    s = postgres_settings
    api.generate_oltp(orders=800, seed=3, settings=s)
    before = fingerprint(s)
    again = api.generate_oltp(orders=800, seed=3, settings=s)
    assert again.action == "unchanged" and again.loaded == {} and again.tables["orders"] == 800
    assert fingerprint(s) == before
    with pytest.raises(OltpGeneratorError, match=r"seed 3 and 800 orders.*--replace"):
        api.generate_oltp(orders=900, seed=3, settings=s)
    replaced = api.generate_oltp(orders=900, seed=3, settings=s, replace=True)
    assert replaced.action == "filled" and replaced.tables["orders"] == 900
    with pytest.raises(UserError, match="positive"):
        api.generate_oltp(orders=0, settings=s)

    # tables someone else made are never dropped without --replace
    with owner(s) as conn:
        conn.execute("DROP TABLE saleslake_generator_log")
    with pytest.raises(OltpGeneratorError, match="did not generate"):
        api.generate_oltp(orders=900, seed=3, settings=s)


def test_mutate_changes_what_it_says(postgres_settings) -> None:
    s = postgres_settings
    api.generate_oltp(orders=4000, seed=11, settings=s)
    with owner(s) as conn:
        before = {t: rows(conn, t) for t in TABLES}
        high_water = conn.execute("SELECT max(updated_at) FROM orders").fetchone()[0]
        db_now = conn.execute("SELECT now()").fetchone()[0]

    summary = api.generate_oltp(mutate=True, settings=s)
    ch = summary.changes
    assert summary.action == "mutated" and summary.round == 1
    with owner(s) as conn:
        after = {t: rows(conn, t) for t in TABLES}
        stamps = {
            r[0]
            for r in conn.execute(
                " UNION ".join(f"SELECT DISTINCT updated_at FROM {t} WHERE updated_at > %s" for t in TABLES),
                [high_water] * len(TABLES),
            )
        }
        col = {t: [d.name for d in conn.execute(f"SELECT {KEYS[t]}, * FROM {t} LIMIT 0").description] for t in TABLES}

    def changed(table: str, *columns: str) -> set:
        idx = [col[table].index(c) for c in columns]
        return {k for k, r in before[table].items() if any(r[i] != after[table][k][i] for i in idx)}

    # every change the summary reports is in the data, with updated_at = now() of its transaction
    assert len(changed("customers", "city", "address_line")) == ch["customer_moves"] >= 3
    assert len(changed("customers", "segment")) == ch["customer_segment_changes"] >= 2
    assert len(changed("products", "list_price")) == ch["product_price_changes"] >= 3
    assert len(changed("products", "product_name")) == ch["product_name_changes"] >= 2
    status_idx = col["orders"].index("status")
    transitions: dict[tuple, int] = {}
    for k, r in before["orders"].items():
        pair = (r[status_idx], after["orders"][k][status_idx])
        if pair[0] != pair[1]:
            transitions[pair] = transitions.get(pair, 0) + 1
    assert transitions.get(("placed", "shipped"), 0) == ch["orders_shipped"] >= 1
    assert transitions.get(("shipped", "delivered"), 0) == ch["orders_delivered"] >= 1
    assert transitions.get(("placed", "cancelled"), 0) == ch["orders_cancelled"] >= 1
    assert len(changed("orders", "deleted_at")) == ch["orders_deleted"] >= 2
    assert len(changed("order_lines", "deleted_at")) == ch["order_lines_deleted"] >= 1
    assert len(after["orders"]) - len(before["orders"]) == ch["new_orders"] == 20
    assert len(after["order_lines"]) - len(before["order_lines"]) == ch["new_order_lines"] >= 20
    assert summary.tables["orders"] == 4020

    upd = {t: col[t].index("updated_at") for t in TABLES}
    for table in TABLES:
        for k, r in after[table].items():
            if k not in before[table] or r != before[table][k]:
                assert r[upd[table]] in stamps and r[upd[table]] >= db_now, (table, k)
            else:
                assert r[upd[table]] <= high_water
    assert 2 <= len(stamps) <= 5  # one per transaction (a few kinds of change may share none)

    # several rows share one identical updated_at, as the summary says
    shared = sum(1 for t in TABLES for r in after[t].values() if r[upd[t]].isoformat() == summary.shared_updated_at)
    assert shared == summary.shared_updated_at_rows >= 20

    # the details are realistic: shipped orders got a ship date, new orders take today's prices
    ship_idx = col["orders"].index("ship_date")
    for k, r in after["orders"].items():
        if k in before["orders"] and (before["orders"][k][status_idx], r[status_idx]) == ("placed", "shipped"):
            assert r[ship_idx] is not None
    with owner(s) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM order_lines l JOIN products p USING (product_id) "
                "WHERE l.order_id > 4000 AND l.unit_price <> p.list_price"
            ).fetchone()[0]
            == 0
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM products WHERE product_name LIKE %s", ('%"Limited"' + SQL_INJECTION_TEXT,)
            ).fetchone()[0]
            == 1
        )

    # a second round picks other rows and is recorded
    second = api.generate_oltp(mutate=True, settings=s)
    assert second.round == 2 and second.tables["orders"] == 4040
    with owner(s) as conn:
        log = conn.execute("SELECT kind, counts FROM saleslake_generator_log ORDER BY run_no").fetchall()
    assert [k for k, _ in log] == ["fill", "mutate", "mutate"] and log[1][1] == ch


def test_mutate_on_an_empty_database_fills_first(postgres_settings) -> None:
    summary = api.generate_oltp(orders=300, mutate=True, settings=postgres_settings)
    assert summary.loaded["orders"] == 300 and summary.round == 1 and summary.tables["orders"] == 310


def test_reader_role_reads_the_shop_but_cannot_change_it(postgres_settings, postgres_service) -> None:
    s = postgres_settings
    api.generate_oltp(orders=200, settings=s)
    pg = s.postgres
    with psycopg.connect(
        host="127.0.0.1",
        port=pg.port,
        dbname=pg.database,
        user=pg.reader_user,
        password=pg.password("reader"),
        autocommit=True,
    ) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 200
        with pytest.raises((pge.InsufficientPrivilege, pge.ReadOnlySqlTransaction)):
            conn.execute("DELETE FROM orders")
    with pytest.raises(UserError, match="may not create"):
        api.generate_oltp(dsn=pg.dsn_for("reader"), orders=200, seed=1, settings=s, replace=True)


def test_cli_takes_the_password_from_the_file_and_never_prints_it(postgres_settings, monkeypatch) -> None:
    s = postgres_settings
    password = s.postgres.password("owner")
    monkeypatch.setenv("SALESLAKE_POSTGRES__PORT", str(s.postgres.port))
    monkeypatch.setenv("SALESLAKE_POSTGRES__DATABASE", s.postgres.database)
    runner = CliRunner()
    filled = runner.invoke(app, ["generate", "oltp", "--orders", "1000", "--home", str(s.home)])
    assert filled.exit_code == 0, filled.output
    assert "1,000 orders" in filled.output and f"127.0.0.1:{s.postgres.port}/{s.postgres.database}" in filled.output
    mutated = runner.invoke(
        app,
        [
            "generate",
            "oltp",
            "--mutate",
            "--dsn",
            f"postgresql://saleslake@127.0.0.1:{s.postgres.port}/{s.postgres.database}",
        ],
    )
    assert mutated.exit_code == 0, mutated.output
    assert "mutation round 1:" in mutated.output and "share updated_at" in mutated.output

    monkeypatch.delenv("SALESLAKE_POSTGRES_PASSWORD_FILE")
    missing = runner.invoke(app, ["generate", "oltp", "--home", str(s.home)])
    assert missing.exit_code == 1 and "SALESLAKE_POSTGRES_PASSWORD_FILE" in missing.output
    monkeypatch.setenv("SALESLAKE_POSTGRES_PASSWORD", "not-the-password")
    wrong = runner.invoke(app, ["generate", "oltp", "--home", str(s.home)])
    assert wrong.exit_code == 1 and "password authentication failed" in wrong.output
    assert "not-the-password" not in wrong.output
    for output in (filled.output, mutated.output, missing.output, wrong.output):
        assert password not in output and "Traceback" not in output
