"""``subrelay prices``: the price table in effect (the shipped one with subrelay.toml's [prices] on top),
each row with its date and source, so an admin sees what a request will be charged and where from."""

from __future__ import annotations

import orjson

from proxy.money.prices import Price, PriceTable, dollars


def price_row(price: Price) -> dict:
    """One price as the JSON output shows it (dollars per million tokens, exact decimal strings)."""
    def per_m(micros: int | None) -> str | None:
        return None if micros is None else dollars(micros)

    return {"provider": price.provider, "model": price.model, "plan": price.plan,
            "input": per_m(price.input), "cached_input": per_m(price.cached_input), "output": per_m(price.output),
            "reasoning": per_m(price.reasoning), "date": price.date, "source": price.source}


def print_prices(table: PriceTable, *, as_json: bool = False) -> int:
    rows = [price_row(price) for price in table.rows()]
    if as_json:
        print(orjson.dumps({"object": "list", "unit": "USD per million tokens", "data": rows},
                           option=orjson.OPT_INDENT_2).decode())
        return 0
    heads = ("provider", "model", "input", "cached", "output", "reasoning", "date")
    body = []
    for row in rows:
        if row["plan"]:
            body.append((row["provider"], "*", "plan", "plan", "plan", "-", row["date"]))
            continue
        body.append((row["provider"], row["model"], row["input"], row["cached_input"] or row["input"], row["output"],
                     row["reasoning"] or "-", row["date"]))
    widths = [max(len(str(r[i])) for r in (heads, *body)) for i in range(len(heads))]
    print("Dollars per million tokens. A ChatGPT plan costs nothing per request (its windows count instead);")
    print("a model not listed here has no known price: add it under [prices] in subrelay.toml.")
    for row in (heads, *body):
        print("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    print()
    sources = {}
    for row in rows:
        sources.setdefault(row["provider"], (row["date"], row["source"]))
    for provider, (date, source) in sources.items():
        print(f"{provider}: {date}, {source}")
    return 0
