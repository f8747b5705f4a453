"""Plausible random order events, for the demo burst, tests and benchmarks."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

EVENT_TYPES = ("CREATED", "PAID", "SHIPPED", "CANCELLED", "REFUNDED")
_TYPE_WEIGHTS = (40, 30, 20, 6, 4)
CURRENCIES = ("EUR", "USD", "GBP")
CHANNELS = ("WEB", "APP", "STORE", "PARTNER")
COUNTRIES = ("DE", "FR", "GB", "US", "NL", "ES", "IT", "PL")


def customer_id(n: int) -> str:
    """The customer id of customer number ``n``."""
    return f"c-{n:06d}"


def generate(
    count: int,
    customers: int = 1000,
    seed: int | None = None,
    start_ms: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` events over ``customers`` customers, event times about a millisecond apart.

    >>> next(generate(1, seed=1))["event_type"] in EVENT_TYPES
    True
    """
    rng = random.Random(seed)
    now = int(time.time() * 1000) if start_ms is None else start_ms
    for i in range(count):
        cust = rng.randrange(customers)
        attrs = {"campaign": rng.choice(("spring", "none", "newsletter"))} if rng.random() < 0.3 else {}
        yield {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_time": now + i,
            "customer_id": customer_id(cust),
            "order_id": f"o-{cust:06d}-{rng.randrange(50):03d}",
            "event_type": rng.choices(EVENT_TYPES, _TYPE_WEIGHTS)[0],
            "amount_cents": rng.randrange(100, 50_000),
            "currency": rng.choice(CURRENCIES),
            "channel": rng.choice(CHANNELS),
            "attributes": attrs,
            "coupon_code": f"SAVE{rng.randrange(5, 30)}" if rng.random() < 0.1 else None,
            "shipping_country": rng.choice(COUNTRIES) if rng.random() < 0.8 else None,
        }
