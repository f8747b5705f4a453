"""Per-shard token buckets for bytes/s and records/s, so a producer does not throttle itself.

Kinesis accepts up to 1 MiB/s and 1,000 records/s per shard; what goes over is answered with
``ProvisionedThroughputExceededException``. Records wait here, per shard and in order, until both
buckets hold enough tokens. Time is passed in, so the stage is tested without clocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    """Anything with a ``size`` in bytes and a ``shard_id``."""

    @property
    def size(self) -> int: ...

    @property
    def shard_id(self) -> str: ...


T = TypeVar("T", bound=Sized)


class TokenBucket:
    """``rate`` tokens per second, holding at most ``capacity``; starts full."""

    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last call."""
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_time(self, amount: float) -> float:
        """Seconds until ``amount`` tokens are there (0 if they are now); call after ``refill``."""
        missing = min(amount, self.capacity) - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, amount: float) -> None:
        """Spend ``amount`` tokens (a request larger than the capacity empties the bucket)."""
        self.tokens -= min(amount, self.capacity)


class ShardLimit(Generic[T]):
    """One shard's queue and its two buckets."""

    __slots__ = ("queue", "bytes", "records")

    def __init__(self, bytes_per_sec: float, records_per_sec: float, burst_bytes: float, now: float) -> None:
        self.queue: deque[T] = deque()
        self.bytes = TokenBucket(bytes_per_sec, burst_bytes, now)
        self.records = TokenBucket(records_per_sec, max(records_per_sec, 1.0), now)


class Limiter(Generic[T]):
    """Holds Kinesis records per shard until the shard's buckets allow them, first in first out.

    ``burst_bytes`` is the bytes bucket's capacity; a record larger than it waits for a full
    bucket and then empties it, so no record is ever stuck.
    """

    def __init__(self, bytes_per_sec: float, records_per_sec: float, burst_bytes: float) -> None:
        self.bytes_per_sec = bytes_per_sec
        self.records_per_sec = records_per_sec
        self.burst_bytes = burst_bytes
        self.shards: dict[str, ShardLimit[T]] = {}
        self.waiting = 0

    def add(self, record: T, now: float) -> None:
        """Queue a Kinesis record behind the others of its shard."""
        limit = self.shards.get(record.shard_id)
        if limit is None:
            limit = self.shards[record.shard_id] = ShardLimit(
                self.bytes_per_sec, self.records_per_sec, self.burst_bytes, now
            )
        limit.queue.append(record)
        self.waiting += 1

    def add_front(self, record: T, now: float) -> None:
        """Queue a record (a retry) ahead of the others of its shard."""
        self.add(record, now)
        queue = self.shards[record.shard_id].queue
        queue.rotate(1)  # the record just appended moves to the front

    def release(self, now: float) -> tuple[list[T], float | None]:
        """The records the buckets allow now, and the seconds until the next one may go (or None)."""
        out: list[T] = []
        wait: float | None = None
        for limit in self.shards.values():
            queue = limit.queue
            if not queue:
                continue
            limit.bytes.refill(now)
            limit.records.refill(now)
            while queue:
                size = queue[0].size
                w = max(limit.bytes.wait_time(size), limit.records.wait_time(1))
                if w > 0:
                    wait = w if wait is None else min(wait, w)
                    break
                limit.bytes.take(size)
                limit.records.take(1)
                out.append(queue.popleft())
        self.waiting -= len(out)
        return out, wait

    def backlogged(self) -> list[str]:
        """Shards with records waiting for tokens."""
        return [shard_id for shard_id, limit in self.shards.items() if limit.queue]

    def throttled(self, shard_id: str, size: int, now: float) -> None:
        """Kinesis throttled a record of ``size`` bytes: give its tokens back.

        The shard did not take the record, so it did not spend its quota on it; charging our
        buckets twice (now and again on the retry) would leave the shard idle for a second per
        throttle. The retry's back-off lets the shard's own bucket refill first.
        """
        limit = self.shards.get(shard_id)
        if limit is not None:
            limit.bytes.refill(now)
            limit.records.refill(now)
            limit.bytes.tokens = min(limit.bytes.capacity, limit.bytes.tokens + size)
            limit.records.tokens = min(limit.records.capacity, limit.records.tokens + 1)

    def remove_shards(self, shard_ids: Iterable[str]) -> list[T]:
        """Drop these shards (gone after resharding) and return what waited for them."""
        out: list[T] = []
        for shard_id in shard_ids:
            limit = self.shards.pop(shard_id, None)
            if limit is not None:
                out.extend(limit.queue)
        self.waiting -= len(out)
        return out
