"""Plausible random order events, for the demo burst, tests and benchmarks."""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections.abc import Iterator
from typing import Any

EVENT_TYPES = ("CREATED", "PAID", "SHIPPED", "CANCELLED", "REFUNDED")
_TYPE_WEIGHTS = (40, 30, 20, 6, 4)
CURRENCIES = ("EUR", "USD", "GBP")
CHANNELS = ("WEB", "APP", "STORE", "PARTNER")
COUNTRIES = ("DE", "FR", "GB", "US", "NL", "ES", "IT", "PL")
_TYPE_CUMULATIVE = tuple(itertools.accumulate(_TYPE_WEIGHTS))
_CAMPAIGNS = ("spring", "none", "newsletter")
# uuid.UUID(int=n, version=4): clear the variant and version bits, then set them to RFC 4122's and 4.
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)


def _uuid4_text(n: int) -> str:
    """``str(uuid.UUID(int=n, version=4))`` without building the UUID object."""
    h = f"{(n & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
    # Every draw is one ``random()`` scaled to its range (randrange and choice cost several times
    # that): the generator feeds benchmarks, whose figures should not be its own cost.
    rand, bits = rng.random, rng.getrandbits
    total = _TYPE_CUMULATIVE[-1]
    now = int(time.time() * 1000) if start_ms is None else start_ms
    for i in range(count):
        cust = int(rand() * customers)
        attrs = {"campaign": _CAMPAIGNS[int(rand() * 3)]} if rand() < 0.3 else {}
        yield {
            "event_id": _uuid4_text(bits(128)),
            "event_time": now + i,
            "customer_id": f"c-{cust:06d}",
            "order_id": f"o-{cust:06d}-{int(rand() * 50):03d}",
            "event_type": EVENT_TYPES[bisect.bisect(_TYPE_CUMULATIVE, rand() * total)],
            "amount_cents": 100 + int(rand() * 49_900),
            "currency": CURRENCIES[int(rand() * 3)],
            "channel": CHANNELS[int(rand() * 4)],
            "attributes": attrs,
            "coupon_code": f"SAVE{5 + int(rand() * 25)}" if rand() < 0.1 else None,
            "shipping_country": COUNTRIES[int(rand() * 8)] if rand() < 0.8 else None,
        }
