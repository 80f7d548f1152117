"""The price table: what one request costs, in integer micro-dollars (never a float in a store).

Prices come from a data file shipped with subrelay (``prices.toml``: per provider kind, its date and its
source) and from ``[prices]`` in ``subrelay.toml``, which wins. A ChatGPT-plan route (the ``codex``
kind) costs 0 in money: it is counted against the plan's windows instead. A model with no price is
*unknown* (:func:`cost_of` answers None): it is said so, never guessed.

The ledger and the admission both price a request with :func:`cost_of` (or :meth:`PriceTable.cost_of`).
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

MICROS = 1_000_000  # micro-dollars per dollar
PER_TOKENS = 1_000_000  # prices are per million tokens
DATA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prices.toml")
PRICE_FIELDS = ("input", "cached_input", "output", "reasoning")


class PriceError(ValueError):
    """A price that is not a non-negative amount of dollars (in the data file or subrelay.toml)."""


def to_micros(value: Any, where: str = "price") -> int:
    """Dollars (a number or a decimal string such as ``"2.50"``) as integer micro-dollars, exactly."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PriceError(f"{where} must be an amount of dollars such as 2.50 (got {value!r})")
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip().lstrip("$"))
    except InvalidOperation:
        raise PriceError(f"{where} must be an amount of dollars such as 2.50 (got {value!r})") from None
    if not amount.is_finite() or amount < 0 or amount > 10**9:
        raise PriceError(f"{where} must be between 0 and 1,000,000,000 dollars (got {value!r})")
    return int((amount * MICROS).to_integral_value(rounding="ROUND_CEILING"))


def dollars(micros: int) -> str:
    """``1234567`` -> ``"1.234567"``; shown with at least cents (``"0.10"``), never through a float."""
    if type(micros) is int and micros >= 0:  # the common case, without a call per step
        whole = micros // MICROS
        part = micros - whole * MICROS
        if not part:
            return f"{whole}.00"
        text = str(part + MICROS)[1:].rstrip("0")  # the six digits, zero-padded (a format spec costs more)
        return f"{whole}.{text}" if len(text) > 1 else f"{whole}.{text}0"
    sign = "-" if micros < 0 else ""
    whole, part = divmod(abs(int(micros)), MICROS)
    text = f"{part:06d}".rstrip("0")
    return f"{sign}{whole}.{text.ljust(2, '0')}"


@dataclass(frozen=True, slots=True)
class Price:
    """Micro-dollars per million tokens; ``cached_input`` and ``reasoning`` fall back to input and output."""

    input: int
    output: int
    cached_input: int | None = None
    reasoning: int | None = None
    provider: str = ""
    model: str = ""  # the table's name or glob for the model
    date: str = ""
    source: str = ""
    plan: bool = False  # a subscription plan: every request costs 0

    def estimate(self, input_tokens: int, output_tokens: int) -> int:
        """The most ``input_tokens`` in and ``output_tokens`` out can cost (reasoning billed at its own rate)."""
        if self.plan:
            return 0
        out = max(self.output, self.reasoning or 0)
        return -(-(input_tokens * self.input + output_tokens * out) // PER_TOKENS)


@dataclass(slots=True, unsafe_hash=True)  # not frozen: made for every priced request, and frozen init is slow
class Cost:
    """What one request cost: ``micros`` micro-dollars at ``price``."""

    micros: int
    price: Price

    @property
    def usd(self) -> str:
        return dollars(self.micros)


def price_usage(price: Price, usage: Any) -> Cost:
    """The cost of ``usage`` (a :class:`proxy.hub.events.Usage`: prompt tokens include the cached ones,
    completion tokens include the reasoning ones) at ``price``, rounded up to a whole micro-dollar."""
    if price.plan:
        return Cost(0, price)
    # max(int(x or 0), 0), the cached and reasoning parts at most their whole: without a call per step
    # for the common case (whole numbers), since this runs for every priced request.
    prompt = getattr(usage, "prompt_tokens", 0) or 0
    cached = getattr(usage, "cached_tokens", 0) or 0
    completion = getattr(usage, "completion_tokens", 0) or 0
    reasoning = getattr(usage, "reasoning_tokens", 0) or 0
    if not type(prompt) is type(cached) is type(completion) is type(reasoning) is int:
        prompt, cached, completion, reasoning = int(prompt), int(cached), int(completion), int(reasoning)
    prompt = prompt if prompt > 0 else 0
    completion = completion if completion > 0 else 0
    cached = 0 if cached < 0 else prompt if cached > prompt else cached
    reasoning = 0 if reasoning < 0 else completion if reasoning > completion else reasoning
    cached_rate = price.input if price.cached_input is None else price.cached_input
    reasoning_rate = price.output if price.reasoning is None else price.reasoning
    total = ((prompt - cached) * price.input + cached * cached_rate + (completion - reasoning) * price.output
             + reasoning * reasoning_rate)
    return Cost(-(-total // PER_TOKENS), price)


@dataclass(slots=True)
class _Section:
    date: str
    source: str
    plan: bool = False
    exact: dict[str, Price] = field(default_factory=dict)
    globs: list[tuple[str, Price]] = field(default_factory=list)  # longest pattern first


class PriceTable:
    """Prices per provider (a provider's own name first, then its kind) and model (exact, then globs)."""

    def __init__(self, sections: dict[str, _Section]) -> None:
        self._sections = sections
        self._found: dict[tuple[str, str, str | None], Price | None] = {}  # lookups, remembered (bounded)

    def price(self, provider: str, model: str, kind: str | None = None) -> Price | None:
        """The price of ``model`` on ``provider`` (of ``kind``), or None when nobody said one."""
        key = (provider, model, kind)
        try:
            return self._found[key]
        except KeyError:
            pass
        if len(self._found) > 10_000:
            self._found.clear()
        found = self._found[key] = self._lookup(provider, model, kind)
        return found

    def _lookup(self, provider: str, model: str, kind: str | None) -> Price | None:
        for name in (provider, kind):
            section = self._sections.get(name) if name else None
            if section is None:
                continue
            if section.plan:
                return section.exact.get("*") or Price(0, 0, provider=name, model="*", date=section.date,
                                                       source=section.source, plan=True)
            found = section.exact.get(model)
            if found is None:
                found = next((p for pattern, p in section.globs if fnmatch.fnmatchcase(model, pattern)), None)
            if found is not None:
                return found
        return None

    def cost_of(self, provider: str, model: str, usage: Any, kind: str | None = None) -> Cost | None:
        """What ``usage`` on ``provider``/``model`` cost; None when the price is unknown."""
        price = self.price(provider, model, kind)
        return None if price is None else price_usage(price, usage)

    def rows(self) -> list[Price]:
        """Every price in the table, by provider then model (what ``subrelay prices`` prints)."""
        out: list[Price] = []
        for name in sorted(self._sections):
            section = self._sections[name]
            if section.plan:
                out.append(Price(0, 0, provider=name, model="*", date=section.date, source=section.source, plan=True))
                continue
            out += sorted([*section.exact.values(), *(p for _, p in section.globs)], key=lambda p: p.model)
        return out

    def with_overrides(self, overrides: dict[str, Any], where: str = "subrelay.toml") -> "PriceTable":
        """This table with ``[prices]`` from subrelay.toml on top: ``{"provider/model": {input=…, output=…}}``."""
        sections = {name: _Section(s.date, s.source, s.plan, dict(s.exact), list(s.globs))
                    for name, s in self._sections.items()}
        for key, spec in overrides.items():
            provider, slash, model = str(key).partition("/")
            if not slash or not provider or not model:
                raise PriceError(f"{where} [prices] keys are \"provider/model\" (a glob may end the model), "
                                 f"got {key!r}")
            section = sections.setdefault(provider, _Section(where, where))
            if section.plan:  # a provider priced per token in this deployment, not on a plan
                section = sections[provider] = _Section(where, where)
            _put(section, provider, model, _price(spec, provider, model, where, where, f"{where} [prices.{key!r}]"))
        return PriceTable(sections)


def _price(spec: Any, provider: str, model: str, date: str, source: str, where: str) -> Price:
    if not isinstance(spec, dict) or "input" not in spec or "output" not in spec or set(spec) - set(PRICE_FIELDS):
        raise PriceError(f"{where} must be a table with input and output (and optionally cached_input, reasoning), "
                         "in dollars per million tokens")
    values = {name: to_micros(spec[name], f"{where}.{name}") for name in PRICE_FIELDS if name in spec}
    return Price(values["input"], values["output"], values.get("cached_input"), values.get("reasoning"),
                 provider, model, date, source)


def _put(section: _Section, provider: str, model: str, price: Price) -> None:
    if any(ch in model for ch in "*?["):
        section.globs = [g for g in section.globs if g[0] != model] + [(model, price)]
        section.globs.sort(key=lambda g: -len(g[0]))
    else:
        section.exact[model] = price


def load_table(path: str = DATA_FILE) -> PriceTable:
    """The shipped price table (or another file in the same format)."""
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    sections: dict[str, _Section] = {}
    for provider, spec in data.items():
        where = f"{os.path.basename(path)} [{provider}]"
        if not isinstance(spec, dict) or not spec.get("date") or not spec.get("source"):
            raise PriceError(f"{where} must say its date and source")
        section = sections[provider] = _Section(str(spec["date"]), str(spec["source"]), bool(spec.get("plan")))
        for model, price in (spec.get("models") or {}).items():
            _put(section, provider, model, _price(price, provider, model, section.date, section.source,
                                                  f"{where} {model!r}"))
    return PriceTable(sections)


_DEFAULT: list[PriceTable] = []


def default_table() -> PriceTable:
    """The shipped table, read once."""
    if not _DEFAULT:
        _DEFAULT.append(load_table())
    return _DEFAULT[0]


def cost_of(provider: str, model: str, usage: Any, *, kind: str | None = None,
            table: PriceTable | None = None) -> Cost | None:
    """What one request's ``usage`` on ``provider``/``model`` cost (``kind``: the provider's kind, e.g. a
    provider named ``team`` of kind ``openai``), by ``table`` (a server's, with its subrelay.toml
    overrides; default: the shipped table). None: no price is known (say so; never guess)."""
    return (table or default_table()).cost_of(provider, model, usage, kind)
