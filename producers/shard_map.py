"""Which shard a partition key lands on: MD5 of the UTF-8 key as a 128-bit integer, or the
explicit hash key, looked up in the open shards' hash key ranges (from paged ListShards)."""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from typing import Any

MAX_HASH_KEY = 2**128 - 1


def hash_key(partition_key: str) -> int:
    """The 128-bit hash Kinesis derives from a partition key."""
    return int.from_bytes(hashlib.md5(partition_key.encode("utf-8")).digest(), "big")


@dataclass(frozen=True, slots=True)
class ShardRange:
    """One open shard and the hash keys it owns (inclusive)."""

    shard_id: str
    start: int
    end: int


class ShardMap:
    """Predicts shards from the stream's open shards."""

    def __init__(self, shards: list[ShardRange]) -> None:
        self.shards = sorted(shards, key=lambda s: s.start)
        self._starts = [s.start for s in self.shards]

    @classmethod
    def from_stream(cls, kinesis: Any, stream_name: str) -> ShardMap:
        """Read the open shards of ``stream_name`` with paged ListShards."""
        shards: list[ShardRange] = []
        kwargs: dict[str, Any] = {"StreamName": stream_name}
        while True:
            resp = kinesis.list_shards(**kwargs)
            for s in resp["Shards"]:
                if "EndingSequenceNumber" in s.get("SequenceNumberRange", {}):
                    continue  # closed: receives no new records
                r = s["HashKeyRange"]
                shards.append(ShardRange(s["ShardId"], int(r["StartingHashKey"]), int(r["EndingHashKey"])))
            token = resp.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        return cls(shards)

    def shard_for_hash(self, value: int) -> ShardRange:
        """The open shard whose range holds ``value``."""
        i = bisect.bisect_right(self._starts, value) - 1
        shard = self.shards[i]
        if not shard.start <= value <= shard.end:
            raise LookupError(f"hash key {value} is in no open shard's range")
        return shard

    def predict(self, partition_key: str, explicit_hash_key: str | None = None) -> ShardRange:
        """The shard a record with this key will land on."""
        h = int(explicit_hash_key) if explicit_hash_key is not None else hash_key(partition_key)
        return self.shard_for_hash(h)
