"""Type the raw text fields and attach every CONTRACT §4 reason code, in SQL.

``checked_sql`` turns the text records of one dialect group into typed columns plus a
``reasons`` list; a row with an empty list is valid.
"""

from __future__ import annotations

from saleslake.config import QualitySettings
from saleslake.contract import CSV_FIELDS, DATE_FIELDS, NUMBER_FIELDS, REQUIRED_FIELDS
from saleslake.silver.bounds import KEY_TEXT_FIELDS, date_outside, key_text_checks, quantity_check, text_checks

TEXT_FIELDS = [c for c in CSV_FIELDS.values() if c not in DATE_FIELDS and c not in NUMBER_FIELDS]
NUMBER_TYPES = {
    "sales": "DECIMAL(18,4)",
    "quantity": "BIGINT",
    "discount": "DECIMAL(9,4)",
    "profit": "DECIMAL(18,4)",
    "shipping_cost": "DECIMAL(18,4)",
}


# Fields whose surrounding blanks would change their meaning (keys, dates, numbers) are
# trimmed; descriptive text is kept as exported (trimming every column costs ~20 %).
TRIMMED = {"order_id", "line_id", "customer_id", "product_id", *DATE_FIELDS, *NUMBER_FIELDS}


def _raw_text(columns: dict[str, int], name: str) -> str:
    """The text of a canonical field; NULL when empty (the reader's default) or absent."""
    position = columns.get(name)
    if position is None:
        return "CAST(NULL AS VARCHAR)"
    if name in TRIMMED:
        return f"nullif(trim(c{position}), '')"
    return f"c{position}"


def _number(text: str, sql_type: str, decimal: str) -> str:
    if decimal == ",":
        # Decimal comma: a point in the value is not a thousands separator we can trust,
        # so "1.234,5" stays invalid instead of being guessed.
        text = f"CASE WHEN contains({text}, '.') THEN NULL ELSE replace({text}, ',', '.') END"
    return f"TRY_CAST({text} AS {sql_type})"


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def checked_sql(
    columns: dict[str, int],
    decimal: str,
    date_format: str,
    scan: str,
    file_columns: dict[str, str],
    quality: QualitySettings,
) -> str:
    """SELECT over ``scan`` (a relation of fi, c0..cN): the per-file ``file_columns`` (name →
    SQL expression of ``fi``), typed columns, their text, ``reasons``, and the raw ``cN``
    columns (for :func:`raw_map_sql`). Projections only (no join): the result keeps the
    scan's record order. A date outside ``quality``'s window is invalid like one that does
    not parse (see :mod:`saleslake.silver.bounds`)."""
    txt = {name: _raw_text(columns, name) for name in CSV_FIELDS.values()}
    typed = [f"{txt[name]} AS {name}" for name in TEXT_FIELDS]
    for name in DATE_FIELDS:
        typed.append(f"CAST(TRY_STRPTIME({txt[name]}, {_sql_string(date_format)}) AS DATE) AS {name}")
    for name, sql_type in NUMBER_TYPES.items():
        typed.append(f"{_number(txt[name], sql_type, decimal)} AS {name}")

    checks = [(f"{name}__txt IS NULL", f"missing_required:{name}") for name in REQUIRED_FIELDS]
    checks += [
        (f"{name}__txt IS NOT NULL AND ({name} IS NULL OR {date_outside(name, quality)})", f"invalid_date:{name}")
        for name in DATE_FIELDS
    ]
    checks += [(f"{name}__txt IS NOT NULL AND {name} IS NULL", f"invalid_number:{name}") for name in NUMBER_TYPES]
    checks += [
        ("quantity <= 0", "non_positive_quantity"),
        quantity_check("quantity", quality),
        ("sales <= 0", "non_positive_sales"),
        ("discount < 0 OR discount > 1", "discount_out_of_range"),
        ("ship_date < order_date", "ship_before_order"),
        *key_text_checks({name: name for name in KEY_TEXT_FIELDS}),
    ]
    # (~1 % of the typing statement: measured within the noise of a 1M-line silver run)
    checks += text_checks({name: name for name in TEXT_FIELDS if name in columns})
    reasons = [f"CASE WHEN {condition} THEN '{code}' END" for condition, code in checks]
    # Most rows pass every check: the list of reasons is only built for the others
    # (building and filtering it for every row cost ~12 % of the typing statement).
    failed = " OR ".join(f"({condition})" for condition, _ in checks)
    # The original text of every field a reason looks at (dict keeps one copy each).
    text_copies = {n: f"{txt[n]} AS {n}__txt" for n in (*REQUIRED_FIELDS, *DATE_FIELDS, *NUMBER_TYPES)}
    return f"""
        SELECT *, CASE WHEN {failed} THEN list_filter([{", ".join(reasons)}], lambda r: r IS NOT NULL)
                       ELSE CAST([] AS VARCHAR[]) END AS reasons
        FROM (
            SELECT raw.fi, {", ".join(f"{sql} AS {name}" for name, sql in file_columns.items())},
                   {", ".join(typed)},
                   {", ".join(text_copies.values())},
                   raw.* EXCLUDE (fi)
            FROM ({scan}) AS raw
        )
    """


def raw_map_sql(columns: dict[str, int]) -> str:
    """A MAP of canonical field name to raw text, for quarantined rows only (it is costly)."""
    names = [n for n in CSV_FIELDS.values() if n in columns]
    return "MAP([" + ", ".join(f"'{n}'" for n in names) + "], [" + ", ".join(f"c{columns[n]}" for n in names) + "])"
