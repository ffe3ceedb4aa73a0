"""Enrichment of valid lines, as SQL expressions: unit price, tax, fraud flags,
outlier flag and data-quality score (CONTRACT §3, §7). Every source uses these.
"""

from __future__ import annotations

from decimal import Decimal

from saleslake.config import Settings


def _literal(value: Decimal) -> str:
    return f"CAST('{Decimal(value)}' AS DECIMAL(18,6))"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def tax_rate_sql(settings: Settings) -> str:
    """Most specific configured rate: country/state, then country, then the flat rate."""
    branches = []
    by_state = {k: v for k, v in settings.tax.rates.items() if "/" in k}
    by_country = {k: v for k, v in settings.tax.rates.items() if "/" not in k}
    for key, rate in sorted(by_state.items()):
        country, state = key.split("/", 1)
        branches.append(f"WHEN country = {_text(country)} AND state = {_text(state)} THEN {_literal(rate)}")
    for country, rate in sorted(by_country.items()):
        branches.append(f"WHEN country = {_text(country)} THEN {_literal(rate)}")
    flat = _literal(settings.tax.flat_rate)
    if not branches:
        return f"CAST({flat} AS DECIMAL(9,4))"
    return f"CAST(CASE {' '.join(branches)} ELSE {flat} END AS DECIMAL(9,4))"


def unit_price_sql() -> str:
    """sales / quantity rounded half-up to 4 places in exact integer arithmetic.

    DuckDB divides decimals in floating point; money must never pass through a float, so
    the division is done on sales in ten-thousandths as an integer. In 128 bits: sales at
    the DECIMAL(18,4) limit times 10,000, or a quantity near the BIGINT limit times 2,
    overflowed 64 (it runs on rejected rows too, so any parsed value must pass).
    """
    scaled = "CAST(CAST(sales AS DECIMAL(38,4)) * 10000 AS HUGEINT)"
    rounded = f"(({scaled} * 2 + quantity) // (2 * CAST(quantity AS HUGEINT)))"
    return (
        f"CASE WHEN quantity > 0 AND sales >= 0 THEN "
        f"CAST(CAST({rounded} AS DECIMAL(38,0)) * CAST(0.0001 AS DECIMAL(5,4)) AS DECIMAL(18,4)) END"
    )


def enrichment_columns(settings: Settings) -> str:
    """SELECT-list fragment over a relation with the typed canonical columns."""
    fraud = settings.fraud
    # in 38 digits: DuckDB multiplies two decimals that fit 64 bits in 64 bits, and sales
    # above ~92 billion times a discount factor overflowed there
    net = "(CAST(sales AS DECIMAL(38,4)) * (1 - coalesce(discount, 0)))"
    rules = [
        f"CASE WHEN sales > {_literal(fraud.amount_threshold)} THEN 'amount_above_threshold' END",
        f"CASE WHEN discount >= {_literal(fraud.high_discount)} AND sales > {_literal(fraud.high_discount_amount)} "
        "THEN 'high_discount_high_amount' END",
    ]
    penalties = [
        ("ship_date IS NULL", 10),
        ("ship_mode IS NULL", 5),
        ("customer_name IS NULL", 5),
        ("segment IS NULL", 5),
        ("country IS NULL", 10),
        ("city IS NULL", 5),
        ("region IS NULL", 5),
        ("product_name IS NULL", 5),
        ("category IS NULL", 5),
        ("sub_category IS NULL", 5),
        ("profit IS NULL", 5),
        ("market IS NULL", 3),
        ("shipping_cost IS NULL", 3),
        ("order_priority IS NULL", 3),
        (f"sales > {_literal(settings.quality.outlier_threshold)}", 10),
        ("profit > sales", 10),
    ]
    penalty_sql = " + ".join(f"CASE WHEN {cond} THEN {points} ELSE 0 END" for cond, points in penalties)
    return f"""
        {unit_price_sql()} AS unit_price,
        tax_rate,
        -- TRY_: a rejected row's discount (below 0) can make the net exceed DECIMAL(18,4);
        -- a valid one's net is at most its sales
        TRY_CAST(round({net} * tax_rate, 2) AS DECIMAL(18,4)) AS tax_amount,
        list_filter([{", ".join(rules)}], lambda r: r IS NOT NULL) AS fraud_reasons,
        sales > {_literal(settings.quality.outlier_threshold)} AS is_outlier,
        CAST(greatest(0, 100 - ({penalty_sql})) AS INTEGER) AS dq_score
    """
