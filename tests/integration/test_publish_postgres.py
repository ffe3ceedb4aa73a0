"""`saleslake publish postgres`: gold into a real PostgreSQL warehouse (the session's
``postgres_service``, a fresh warehouse database per test): equal to gold, atomic for
readers, idempotent, incremental, versioned DDL, secrets kept out of errors."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from saleslake import api
from saleslake.cli import app
from saleslake.errors import TransientError, UserError
from saleslake.serve.postgres import LATEST_VERSION, migrate, schema_version

INJECTION = "'); DROP TABLE orders; --"
ODD_PRODUCT = 'Chair "Deluxe", 2 seats; \\N tab\there'
HEADER = (
    "Row ID,Order ID,Order Date,Ship Date,Ship Mode,Customer ID,Customer Name,Segment,City,State,Country,"
    "Postal Code,Market,Region,Product ID,Category,Sub-Category,Product Name,Sales,Quantity,Discount,Profit,"
    "Shipping Cost,Order Priority"
)
TABLES = ("dim_date", "dim_customer", "dim_product", "dim_store", "dim_geography", "fact_sales", "agg_sales_daily")
KEYS = {
    "dim_date": "date_key",
    "dim_customer": "customer_sk",
    "dim_product": "product_sk",
    "dim_store": "store_sk",
    "dim_geography": "geography_sk",
    "fact_sales": "line_key",
}


def odd_csv(path: Path) -> Path:
    """Two lines whose text must arrive unchanged."""
    product = '"' + ODD_PRODUCT.replace('"', '""') + '"'
    lines = [
        HEADER,
        f'1,XX-2021-0000001,31/12/20,05/01/21,Standard Class,ZZ-00001,"{INJECTION}",Consumer,Québec,Quebec,Canada,'
        f"G1R 4P5,Canada,Canada,FUR-CH-99999999,Furniture,Chairs,{product},172.38,3,0,20.2281,8.14,High",
        "2,XX-2021-0000002,30/12/20,05/01/21,Standard Class,ZZ-00002,Empty Segment,Consumer,Toronto,Ontario,Canada,,"
        "Canada,Canada,OFF-AR-99999999,Office Supplies,Art,Crayons,5.40,2,0,1.0324,0.47,Medium",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def warehouse(settings) -> psycopg.Connection:
    pg = settings.postgres
    return psycopg.connect(
        host="127.0.0.1",
        port=pg.port,
        dbname=pg.warehouse_database,
        user=pg.warehouse_user,
        password=pg.password("warehouse"),
        autocommit=True,
    )


def gold(settings, sql: str) -> list[tuple]:
    return [tuple(r.values()) for r in api.query(sql, settings=settings).to_pylist()]


def assert_equal_to_gold(settings, conn: psycopg.Connection) -> None:
    for table in TABLES:
        (pg_rows,) = conn.execute(f"SELECT count(*) FROM gold.{table}").fetchone()
        assert pg_rows == gold(settings, f"SELECT count(*) FROM gold.{table}")[0][0], table
    for table, key in KEYS.items():
        pg_keys = {r[0] for r in conn.execute(f"SELECT {key} FROM gold.{table}").fetchall()}
        assert pg_keys == {r[0] for r in gold(settings, f"SELECT {key} FROM gold.{table}")}, table
    sums = "SELECT sum(sales), sum(tax_amount), sum(net_sales), sum(quantity), count(*) FILTER (WHERE is_outlier) FROM gold.fact_sales"
    assert tuple(conn.execute(sums).fetchone()) == gold(settings, sums)[0]
    agg = "SELECT sum(sales), sum(tax_amount), sum(lines) FROM gold.agg_sales_daily"
    assert tuple(conn.execute(agg).fetchone()) == gold(settings, agg)[0]
    # every fact row, column by column (money exact), equals gold's
    columns = (
        "line_key, order_date_key, ship_date_key, customer_sk, product_sk, store_sk, geography_sk, sales, "
        "discount, profit, tax_amount, is_suspected_fraud, fraud_reasons, dq_score, order_priority"
    )
    pg_facts = set(conn.execute(f"SELECT {columns} FROM gold.fact_sales").fetchall())
    assert pg_facts == set(gold(settings, f"SELECT {columns} FROM gold.fact_sales"))
    # every foreign key resolves, and the constraints exist and are validated
    for column, dim, key in (
        ("order_date_key", "dim_date", "date_key"),
        ("ship_date_key", "dim_date", "date_key"),
        ("customer_sk", "dim_customer", "customer_sk"),
        ("product_sk", "dim_product", "product_sk"),
        ("store_sk", "dim_store", "store_sk"),
        ("geography_sk", "dim_geography", "geography_sk"),
    ):
        (orphans,) = conn.execute(
            f"SELECT count(*) FROM gold.fact_sales f LEFT JOIN gold.{dim} d ON d.{key} = f.{column} "
            f"WHERE d.{key} IS NULL"
        ).fetchone()
        assert orphans == 0, column
    (fks,) = conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'gold.fact_sales'::regclass "
        "AND contype = 'f' AND convalidated"
    ).fetchone()
    assert fks == 6


def fact_write_marks(conn: psycopg.Connection) -> dict[str, str]:
    """xmin (writing transaction) per fact row: unchanged marks = row not rewritten."""
    return dict(conn.execute("SELECT line_key, xmin::text FROM gold.fact_sales").fetchall())


def test_publish_equals_gold_idempotent_incremental_and_atomic(
    postgres_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = postgres_settings
    api.generate_csv(tmp_path / "csv1", rows=5_000, seed=7)
    api.ingest_csv([tmp_path / "csv1", odd_csv(tmp_path / "odd" / "odd.csv")], settings=s)
    api.run(settings=s)

    # the first load takes the bulk path (keys, indexes and foreign keys rebuilt in the swap)
    from saleslake.serve import postgres as publisher

    with monkeypatch.context() as patch:
        patch.setattr(publisher, "BULK_FACT_ROWS", 100)
        first = api.publish_postgres(settings=s)
    assert not first.skipped and first.migrations_applied == [1, 2, 3] and first.schema_version == LATEST_VERSION
    facts = gold(s, "SELECT count(*) FROM gold.fact_sales")[0][0]
    assert first.tables["fact_sales"].written == facts and first.tables["fact_sales"].deleted == 0
    assert "password" not in first.dsn
    with warehouse(s) as conn:
        assert_equal_to_gold(s, conn)
        names = {r[0] for r in conn.execute("SELECT customer_name FROM gold.dim_customer").fetchall()}
        assert INJECTION in names
        products = {r[0] for r in conn.execute("SELECT product_name FROM gold.dim_product").fetchall()}
        assert ODD_PRODUCT in products
        (orders_table,) = conn.execute(
            "SELECT count(*) FROM gold.fact_sales WHERE order_id = 'XX-2021-0000001'"
        ).fetchone()
        assert orders_table == 1
        (logs,) = conn.execute("SELECT count(*) FROM gold.saleslake_publish_log").fetchone()
        assert logs == 1
        marks = fact_write_marks(conn)
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'gold'")}
        assert {
            "fact_sales_pkey",
            "fact_sales_order_date_key_idx",
            "fact_sales_customer_sk_idx",
            "fact_sales_product_sk_idx",
            "fact_sales_store_sk_idx",
            "agg_sales_daily_date_key_idx",
        } <= indexes
        assert not {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE '%stage%'")}
        old_totals = conn.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone()

    # rerun: nothing changes (no log row, no row rewritten)
    again = api.publish_postgres(settings=s)
    assert again.skipped and again.rows_sent == 0 and again.fact_written == 0
    with warehouse(s) as conn:
        assert conn.execute("SELECT count(*) FROM gold.saleslake_publish_log").fetchone()[0] == 1
        assert fact_write_marks(conn) == marks
    # the CLI says so too
    env = {
        "SALESLAKE_POSTGRES__PORT": str(s.postgres.port),
        "SALESLAKE_POSTGRES__WAREHOUSE_DATABASE": s.postgres.warehouse_database,
    }
    outcome = CliRunner().invoke(app, ["publish", "postgres", "--home", str(s.home)], env=env)
    assert outcome.exit_code == 0, outcome.output
    assert "nothing changed" in outcome.output

    # more data: only the new or changed facts are written, while a reader sees old or new totals
    api.generate_csv(tmp_path / "csv2", rows=600, seed=8)
    api.ingest_csv([tmp_path / "csv2"], settings=s)
    api.run(settings=s)
    new_facts = gold(s, "SELECT count(*) FROM gold.fact_sales")[0][0]
    assert new_facts > facts
    seen: set[tuple] = set()
    stop = threading.Event()

    def reader() -> None:
        with warehouse(s) as conn:
            while not stop.is_set():
                seen.add(tuple(conn.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone()))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        second = api.publish_postgres(settings=s)
    finally:
        stop.set()
        thread.join()
    with warehouse(s) as conn:
        assert_equal_to_gold(s, conn)
        new_totals = conn.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone()
        now = fact_write_marks(conn)
        assert conn.execute("SELECT count(*) FROM gold.saleslake_publish_log").fetchone()[0] == 2
    assert seen <= {tuple(old_totals), tuple(new_totals)} and seen
    rewritten = {k for k, v in now.items() if marks.get(k) != v}
    removed = set(marks) - set(now)
    fact = second.tables["fact_sales"]
    assert fact.written == len(rewritten) and fact.deleted == len(removed)
    assert new_facts - facts <= fact.written < new_facts / 2  # incremental, not a reload
    assert not second.tables["dim_date"].written or second.tables["dim_date"].written < 400
    # and a third publish again changes nothing
    assert api.publish_postgres(settings=s).skipped


def test_migration_auto_publish_and_wrong_password(
    postgres_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = postgres_settings
    # an older warehouse: schema version 1, with a row of its own history
    with warehouse(s) as conn:
        assert migrate(conn, "gold", target=1) == [1]
        assert schema_version(conn, "gold") == 1
        conn.execute(
            "INSERT INTO gold.saleslake_publish_log (release_id, table_versions, rows_written) "
            "VALUES ('old-release', '{}', '{}')"
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'gold' "
                "AND table_name = 'fact_sales' AND column_name = '_row_hash'"
            ).fetchone()[0]
            == 0
        )

    # automatic publish at the end of the gold stage migrates (no data dropped) and publishes
    auto = s.model_copy(update={"postgres": s.postgres.model_copy(update={"publish_after_gold": True})})
    api.ingest_csv([odd_csv(tmp_path / "odd" / "odd.csv")], settings=auto)
    api.run(settings=auto)
    stages = api.status(settings=auto)[0]["stages"]
    assert stages["publish_postgres"]["status"] == "succeeded"
    assert stages["publish_postgres"]["details"]["migrations_applied"] == [2, 3]
    assert "password" not in str(stages["publish_postgres"]).lower()
    with warehouse(s) as conn:
        assert schema_version(conn, "gold") == LATEST_VERSION
        assert (
            next(r[0] for r in conn.execute("SELECT release_id FROM gold.saleslake_publish_log ORDER BY publish_id"))
            == "old-release"
        )
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'gold'")}
        assert {
            "fact_sales_order_date_key_idx",
            "fact_sales_customer_sk_idx",
            "fact_sales_product_sk_idx",
            "fact_sales_store_sk_idx",
            "agg_sales_daily_date_key_idx",
        } <= indexes
        assert_equal_to_gold(s, conn)
        assert conn.execute("SELECT count(*) FROM gold.fact_sales WHERE _row_hash IS NULL").fetchone()[0] == 0

    # another schema through --schema
    other = api.publish_postgres(schema="mart", settings=s)
    assert other.schema == "mart" and other.tables["fact_sales"].written == 2
    with pytest.raises(UserError, match="identifier"):
        api.publish_postgres(schema="bad; name", settings=s)

    # wrong password: one clear line, no password, exit 1
    good_password = s.postgres.password("warehouse")
    secret = "Wr0ng-S3cret-value"
    monkeypatch.delenv("SALESLAKE_POSTGRES_WAREHOUSE_PASSWORD_FILE")
    monkeypatch.setenv("SALESLAKE_POSTGRES_WAREHOUSE_PASSWORD", secret)
    with pytest.raises(UserError) as caught:
        api.publish_postgres(settings=s)
    message = str(caught.value)
    assert secret not in message and "\n" not in message and "password" in message
    outcome = CliRunner().invoke(
        app,
        [
            "publish",
            "postgres",
            "--home",
            str(s.home),
            "--dsn",
            f"host=127.0.0.1 port={s.postgres.port} dbname={s.postgres.warehouse_database} "
            f"user={s.postgres.warehouse_user}",
        ],
    )
    assert outcome.exit_code == 1
    assert secret not in outcome.output and outcome.output.strip().count("\n") == 0
    # the warehouse still holds the published gold
    with psycopg.connect(
        host="127.0.0.1",
        port=s.postgres.port,
        dbname=s.postgres.warehouse_database,
        user=s.postgres.warehouse_user,
        password=good_password,
    ) as conn:
        assert conn.execute("SELECT sum(sales) FROM gold.fact_sales").fetchone()[0] > Decimal(0)


def _bulk_publish_of_new_lines(s, folder: Path, seed: int, monkeypatch: pytest.MonkeyPatch):
    """2,000 new generated lines through gold, published with the bulk thresholds lowered."""
    from saleslake.serve import postgres as publisher

    api.generate_csv(folder, rows=2_000, seed=seed)
    api.ingest_csv([folder], settings=s)
    api.run(settings=s)
    with monkeypatch.context() as patch:
        patch.setattr(publisher, "BULK_FACT_ROWS", 100)
        patch.setattr(publisher, "BULK_FACT_SHARE", 0.1)
        return api.publish_postgres(settings=s)


def fact_oid(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT 'gold.fact_sales'::regclass::oid").fetchone()[0]


def fact_grants(conn: psycopg.Connection) -> set[tuple]:
    """(grantee, privilege) of the fact's ACL, the owner's own left out."""
    return set(
        conn.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type "
            "FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = 'gold.fact_sales'::regclass AND a.grantee <> c.relowner"
        ).fetchall()
    )


def test_bulk_publish_replaces_the_fact_keeping_grants_indexes_and_readers(
    postgres_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from saleslake.serve import postgres as publisher

    s = postgres_settings
    api.generate_csv(tmp_path / "csv1", rows=3_000, seed=11)
    api.ingest_csv([tmp_path / "csv1"], settings=s)
    api.run(settings=s)
    first = api.publish_postgres(settings=s)  # few rows: upserted into the migrated table
    assert first.tables["fact_sales"].written == gold(s, "SELECT count(*) FROM gold.fact_sales")[0][0]
    reader_role = s.postgres.reader_user
    with warehouse(s) as conn:
        conn.execute("GRANT SELECT ON gold.fact_sales TO PUBLIC")
        conn.execute("COMMENT ON TABLE gold.fact_sales IS 'one row per order line; the analysts'' table'")
        conn.execute(f"REVOKE SELECT ON gold.fact_sales FROM {reader_role}")
        grants = fact_grants(conn)
        assert ("PUBLIC", "SELECT") in grants and not any(g[0] == reader_role for g in grants)
        before_oid, old_totals = (
            fact_oid(conn),
            conn.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone(),
        )
        index_names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'fact_sales'")}

    # a large change: the next fact is built beside the live one and renamed into place,
    # while a reader keeps querying
    api.generate_csv(tmp_path / "csv2", rows=2_000, seed=12)
    api.ingest_csv([tmp_path / "csv2"], settings=s)
    api.run(settings=s)
    seen: set[tuple] = set()
    errors: list[Exception] = []
    stop = threading.Event()

    def reader() -> None:
        with warehouse(s) as conn:
            while not stop.is_set():
                try:
                    seen.add(tuple(conn.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone()))
                except psycopg.Error as exc:  # pragma: no cover - the failure this test looks for
                    errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(publisher, "BULK_FACT_ROWS", 100)
            patch.setattr(publisher, "BULK_FACT_SHARE", 0.1)
            second = api.publish_postgres(settings=s)
    finally:
        stop.set()
        thread.join()
    with warehouse(s) as conn:
        assert fact_oid(conn) != before_oid  # replaced, not rewritten in place
        replaced_oid = fact_oid(conn)
        assert_equal_to_gold(s, conn)
        new_totals = conn.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone()
        assert {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'fact_sales'")
        } == index_names
        assert fact_grants(conn) == grants  # the same grants, not the defaults of a new table
        assert (
            conn.execute("SELECT obj_description('gold.fact_sales'::regclass, 'pg_class')").fetchone()[0]
            == "one row per order line; the analysts' table"
        )
        assert not conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'saleslake_next%' OR relname LIKE 'saleslake_stage%'"
        ).fetchone()[0]
    assert not errors and seen and seen <= {tuple(old_totals), tuple(new_totals)}
    fact = second.tables["fact_sales"]
    added = new_totals[0] - old_totals[0]
    assert added <= fact.written < new_totals[0] and fact.deleted == 0  # only the changes were sent

    # a view on the fact: it cannot be replaced, so the bulk path rewrites it in place
    with warehouse(s) as conn:
        conn.execute(
            "CREATE VIEW gold.sales_total AS SELECT count(*) AS lines, sum(sales) AS sales FROM gold.fact_sales"
        )
    assert _bulk_publish_of_new_lines(s, tmp_path / "csv3", 13, monkeypatch).tables["fact_sales"].written >= 1_000
    with warehouse(s) as conn:
        assert fact_oid(conn) == replaced_oid  # rewritten in place
        assert_equal_to_gold(s, conn)
        assert (
            conn.execute("SELECT lines, sales FROM gold.sales_total").fetchone()
            == conn.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone()
        )
        assert {
            r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'fact_sales'")
        } == index_names

    # another table's foreign key on the fact: its key can be neither dropped nor replaced,
    # so even a bulk change is upserted row by row
    with warehouse(s) as conn:
        conn.execute('CREATE TABLE gold.line_notes (line_key text COLLATE "C" REFERENCES gold.fact_sales, note text)')
        conn.execute("INSERT INTO gold.line_notes SELECT line_key, 'checked' FROM gold.fact_sales LIMIT 5")
    assert _bulk_publish_of_new_lines(s, tmp_path / "csv4", 14, monkeypatch).tables["fact_sales"].written >= 1_000
    with warehouse(s) as conn:
        assert fact_oid(conn) == replaced_oid
        assert_equal_to_gold(s, conn)
        assert (
            conn.execute("SELECT count(*) FROM gold.line_notes n JOIN gold.fact_sales f USING (line_key)").fetchone()[0]
            == 5
        )


def _published_once(s, tmp_path: Path, rows: int = 1_500, seed: int = 21) -> tuple:
    """A lake with gold, published once; returns the warehouse's (count, sum(sales))."""
    api.generate_csv(tmp_path / "csv-a", rows=rows, seed=seed)
    api.ingest_csv([tmp_path / "csv-a"], settings=s)
    api.run(settings=s)
    api.publish_postgres(settings=s)
    api.generate_csv(tmp_path / "csv-b", rows=rows, seed=seed + 1)
    api.ingest_csv([tmp_path / "csv-b"], settings=s)
    api.run(settings=s)
    with warehouse(s) as conn:
        return tuple(conn.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone())


@pytest.mark.parametrize("bulk", [False, True], ids=["upsert", "replace"])
def test_connection_lost_in_the_swap_is_retried_nothing_doubled(
    postgres_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bulk: bool
) -> None:
    """The server ends the publish's session in the middle of the swap transaction (as a
    restart would), after the dimensions and (bulk) the drop and rename of the fact: the
    attempt rolls back, the retry publishes once."""
    from saleslake.serve import postgres as publisher

    s = postgres_settings
    _published_once(s, tmp_path)
    if bulk:
        monkeypatch.setattr(publisher, "BULK_FACT_ROWS", 100)
        monkeypatch.setattr(publisher, "BULK_FACT_SHARE", 0.1)
    with warehouse(s) as conn:
        before_oid = fact_oid(conn)
    real, calls = publisher._merge_fact, {"n": 0}

    def killed_once(conn, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # dims already merged in this transaction: all of it must roll back
            with warehouse(s) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        return real(conn, *args, **kwargs)

    monkeypatch.setattr(publisher, "_merge_fact", killed_once)
    done = api.publish_postgres(settings=s)
    assert done.attempts == 2 and calls["n"] == 2
    with warehouse(s) as conn:
        assert (fact_oid(conn) != before_oid) == bulk  # the replacement happened in the retry
        assert_equal_to_gold(s, conn)
        assert conn.execute("SELECT count(*) FROM gold.saleslake_publish_log").fetchone()[0] == 2
        assert not conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'saleslake_next%' OR relname LIKE 'saleslake_stage%'"
        ).fetchone()[0]


@pytest.mark.parametrize("held_seconds", [0.6, None], ids=["released", "held"])
def test_a_reader_holding_the_fact_makes_the_swap_wait_retry_or_fail_cleanly(
    postgres_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held_seconds: float | None
) -> None:
    """A bulk swap needs the fact to itself; an open reader transaction holds it. The swap
    waits lock_timeout, retries with backoff, and publishes once the reader is gone; if
    the reader never goes, one clear line and the warehouse keeps the previous gold."""
    from saleslake.serve import postgres as publisher

    s = postgres_settings
    before = _published_once(s, tmp_path, seed=31)
    s = s.model_copy(
        update={"postgres": s.postgres.model_copy(update={"lock_timeout_seconds": 0.3, "publish_attempts": 3})}
    )
    monkeypatch.setattr(publisher, "BULK_FACT_ROWS", 100)
    monkeypatch.setattr(publisher, "BULK_FACT_SHARE", 0.1)
    reader = warehouse(s)
    reader.autocommit = False
    assert tuple(reader.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone()) == before

    def release_after_a_timeout() -> None:
        # once the publish waits on the reader's lock, let its first swap attempt time out
        with warehouse(s) as watcher:
            while not watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND application_name LIKE '%publish'"
            ).fetchone()[0]:
                time.sleep(0.02)
        time.sleep(held_seconds)
        reader.rollback()

    release = threading.Thread(target=release_after_a_timeout) if held_seconds else None
    try:
        if release is not None:
            release.start()
            done = api.publish_postgres(settings=s)
            assert done.attempts == 1 and done.swap_attempts >= 2  # the swap alone was retried
            with warehouse(s) as conn:
                assert_equal_to_gold(s, conn)
        else:
            with pytest.raises(TransientError) as caught:
                api.publish_postgres(settings=s)
            message = str(caught.value)
            assert "locked by another session through 3 swap attempt(s)" in message
            assert "previous gold" in message and "\n" not in message
            assert s.postgres.password("warehouse") not in message
            # the reader's transaction still sees its totals; after it, so does everybody
            assert tuple(reader.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone()) == before
            reader.rollback()
            with warehouse(s) as conn:
                assert tuple(conn.execute("SELECT count(*), sum(sales) FROM gold.fact_sales").fetchone()) == before
                assert conn.execute("SELECT count(*) FROM gold.saleslake_publish_log").fetchone()[0] == 1
                assert not conn.execute(
                    "SELECT count(*) FROM pg_class WHERE relname LIKE 'saleslake_next%' "
                    "OR relname LIKE 'saleslake_stage%'"
                ).fetchone()[0]  # no copy left behind
    finally:
        if release is not None:
            release.join()
        reader.close()
