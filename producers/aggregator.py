"""One open KPL aggregated record per predicted shard, with exact size accounting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.codecs import kpl

MAX_RECORD_BYTES = 1024 * 1024
OVERHEAD = len(kpl.MAGIC) + kpl.DIGEST_SIZE


@dataclass(slots=True)
class OpenAggregate:
    """The aggregated record being filled for one shard."""

    shard_id: str
    explicit_hash_key: str
    records: list[kpl.SubRecord] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)
    pk_index: dict[str, int] = field(default_factory=dict)
    size: int = OVERHEAD  # bytes of the Kinesis record: data + partition key

    def cost(self, rec: kpl.SubRecord) -> int:
        """Bytes that adding ``rec`` would add to the Kinesis record."""
        extra = 0
        pki = self.pk_index.get(rec.partition_key)
        if pki is None:
            pki = len(self.pk_index)
            pk = len(rec.partition_key.encode("utf-8"))
            extra += 1 + kpl.varint_size(pk) + pk
            if not self.records:
                extra += pk  # the aggregated record's own partition key
        body = 1 + kpl.varint_size(pki) + 1 + kpl.varint_size(len(rec.data)) + len(rec.data)
        return extra + 1 + kpl.varint_size(body) + body

    def add(self, rec: kpl.SubRecord, handle: Any, cost: int) -> None:
        """Append ``rec``; ``cost`` is what ``cost(rec)`` returned."""
        self.pk_index.setdefault(rec.partition_key, len(self.pk_index))
        self.records.append(rec)
        self.handles.append(handle)
        self.size += cost

    def seal(self) -> tuple[str, str, bytes]:
        """(partition key, explicit hash key, data) of the finished Kinesis record."""
        if len(self.records) == 1:
            r = self.records[0]
            return r.partition_key, self.explicit_hash_key, r.data
        # Sub-records keep their own keys; the aggregate's explicit hash key pins it to the shard.
        subs = [kpl.SubRecord(r.partition_key, r.data) for r in self.records]
        return self.records[0].partition_key, self.explicit_hash_key, kpl.encode(subs)


class Aggregator:
    """Fills one aggregate per shard; hands back aggregates that are full."""

    def __init__(self, max_bytes: int = MAX_RECORD_BYTES, max_count: int = 100_000) -> None:
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.open: dict[str, OpenAggregate] = {}

    def add(
        self, shard_id: str, explicit_hash_key: str, rec: kpl.SubRecord, handle: Any
    ) -> OpenAggregate | None:
        """Add a record; return the aggregate it displaced if that one was full."""
        agg = self.open.get(shard_id)
        if agg is None:
            agg = self.open[shard_id] = OpenAggregate(shard_id, explicit_hash_key)
        cost = agg.cost(rec)
        sealed = None
        if agg.records and (agg.size + cost > self.max_bytes or len(agg.records) >= self.max_count):
            sealed = agg
            agg = self.open[shard_id] = OpenAggregate(shard_id, explicit_hash_key)
            cost = agg.cost(rec)
        agg.add(rec, handle, cost)
        return sealed

    def drain(self) -> list[OpenAggregate]:
        """Every open aggregate that holds records, emptied."""
        out = [a for a in self.open.values() if a.records]
        self.open.clear()
        return out
