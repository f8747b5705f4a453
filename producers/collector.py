"""Groups Kinesis records into PutRecords requests of <= 500 entries and <= 5 MiB.

A request goes out when it is full, when its oldest record reached its deadline (the first user
record's put + ``record_max_buffered_time``), or when the producer flushes. Time is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

MAX_ENTRIES = 500
MAX_REQUEST_BYTES = 5 * 1024 * 1024


class Collectable(Protocol):
    """Anything with a ``size`` in bytes and a ``deadline``."""

    @property
    def size(self) -> int: ...

    @property
    def deadline(self) -> float: ...


T = TypeVar("T")
C = TypeVar("C", bound=Collectable)


def batches(
    entries: Iterable[tuple[int, T]], max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_REQUEST_BYTES
) -> Iterator[list[T]]:
    """Split ``(size, entry)`` pairs into request-sized lists, in order."""
    batch: list[T] = []
    size = 0
    for n, entry in entries:
        if batch and (len(batch) >= max_entries or size + n > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += n
    if batch:
        yield batch


class Collector(Generic[C]):
    """Fills PutRecords requests; ``take`` hands back those ready to send."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.full: list[list[C]] = []  # closed requests waiting for a free connection
        self.current: list[C] = []
        self.current_bytes = 0
        self.current_deadline = float("inf")

    def __len__(self) -> int:
        return len(self.current) + sum(len(r) for r in self.full)

    def add(self, record: C) -> None:
        """Put a record in the current request, closing it first if the record would not fit."""
        size = record.size
        if self.current and (
            len(self.current) >= self.max_entries or self.current_bytes + size > self.max_bytes
        ):
            self._close()
        self.current.append(record)
        self.current_bytes += size
        if record.deadline < self.current_deadline:
            self.current_deadline = record.deadline
        if len(self.current) >= self.max_entries or self.current_bytes >= self.max_bytes:
            self._close()

    def _close(self) -> None:
        self.full.append(self.current)
        self.current = []
        self.current_bytes = 0
        self.current_deadline = float("inf")

    def take(self, now: float, force: bool = False, limit: int | None = None) -> list[list[C]]:
        """Up to ``limit`` requests ready now: full ones first, then the open one if due or forced."""
        if self.current and (force or self.current_deadline <= now):
            self._close()
        n = len(self.full) if limit is None else min(limit, len(self.full))
        out, self.full = self.full[:n], self.full[n:]
        return out

    def next_deadline(self) -> float | None:
        """When the open request is due (None if it is empty)."""
        return self.current_deadline if self.current else None

    def waiting(self) -> bool:
        """True when closed requests wait for a connection."""
        return bool(self.full)
