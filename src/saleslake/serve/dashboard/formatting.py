"""How the dashboard writes numbers: exact Decimal rounding (half up, as tax is rounded),
thousands separators, the currency's symbol when the lake holds one currency."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}
# st.column_config.NumberColumn presets for money columns per currency
COLUMN_FORMATS = {"USD": "dollar", "EUR": "euro", "JPY": "yen"}


def currency_symbol(currencies: list[str]) -> str:
    """``$`` for a USD-only lake, ``CHF `` for another single currency, nothing for a mix."""
    if len(currencies) != 1:
        return ""
    code = currencies[0]
    return SYMBOLS.get(code, f"{code} ")


def money_column_format(currencies: list[str]) -> str:
    return COLUMN_FORMATS.get(currencies[0], "localized") if len(currencies) == 1 else "localized"


def _round(value: Decimal | float | int, places: int) -> Decimal:
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def money(value: Decimal | float | int | None, symbol: str = "$", places: int = 2) -> str:
    """``$1,234,567.89``; ``-$12.00`` for a loss; an en dash when there is no value."""
    if value is None:
        return "–"
    rounded = _round(value, places)
    sign = "-" if rounded < 0 else ""
    return f"{sign}{symbol}{abs(rounded):,.{places}f}"


def percent(ratio: Decimal | float | None, places: int = 2) -> str:
    """A ratio as ``12.34%``; an en dash when undefined (nothing sold)."""
    if ratio is None:
        return "–"
    return f"{_round(Decimal(str(ratio)) * 100, places):,.{places}f}%"


def count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"
