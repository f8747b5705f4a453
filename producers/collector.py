"""Groups finished Kinesis records into PutRecords requests of ≤ 500 entries and ≤ 5 MiB."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
MAX_ENTRIES = 500
MAX_REQUEST_BYTES = 5 * 1024 * 1024


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
