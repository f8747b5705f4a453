"""The per-customer state the state writer keeps, as a pure fold over events in position order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def _millis(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


@dataclass(slots=True)
class Delta:
    """What a run of one customer's events adds to its state item."""

    events: int = 0
    orders_created: int = 0
    orders_cancelled: int = 0
    paid_cents: int = 0
    last_event_type: str = ""
    last_event_time: int = 0

    def add(self, event: Mapping[str, Any]) -> None:
        """Fold one event (events must arrive in position order)."""
        kind = event["event_type"]
        self.events += 1
        if kind == "CREATED":
            self.orders_created += 1
        elif kind == "CANCELLED":
            self.orders_cancelled += 1
        elif kind == "PAID":
            self.paid_cents += int(event["amount_cents"])
        elif kind == "REFUNDED":
            self.paid_cents -= int(event["amount_cents"])
        self.last_event_type = kind
        # Decoded events carry epoch milliseconds already: the common case without a call.
        t = event["event_time"]
        self.last_event_time = t if type(t) is int else _millis(t)


def expected_state(events: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int | str]]:
    """The state items that a set of distinct events implies, keyed by customer id."""
    deltas: dict[str, Delta] = {}
    for event in events:
        deltas.setdefault(event["customer_id"], Delta()).add(event)
    return {
        key: {
            "events": d.events,
            "orders_created": d.orders_created,
            "orders_cancelled": d.orders_cancelled,
            "paid_cents": d.paid_cents,
        }
        for key, d in deltas.items()
    }
