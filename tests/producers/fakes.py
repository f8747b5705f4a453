"""A stand-in for the PutRecords network call: plain Python, no server, no patching.

It routes entries the way Kinesis does (explicit hash key, else MD5 of the partition key, over the
open shards' ranges), keeps what it stored, and answers with errors when a test asks it to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.codecs import kpl
from producers.shard_map import ShardRange, hash_key

MAX = 2**128


def even_shards(n: int) -> list[ShardRange]:
    """``n`` shards splitting the hash key space evenly, named as Kinesis names them."""
    return [ShardRange(f"shardId-{i:012d}", i * MAX // n, (i + 1) * MAX // n - 1) for i in range(n)]


@dataclass
class Stored:
    """One Kinesis record the fake accepted."""

    shard_id: str
    sequence_number: str
    partition_key: str
    explicit_hash_key: str | None
    data: bytes


@dataclass
class FakeKinesis:
    """``put_records(records) -> response`` over ``shards``; ``answer`` may replace an entry's result."""

    shards: list[ShardRange]
    # (entry, attempt number of this call) -> None to store, or an ErrorCode to answer with
    answer: Callable[[dict[str, Any], int], str | None] = lambda entry, call: None
    raise_on_call: Callable[[int], BaseException | None] = lambda call: None
    # The sequence number of the n-th stored record (Kinesis's grow in value and may grow in length).
    sequence: Callable[[int], str] = lambda n: str(10**20 + n)
    stored: list[Stored] = field(default_factory=list)
    calls: list[list[dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def shard_of(self, value: int) -> ShardRange:
        return next(s for s in self.shards if s.start <= value <= s.end)

    def put_records(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            call = len(self.calls)
            self.calls.append(records)
            exc = self.raise_on_call(call)
            if exc is not None:
                raise exc
            results = []
            failed = 0
            for entry in records:
                code = self.answer(entry, call)
                if code:
                    failed += 1
                    results.append({"ErrorCode": code, "ErrorMessage": f"{code} (fake)"})
                    continue
                ehk = entry.get("ExplicitHashKey")
                shard = self.shard_of(int(ehk) if ehk is not None else hash_key(entry["PartitionKey"]))
                seq = self.sequence(len(self.stored))
                self.stored.append(Stored(shard.shard_id, seq, entry["PartitionKey"], ehk, entry["Data"]))
                results.append({"ShardId": shard.shard_id, "SequenceNumber": seq})
            return {"FailedRecordCount": failed, "Records": results}

    def list_shards(self) -> list[ShardRange]:
        return list(self.shards)

    def user_records(self) -> list[tuple[str, str, int, kpl.SubRecord]]:
        """Every stored user record as (shard, sequence number, sub-sequence, record)."""
        out = []
        for s in self.stored:
            for sub, rec in enumerate(kpl.deaggregate(s.data, s.partition_key)):
                out.append((s.shard_id, s.sequence_number, sub, rec))
        return out
