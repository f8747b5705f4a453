"""One open KPL aggregated record per predicted shard, with exact size accounting.

A Kinesis record's size is its data plus its partition key (UTF-8). For an aggregate that is
magic + protobuf + MD5 + the aggregate's partition key (its first user record's), so every byte
is counted before a record is added, and a full aggregate is exactly at or under the limit.
A lone record is sent as itself (its own key and explicit hash key), as the KPL does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.codecs import kpl
from producers.records import KinesisRecord

MAX_RECORD_BYTES = 1024 * 1024
OVERHEAD = kpl.OVERHEAD

_key_entry = kpl.key_entry
_record_header = kpl.record_header
# Byte strings that repeat across records, made once: the partition key table's entry prefixes
# (tag + one-byte length) and record headers by data length and key index.
_PK_PREFIX = [bytes((0x0A, n)) for n in range(0x80)]
_HEADERS: dict[int, list[bytes]] = {}


def _header(pk_index: int, data_len: int) -> bytes:
    """``kpl.record_header`` without an explicit hash key, cached for small indexes."""
    if pk_index >= 0x4000:
        return _record_header(pk_index, None, data_len)
    hs = _HEADERS.get(data_len)
    if hs is None:
        if len(_HEADERS) >= 4096:
            _HEADERS.clear()
        hs = _HEADERS[data_len] = []
    while len(hs) <= pk_index:
        hs.append(_record_header(len(hs), None, data_len))
    return hs[pk_index]


class OpenAggregate:
    """The aggregated record being filled for one shard (mutable working state, not a record)."""

    __slots__ = (
        "shard_id",
        "explicit_hash_key",
        "first_key",
        "first_ehk",
        "size",
        "pk_index",
        "pk_entries",
        "ehk_index",
        "ehk_entries",
        "parts",
        "handles",
        "first_arrival",
        "oldest_arrival",
    )

    def __init__(self, shard_id: str, explicit_hash_key: str, first_arrival: float) -> None:
        self.shard_id = shard_id
        self.explicit_hash_key = explicit_hash_key  # inside the shard's range: pins the aggregate
        self.first_key = ""
        self.first_ehk: str | None = None
        self.size = OVERHEAD
        self.pk_index: dict[str, int] = {}
        self.pk_entries: list[bytes] = []
        self.ehk_index: dict[str, int] = {}
        self.ehk_entries: list[bytes] = []
        self.parts: list[bytes] = []  # record header, data, record header, data, ...
        self.handles: list[Any] = []
        self.first_arrival = first_arrival
        self.oldest_arrival = first_arrival

    def __len__(self) -> int:
        return len(self.handles)

    def seal(self, deadline: float) -> KinesisRecord:
        """The finished Kinesis record."""
        if len(self.handles) == 1:
            data = self.parts[1]
            return KinesisRecord(
                self.shard_id,
                self.first_key,
                self.first_ehk,
                data,
                len(data) + len(self.first_key.encode("utf-8")),
                tuple(self.handles),
                deadline,
                self.oldest_arrival,
            )
        data = kpl.assemble(self.pk_entries, self.ehk_entries, self.parts)
        return KinesisRecord(
            self.shard_id,
            self.first_key,
            self.explicit_hash_key,
            data,
            self.size,
            tuple(self.handles),
            deadline,
            self.oldest_arrival,
        )


class Aggregator:
    """Fills one aggregate per shard; hands back the aggregates it seals.

    ``add`` seals the shard's aggregate when the next record would not fit (size or count);
    ``seal_due`` seals those that waited ``max_buffered_time``; ``seal_all`` seals everything.
    """

    def __init__(
        self,
        max_bytes: int = MAX_RECORD_BYTES,
        max_count: int = 4_294_967_295,
        max_buffered_time: float = 0.1,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.max_buffered_time = max_buffered_time
        self.open: dict[str, OpenAggregate] = {}

    def add(
        self,
        shard_id: str,
        shard_hash_key: str,
        partition_key: str,
        data: bytes,
        explicit_hash_key: str | None,
        handle: Any,
        now: float,
        arrival: float | None = None,
    ) -> KinesisRecord | None:
        """Add one user record to its shard's aggregate; return the aggregate it sealed, if any.

        ``shard_hash_key`` is a hash key inside the shard's range (a decimal string), used as the
        aggregate's explicit hash key; ``arrival`` (default ``now``) is when the record was put.
        """
        agg = self.open.get(shard_id)
        if agg is None:
            agg = self.open[shard_id] = OpenAggregate(shard_id, shard_hash_key, now)
        n = len(data)
        sealed = None
        # This method runs once per user record: it is written for speed (see bench/producer.py).
        while True:
            pki = agg.pk_index.get(partition_key)
            if pki is None:
                pki = len(agg.pk_entries)
                kb = partition_key.encode("utf-8")
                entry = _PK_PREFIX[len(kb)] + kb if len(kb) < 0x80 else _key_entry(kb)
                cost = len(entry)
            else:
                entry = None
                cost = 0
            if explicit_hash_key is None:
                ehi = None
                ehk_entry = None
                hs = _HEADERS.get(n)
                header = hs[pki] if hs is not None and pki < len(hs) else _header(pki, n)
            else:
                ehi = agg.ehk_index.get(explicit_hash_key)
                if ehi is None:
                    ehi = len(agg.ehk_entries)
                    ehk_entry = _key_entry(explicit_hash_key.encode("ascii"), True)
                    cost += len(ehk_entry)
                else:
                    ehk_entry = None
                header = _record_header(pki, ehi, n)
            cost += len(header) + n
            handles = agg.handles
            if not handles:
                break
            if agg.size + cost <= self.max_bytes and len(handles) < self.max_count:
                break
            sealed = agg.seal(agg.first_arrival + self.max_buffered_time)
            agg = self.open[shard_id] = OpenAggregate(shard_id, shard_hash_key, now)
        if not handles:
            agg.first_key = partition_key
            agg.first_ehk = explicit_hash_key
            cost += len(partition_key.encode("utf-8"))  # the aggregate's own partition key
        if entry is not None:
            agg.pk_index[partition_key] = pki
            agg.pk_entries.append(entry)
        if ehk_entry is not None:
            assert explicit_hash_key is not None and ehi is not None
            agg.ehk_index[explicit_hash_key] = ehi
            agg.ehk_entries.append(ehk_entry)
        parts = agg.parts
        parts.append(header)
        parts.append(data)
        handles.append(handle)
        agg.size += cost
        if arrival is not None and arrival < agg.oldest_arrival:
            agg.oldest_arrival = arrival
        return sealed

    def next_deadline(self) -> float | None:
        """When the oldest open aggregate is due, or None if none is open."""
        if not self.open:
            return None
        return min(a.first_arrival for a in self.open.values()) + self.max_buffered_time

    def seal_due(self, now: float, hold: Iterable[str] = (), early: float = 0.0) -> list[KinesisRecord]:
        """Seal the aggregates that waited ``max_buffered_time``, except the shards in ``hold``.

        A shard whose limiter already has a backlog is held: sending its aggregate early would
        not get it out sooner, and letting it fill saves records and requests. When one aggregate
        is due, those due within ``early`` seconds go with it, in the same PutRecords request.
        """
        held = set(hold)
        due = [
            (agg.first_arrival + self.max_buffered_time, shard_id)
            for shard_id, agg in self.open.items()
            if shard_id not in held
        ]
        if not due or min(due)[0] > now:
            return []
        out = []
        for deadline, shard_id in due:
            if deadline <= now + early:
                out.append(self.open.pop(shard_id).seal(deadline))
        return out

    def seal_all(self) -> list[KinesisRecord]:
        """Seal every open aggregate."""
        out = [a.seal(a.first_arrival + self.max_buffered_time) for a in self.open.values()]
        self.open.clear()
        return out

    def remove_shards(self, shard_ids: Iterable[str]) -> list[Any]:
        """Drop the open aggregates of these shards (gone after resharding); return their handles."""
        out: list[Any] = []
        for shard_id in shard_ids:
            agg = self.open.pop(shard_id, None)
            if agg is not None:
                out.extend(agg.handles)
        return out

    def buffered(self) -> int:
        """User records in open aggregates."""
        return sum(len(a) for a in self.open.values())
