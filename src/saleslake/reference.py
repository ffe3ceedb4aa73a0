"""Reference data: store and product master records, as a history of changes.

Two Delta tables under ``silver/``, append-only, one row per observed state of a record
(``updated_at`` is when that state became true in the source)::

    silver/reference_stores     store_id, store_name, channel, city, state, country,
                                postal_code, region, market, currency, updated_at, source_system
    silver/reference_products   product_id, product_name, category, sub_category,
                                list_price, updated_at, source_system
    silver/reference_customers  customer_id, customer_name, segment, city, state, country,
                                postal_code, region, market, updated_at, source_system

Point-of-sale events carry only ids; the stream takes store location and product
attributes from the state of these records valid at the event (CONTRACT §6). The POS
simulator registers its stores and products here; the operational database extract
(issue 4) feeds them too, and they become observations of the SCD2 dimensions.

Registering is idempotent: a row whose (key, updated_at) is already present is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from saleslake.contract import MONEY, UTC_TIME, text_fields
from saleslake.lake import Lake, ensure_delta, snapshot_connection, snapshot_view_sql, write_delta

#: Where a store or a customer is, in the order both tables keep it.
LOCATION_FIELDS = text_fields("city", "state", "country", "postal_code", "region", "market")
#: When the observed state of a record became true in its source, and which source said so.
OBSERVED_FIELDS = [("updated_at", UTC_TIME), ("source_system", pa.string())]

STORES_SCHEMA = pa.schema(
    [*text_fields("store_id", "store_name", "channel"), *LOCATION_FIELDS, ("currency", pa.string()), *OBSERVED_FIELDS]
)
PRODUCTS_SCHEMA = pa.schema(
    [*text_fields("product_id", "product_name", "category", "sub_category"), ("list_price", MONEY), *OBSERVED_FIELDS]
)
CUSTOMERS_SCHEMA = pa.schema(
    [*text_fields("customer_id", "customer_name", "segment"), *LOCATION_FIELDS, *OBSERVED_FIELDS]
)


@dataclass(frozen=True)
class ReferenceTable:
    name: str
    key: str
    schema: pa.Schema

    def path(self, lake: Lake):
        return lake.reference_table(self.name)


STORES = ReferenceTable("stores", "store_id", STORES_SCHEMA)
PRODUCTS = ReferenceTable("products", "product_id", PRODUCTS_SCHEMA)
CUSTOMERS = ReferenceTable("customers", "customer_id", CUSTOMERS_SCHEMA)


def register(lake: Lake, ref: ReferenceTable, rows: pa.Table) -> int:
    """Append the rows whose (key, updated_at) the table does not hold yet; returns how many."""
    rows = rows.select(ref.schema.names).cast(ref.schema)
    target = ensure_delta(ref.path(lake), ref.schema)
    con = snapshot_connection(lake)
    try:
        con.register("incoming", rows)
        new = (
            con.sql(
                f"""
            SELECT DISTINCT i.* FROM incoming i
            WHERE NOT EXISTS (
                SELECT 1 FROM ({snapshot_view_sql(target)}) t
                WHERE t.{ref.key} = i.{ref.key} AND t.updated_at = i.updated_at)
            """
            )
            .to_arrow_table()
            .cast(ref.schema)
        )
    finally:
        con.close()
    if new.num_rows:
        write_delta(target, new, mode="append")
    return new.num_rows
