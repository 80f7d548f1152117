"""What a request cost, by the price table when there is one: one hook, so the log line and the ledger ask
the same function. The app installs the price table's pure function (:func:`install`); until then every
cost is unknown (``None``), never a guess."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (provider, upstream model, usage) -> dollars, or None when the model has no price.
PriceFunction = Callable[[str, str, Any], "float | None"]
_price: list[PriceFunction | None] = [None]


def install(price: PriceFunction | None) -> None:
    _price[0] = price


def cost_of(provider: str, model: str, usage: Any) -> float | None:
    """The request's cost in dollars (rounded to a millionth), or None: no usage, no price table, no price."""
    price = _price[0]
    if price is None or usage is None:
        return None
    try:
        value = price(provider, model, usage)
    except Exception:  # noqa: BLE001 - a price bug must never fail a request or its record
        return None
    return None if value is None else round(float(value), 6)
