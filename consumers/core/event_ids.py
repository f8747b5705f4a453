"""Producer duplicates: the same event id stored twice under two sequence numbers.

Modes (``PIPELINE_EVENT_ID_DEDUPE``):

- ``off``: no event-id dedupe (positions still drop delivery duplicates);
- ``batch``: the first occurrence within the batch wins; free, but a duplicate in a later batch
  passes;
- ``table``: a DynamoDB store remembers, per consumer and event id, the position that first carried
  it, for a TTL at least as long as the replay horizon (default 7 days). A record is kept when its
  event id is unknown or known at its own position (a re-delivery of the same record), dropped when
  known at another position.

Cost of ``table``, per record: one read (BatchGetItem, 100 keys a request, strongly consistent:
1 RCU per item up to 4 KB) and, for new ids, one write (BatchWriteItem, 25 items a request: 1 WCU).
So ``ceil(n/100) + ceil(new/25)`` requests for ``n`` records, versus ``2n`` writes for a
conditional-put-per-record store. The reads and writes need no condition because one consumer
sees one event id on one shard lineage only (the partition key is the entity key), processed in
order, one batch at a time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consumers.core.records import UserRecord

MODES = ("off", "batch", "table")


def within_batch(records: Sequence[UserRecord]) -> list[UserRecord]:
    """Keep the first record of each event id.

    Example:
        >>> a = UserRecord("1", "1", 0, "k", {"event_id": "x"}, 0.0)
        >>> b = UserRecord("2", "2", 0, "k", {"event_id": "x"}, 0.0)
        >>> [r.position for r in within_batch([a, b])]
        ['1']
    """
    ids = [str(r.event["event_id"]) for r in records]
    if len(set(ids)) == len(ids):  # the usual batch: no duplicate, nothing to pick
        return list(records)
    seen: set[str] = set()
    out = []
    for r, eid in zip(records, ids, strict=True):
        if eid in seen:
            continue
        seen.add(eid)
        out.append(r)
    return out


class EventIdFilter(Protocol):
    """Drops producer duplicates from records already in position order."""

    def filter(self, records: Sequence[UserRecord]) -> list[UserRecord]: ...


@dataclass(frozen=True, slots=True)
class NoDedupe:
    """Mode ``off``: every record passes."""

    def filter(self, records: Sequence[UserRecord]) -> list[UserRecord]:
        """All of ``records``."""
        return list(records)


@dataclass(frozen=True, slots=True)
class BatchDedupe:
    """Mode ``batch``: first occurrence within the batch wins, no I/O."""

    def filter(self, records: Sequence[UserRecord]) -> list[UserRecord]:
        """``within_batch(records)``."""
        return within_batch(records)


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())


class EventIdStore:
    """Mode ``table``: remembers which position first carried each event id, for ``ttl_seconds``.

    Items: ``event_id`` = ``"<consumer>#<event id>"``, ``position``, ``expires_at`` (epoch seconds,
    the table's TTL attribute). ``requests`` counts DynamoDB calls, for the benchmark.

    Example:
        >>> store = EventIdStore(dynamodb, "pipeline-event-ids", "lake-writer", 7 * 24 * 3600)
        >>> store.filter(records)  # records whose event id was first seen elsewhere are gone
    """

    READ_CHUNK = 100  # BatchGetItem limit
    WRITE_CHUNK = 25  # BatchWriteItem limit

    def __init__(
        self, dynamodb: Any, table: str, consumer: str, ttl_seconds: int, max_attempts: int = 8
    ) -> None:
        self.ddb = dynamodb
        self.table = table
        self.consumer = consumer
        self.ttl = ttl_seconds
        self.max_attempts = max_attempts
        self.requests = 0

    def _key(self, event_id: str) -> str:
        return f"{self.consumer}#{event_id}"

    def _read(self, keys: list[str]) -> dict[str, str]:
        """Known key → the position that first carried it."""
        known: dict[str, str] = {}
        for i in range(0, len(keys), self.READ_CHUNK):
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": [{"event_id": {"S": k}} for k in keys[i : i + self.READ_CHUNK]],
                    "ConsistentRead": True,
                    "ProjectionExpression": "event_id, #p",
                    "ExpressionAttributeNames": {"#p": "position"},
                }
            }
            for attempt in range(self.max_attempts):
                self.requests += 1
                resp = self.ddb.batch_get_item(RequestItems=pending)
                for item in resp.get("Responses", {}).get(self.table, []):
                    known[item["event_id"]["S"]] = item["position"]["S"]
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
                _backoff(attempt)  # throttled: DynamoDB hands back what it did not read
            else:
                raise RuntimeError(f"event-id store {self.table}: keys still unprocessed after retries")
        return known

    def _write(self, items: list[tuple[str, str]]) -> None:
        expires = str(int(time.time()) + self.ttl)
        for i in range(0, len(items), self.WRITE_CHUNK):
            requests: list[dict[str, Any]] = [
                {
                    "PutRequest": {
                        "Item": {"event_id": {"S": k}, "position": {"S": p}, "expires_at": {"N": expires}}
                    }
                }
                for k, p in items[i : i + self.WRITE_CHUNK]
            ]
            for attempt in range(self.max_attempts):
                self.requests += 1
                resp = self.ddb.batch_write_item(RequestItems={self.table: requests})
                requests = (resp.get("UnprocessedItems") or {}).get(self.table, [])
                if not requests:
                    break
                _backoff(attempt)
            else:
                raise RuntimeError(f"event-id store {self.table}: writes still unprocessed after retries")

    def filter(self, records: Sequence[UserRecord]) -> list[UserRecord]:
        """Drop records whose event id was first seen at another position; remember the new ones."""
        first = within_batch(records)
        if not first:
            return []
        keys = [self._key(str(r.event["event_id"])) for r in first]
        known = self._read(keys)
        out, new = [], []
        for key, r in zip(keys, first, strict=True):
            seen_at = known.get(key)
            if seen_at is None:
                new.append((key, r.position))
                out.append(r)
            elif seen_at == r.position:
                out.append(r)  # the same record delivered again (retry, bisect, replay)
        if new:
            self._write(new)
        return out


def make_filter(mode: str, dynamodb: Any = None, table: str = "", consumer: str = "", ttl: int = 0) -> Any:
    """The event-id filter for ``mode`` (``off``, ``batch`` or ``table``)."""
    if mode == "off":
        return NoDedupe()
    if mode == "batch":
        return BatchDedupe()
    if mode == "table":
        return EventIdStore(dynamodb, table, consumer, ttl)
    raise ValueError(f"event-id dedupe mode {mode!r}: choose one of {', '.join(MODES)}")
