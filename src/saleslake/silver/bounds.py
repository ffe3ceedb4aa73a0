"""Plausibility bounds every source applies before a row enters silver (CONTRACT §4), as SQL.

A row silver accepts must be one gold can always build, test and publish. These bounds
are defined once here and used by the CSV validation (:mod:`saleslake.silver.validate`),
the PostgreSQL extract (:mod:`saleslake.silver.oltp`) and the point-of-sale events
(:mod:`saleslake.silver.events`), so the sources cannot drift apart:

- a date outside ``[quality.min_date, quality.max_date]`` (default 1900-01-01 …
  2100-12-31) is ``invalid_date:<field>``: an order on 9999-12-31 opened an SCD2 version
  on the open end (valid_from = valid_to, failing gold's tests on every later build), and
  a year 0 (1 BC) grew ``dim_date`` to 700,000 days and broke every reader of the date;
- a quantity above ``quality.max_quantity`` (default 10⁹) is ``quantity_out_of_range``:
  gold sums a day's quantities per region and category into a BIGINT;
- a region or category longer than 1,000 bytes is ``text_too_long:<field>``: the daily
  aggregate's grain (date_key, region, category) is the warehouse table's primary key,
  and a PostgreSQL B-tree entry holds at most 2,704 bytes (a 3,000-character region made
  every later publish fail);
- text holding a NUL character is ``invalid_text:<field>``: PostgreSQL text cannot hold
  one, so the warehouse publish failed on every run.

Amounts need no bound of their own: a DECIMAL(18,4) that parses is summed in
DECIMAL(38,4) by gold, and derived amounts that do not fit (a POS or operational line's
quantity × unit price) are ``invalid_number:sales``.

Example::

    checks = date_checks({"order_date": "order_date"}, settings.quality)
    # [("(order_date NOT BETWEEN DATE '1900-01-01' AND DATE '2100-12-31')", "invalid_date:order_date")]
"""

from __future__ import annotations

from datetime import date

from saleslake.config import QualitySettings
from saleslake.contract import (
    REASON_INVALID_DATE,
    REASON_INVALID_TEXT,
    REASON_QUANTITY_RANGE,
    REASON_TEXT_TOO_LONG,
)

#: Fields that become part of a warehouse key, and their limit in (UTF-8) bytes: two of
#: them and the date key fit one PostgreSQL B-tree entry (2,704 bytes).
KEY_TEXT_FIELDS = ("region", "category")
KEY_TEXT_MAX_BYTES = 1_000


def _date(value: date) -> str:
    return f"DATE '{value.isoformat()}'"


def date_outside(expr: str, quality: QualitySettings) -> str:
    """SQL condition: the DATE ``expr`` lies outside the plausible window (NULL for NULL)."""
    return f"({expr} NOT BETWEEN {_date(quality.min_date)} AND {_date(quality.max_date)})"


def date_checks(dates: dict[str, str], quality: QualitySettings) -> list[tuple[str, str]]:
    """``(condition, reason)`` per field: ``dates`` maps a field name to its DATE expression."""
    return [(date_outside(expr, quality), REASON_INVALID_DATE.format(field=name)) for name, expr in dates.items()]


def quantity_check(expr: str, quality: QualitySettings) -> tuple[str, str]:
    """``(condition, reason)``: the quantity ``expr`` is above ``quality.max_quantity``."""
    return f"({expr} > {int(quality.max_quantity)})", REASON_QUANTITY_RANGE


def key_text_checks(texts: dict[str, str]) -> list[tuple[str, str]]:
    """``(condition, reason)`` per field: ``texts`` maps a field of :data:`KEY_TEXT_FIELDS`
    to its text expression, too long when above :data:`KEY_TEXT_MAX_BYTES`."""
    return [
        (f"(strlen({expr}) > {KEY_TEXT_MAX_BYTES})", REASON_TEXT_TOO_LONG.format(field=name))
        for name, expr in texts.items()
    ]


#: Fields that go into a line's key, ``md5(source || chr(31) || order_id || chr(31) ||
#: line_id)``: the separator inside one of them could make two lines share a key.
KEY_ID_FIELDS = ("order_id", "line_id", "transaction_id")


def bad_text(expr: str, name: str) -> str:
    """SQL condition: the text ``expr`` of field ``name`` holds a NUL character (PostgreSQL
    text cannot: every publish of it to the warehouse failed) or, in a key field, the key
    separator chr(31)."""
    if name in KEY_ID_FIELDS:
        return f"(contains({expr}, chr(0)) OR contains({expr}, chr(31)))"
    return f"contains({expr}, chr(0))"


def text_checks(texts: dict[str, str]) -> list[tuple[str, str]]:
    """``(condition, reason)`` per field: ``texts`` maps a field to its text expression,
    ``invalid_text:<field>`` when :func:`bad_text`."""
    return [(bad_text(expr, name), REASON_INVALID_TEXT.format(field=name)) for name, expr in texts.items()]


def case_reasons(checks: list[tuple[str, str]]) -> list[str]:
    """``CASE WHEN condition THEN 'reason' END`` per check (NULL when it passes)."""
    return [f"CASE WHEN {condition} THEN '{reason}' END" for condition, reason in checks]
