"""Which shard a partition key lands on: MD5 of the UTF-8 key as a 128-bit integer, or the
explicit hash key, looked up in the open shards' hash key ranges (from paged ListShards)."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from producers.errors import StreamNotFound

MAX_HASH_KEY = 2**128 - 1
_md5 = hashlib.md5
_from_bytes = int.from_bytes
_bisect = bisect.bisect_right


def hash_key(partition_key: str) -> int:
    """The 128-bit hash Kinesis derives from a partition key."""
    return _from_bytes(_md5(partition_key.encode("utf-8")).digest(), "big")


@dataclass(frozen=True, slots=True)
class ShardRange:
    """One open shard and the hash keys it owns (inclusive)."""

    shard_id: str
    start: int
    end: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.start <= value <= self.end


def shards_from_pages(pages: Iterable[dict[str, Any]]) -> list[ShardRange]:
    """The open shards in ListShards response pages (closed ones take no new records)."""
    shards = []
    for page in pages:
        for s in page["Shards"]:
            if "EndingSequenceNumber" in s.get("SequenceNumberRange", {}):
                continue
            r = s["HashKeyRange"]
            shards.append(ShardRange(s["ShardId"], int(r["StartingHashKey"]), int(r["EndingHashKey"])))
    return shards


def list_open_shards(kinesis: Any, stream_name: str) -> list[ShardRange]:
    """Read the open shards of ``stream_name`` with paged ListShards."""

    def pages() -> Iterable[dict[str, Any]]:
        kwargs: dict[str, Any] = {"StreamName": stream_name}
        while True:
            resp = kinesis.list_shards(**kwargs)
            yield resp
            token = resp.get("NextToken")
            if not token:
                return
            # The API refuses StreamName together with NextToken.
            kwargs = {"NextToken": token}

    try:
        return shards_from_pages(pages())
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            raise StreamNotFound(
                f"stream {stream_name!r} does not exist: create it (`make up`) or set PIPELINE_STREAM"
            ) from None
        raise


class ShardMap:
    """Predicts shards from the stream's open shards; immutable, replaced whole on refresh."""

    def __init__(self, shards: list[ShardRange]) -> None:
        if not shards:
            raise StreamNotFound("the stream has no open shards: is it still being created or deleted?")
        self.shards = sorted(shards, key=lambda s: s.start)
        self._starts = [s.start for s in self.shards]
        # MD5 digests compare as big-endian bytes in the same order as their integer values, so
        # routing by partition key can bisect on the digest without converting it.
        self._start_digests = [s.start.to_bytes(16, "big") for s in self.shards]
        self.by_id = {s.shard_id: s for s in self.shards}
        # An aggregate carries its shard's starting hash key as explicit hash key: any value in
        # the range pins it to the shard, and this one is a string made once per shard.
        self.start_keys = {s.shard_id: str(s.start) for s in self.shards}
        # Popular keys are hashed once; the cache is dropped when it grows past its bound.
        self._cache: dict[str, ShardRange] = {}
        self._single = self.shards[0] if len(self.shards) == 1 else None

    @classmethod
    def from_stream(cls, kinesis: Any, stream_name: str) -> ShardMap:
        """The map of ``stream_name``'s open shards, read with paged ListShards."""
        return cls(list_open_shards(kinesis, stream_name))

    @classmethod
    def from_source(cls, source: Callable[[], list[ShardRange]]) -> ShardMap:
        """The map of the shards ``source()`` returns."""
        return cls(source())

    def shard_for_hash(self, value: int) -> ShardRange:
        """The open shard whose range holds ``value`` (the nearest below it if none does)."""
        i = bisect.bisect_right(self._starts, value) - 1
        # A gap (mid-resharding) only makes the prediction wrong, which the retrier corrects.
        return self.shards[i if i >= 0 else 0]

    def predict(self, partition_key: str, explicit_hash_key: str | None = None) -> ShardRange:
        """The shard a record with this key will land on."""
        h = int(explicit_hash_key) if explicit_hash_key is not None else hash_key(partition_key)
        return self.shard_for_hash(h)

    def route(self, partition_key: str) -> ShardRange:
        """The shard of a partition key, from the cache when the key was seen before."""
        shard = self._single or self._cache.get(partition_key)
        if shard is None:
            i = _bisect(self._start_digests, _md5(partition_key.encode("utf-8")).digest()) - 1
            shard = self.shards[i if i >= 0 else 0]
            if len(self._cache) >= 65536:
                self._cache.clear()
            self._cache[partition_key] = shard
        return shard

    def route_hash(self, explicit_hash_key: str) -> ShardRange:
        """The shard of an explicit hash key (a decimal string)."""
        return self.shard_for_hash(int(explicit_hash_key))

    def owns(self, shard_id: str, value: int) -> bool:
        """True when ``shard_id`` is open and its range holds ``value``."""
        shard = self.by_id.get(shard_id)
        return shard is not None and shard.start <= value <= shard.end
