"""What a model call costs: a price table per model, in US dollars per million tokens.

The table ships with list prices of a few hosted models as their providers published them;
contracts, discounts and new models differ, so users set their own with :func:`set_price`
(a local model is usually ``set_price("llama3", input=0, output=0)``). A model with no price
costs ``None``, shown as "unknown": never 0, which would let a cost budget pass unchecked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million input (prompt) and output (completion) tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


_LIST_PRICES = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "o3-mini": Price(1.10, 4.40),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
}

_prices = dict(_LIST_PRICES)
_lock = threading.Lock()


def set_price(model: str, *, input: float, output: float) -> None:
    """Set (or replace) the price of ``model``: dollars per million input and output tokens.
    It also prices dated variants (``gpt-4o-2024-08-06``) unless they have their own."""
    if not (input >= 0 and output >= 0):
        raise ValueError(f"prices must be non-negative numbers, got {input!r} and {output!r}")
    with _lock:
        _prices[model] = Price(float(input), float(output))


def price_of(model: str) -> Price | None:
    """The price of ``model``: its own, else that of the longest name it extends
    (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``), else ``None``."""
    with _lock:
        found = _prices.get(model)
        if found is not None:
            return found
        stems = [name for name in _prices if model.startswith(name + "-")]
        return _prices[max(stems, key=len)] if stems else None


def cost_of(model: str, input_tokens: int, output_tokens: int) -> float | None:
    """The cost of one call, or ``None`` when the model has no price."""
    price = price_of(model)
    return None if price is None else price.cost(input_tokens, output_tokens)
