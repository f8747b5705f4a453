"""Which shard a partition key lands on: MD5 of the UTF-8 key as a 128-bit integer, or the
explicit hash key, looked up in the open shards' hash key ranges (from paged ListShards)."""

from __future__ import annotations

import bisect
import hashlib
import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import compress, repeat
from operator import is_
from typing import Any

from producers.errors import StreamNotFound

MAX_HASH_KEY = 2**128 - 1


def _fast_md5() -> Callable[[bytes], Any]:
    """CPython's built-in MD5 when present: the same digest as ``hashlib.md5`` (which goes through
    OpenSSL 3's EVP layer and costs two to four times as much for a key of a few dozen bytes)."""
    try:
        md5: Callable[[bytes], Any] = importlib.import_module("_md5").md5
        if md5(b"partition-key").digest() == hashlib.md5(b"partition-key").digest():
            return md5
    except (ImportError, AttributeError, ValueError):  # pragma: no cover - builds without it
        pass
    return hashlib.md5  # pragma: no cover


_md5 = _fast_md5()
_digest = type(_md5(b"")).digest  # the unbound method: mapped over many hash objects at C speed
_encode = str.encode  # UTF-8 by default
_from_bytes = int.from_bytes
_bisect = bisect.bisect_right
_CACHE_MAX = 65536
_POSITIONS = list(range(4096))
_CHUNK = 4096  # keys per step of ``route_indexes``: the unit in which it decides to use the cache
_SPLIT = 0xFF  # in a top-byte table: hashes with this first byte lie on both sides of a shard start
# Top-byte tables with more split bytes than this are not used: past it, the records that need a
# bisect after all cost more than bisecting every record.
_MAX_SPLIT_BYTES = 16


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


def _top_byte_table(start_digests: list[bytes]) -> bytes | None:
    """A ``bytes.translate`` table from a hash's first byte to its shard's index, or None.

    ``start_digests`` are the starts (16 big-endian bytes) of every shard but the first. The
    hashes with first byte ``b`` are ``b·2^120`` to ``(b+1)·2^120 - 1``: when no start lies above
    the lowest of them and at or below the highest, they all bisect to one index, the table's
    entry; otherwise the entry is ``_SPLIT`` and such a hash is bisected. None when the indexes
    do not fit a byte or too many first bytes are split.
    """
    if len(start_digests) >= _SPLIT:
        return None
    table = bytearray()
    for b in range(256):
        lo = _bisect(start_digests, bytes((b,)) + bytes(15))
        hi = _bisect(start_digests, bytes((b,)) + b"\xff" * 15)
        table.append(lo if lo == hi else _SPLIT)
    if table.count(_SPLIT) > _MAX_SPLIT_BYTES:
        return None
    return bytes(table)


class ShardMap:
    """Predicts shards from the stream's open shards; immutable, replaced whole on refresh."""

    def __init__(self, shards: list[ShardRange]) -> None:
        if not shards:
            raise StreamNotFound("the stream has no open shards: is it still being created or deleted?")
        self.shards = sorted(shards, key=lambda s: s.start)
        self._starts = [s.start for s in self.shards]
        # MD5 digests compare as big-endian bytes in the same order as their integer values
        # (equal lengths, unsigned, most significant byte first), so routing by partition key
        # bisects on the 16-byte digest without converting it: exact on every boundary. The
        # first shard's start is left out: bisecting the others gives the shard's index directly,
        # and a hash below the first start (a gap, mid-resharding) gives 0 as ``shard_for_hash``.
        self._start_digests = [s.start.to_bytes(16, "big") for s in self.shards[1:]]
        self._index_of = partial(_bisect, self._start_digests)
        self._top_table = _top_byte_table(self._start_digests)
        self.by_id = {s.shard_id: s for s in self.shards}
        # An aggregate carries its shard's starting hash key as explicit hash key: any value in
        # the range pins it to the shard, and this one is a string made once per shard.
        self.start_keys = {s.shard_id: str(s.start) for s in self.shards}
        # Popular keys are hashed once (key -> index in ``shards``); the cache is dropped when it
        # grows past its bound. ``route_indexes`` stops consulting it while keys do not repeat,
        # and tries it again every few thousand keys.
        self._cache: dict[str, int] = {}
        self._cache_useful = True
        self._cache_skipped = 0
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
        i = _bisect(self._starts, value) - 1
        # A gap (mid-resharding) only makes the prediction wrong, which the retrier corrects.
        return self.shards[i if i >= 0 else 0]

    def predict(self, partition_key: str, explicit_hash_key: str | None = None) -> ShardRange:
        """The shard a record with this key will land on."""
        h = int(explicit_hash_key) if explicit_hash_key is not None else hash_key(partition_key)
        return self.shard_for_hash(h)

    def route(self, partition_key: str) -> ShardRange:
        """The shard of a partition key, from the cache when the key was seen before."""
        if self._single is not None:
            return self._single
        i = self._cache.get(partition_key)
        if i is None:
            i = _bisect(self._start_digests, _md5(partition_key.encode("utf-8")).digest())
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[partition_key] = i
        return self.shards[i]

    def _digest_indexes(self, digests: list[bytes]) -> Sequence[int]:
        """The index in ``shards`` of the shard of each MD5 digest, in order.

        With a top-byte table, the first bytes of all digests (one join and one slice) are
        translated to shard indexes in one C call; only digests whose first byte is split by a
        shard start are bisected, exactly as every digest is without the table.
        """
        table = self._top_table
        if table is None:
            return list(map(self._index_of, digests))
        tops = b"".join(digests)[::16].translate(table)
        i = tops.find(_SPLIT)
        if i < 0:
            return tops  # bytes: its items are the indexes
        out = list(tops)
        index_of = self._index_of
        while i >= 0:
            out[i] = index_of(digests[i])
            i = tops.find(_SPLIT, i + 1)
        return out

    def route_indexes(self, partition_keys: Sequence[str]) -> list[int]:
        """``route`` for many keys: the index in ``shards`` of each key's shard, in order.

        Every key not in the cache is hashed (MD5 of its UTF-8 bytes), as ``route`` does; the
        work runs in C-level passes over the keys instead of one Python call per key.
        """
        n = len(partition_keys)
        if self._single is not None:
            return [0] * n
        out: list[int] = []
        cache = self._cache
        digest_indexes = self._digest_indexes
        for lo in range(0, n, _CHUNK):
            chunk = partition_keys[lo : lo + _CHUNK]
            if not self._cache_useful:
                # Keys did not repeat lately: hash them all, and look at the cache again later.
                out += digest_indexes(list(map(_digest, map(_md5, map(_encode, chunk)))))
                self._cache_skipped += 1
                if self._cache_skipped >= 16:
                    self._cache_useful = True
                continue
            hits = list(map(cache.get, chunk))
            if None not in hits:
                out += hits  # type: ignore[arg-type]  # no None among them
                continue
            missed = list(dict.fromkeys(compress(chunk, map(is_, hits, repeat(None)))))
            if len(cache) + len(missed) > _CACHE_MAX:
                cache.clear()
            digests = list(map(_digest, map(_md5, map(_encode, missed))))
            cache.update(zip(missed, digest_indexes(digests), strict=True))
            out += map(cache.__getitem__, chunk)
            # Worth it while most keys of a chunk were seen before (or repeat within it).
            self._cache_useful = len(missed) * 2 <= len(chunk)
            self._cache_skipped = 0
        return out

    def route_many(self, partition_keys: Sequence[str]) -> list[tuple[ShardRange, Sequence[int]]]:
        """The keys grouped by shard: (shard, ascending positions of its keys) per shard used.

        The same shards as ``route`` for each key; what ``Aggregator.add_many`` takes.
        """
        n = len(partition_keys)
        if not n:
            return []
        if self._single is not None:
            return [(self._single, range(n))]
        groups: list[list[int]] = [[] for _ in self.shards]
        # Positions from a list of ints made once: no int object made (and freed) per key.
        positions = _POSITIONS[:n] if n <= len(_POSITIONS) else range(n)
        for i, j in zip(positions, self.route_indexes(partition_keys), strict=True):
            groups[j].append(i)
        shards = self.shards
        return [(shards[j], g) for j, g in enumerate(groups) if g]

    def route_hash(self, explicit_hash_key: str) -> ShardRange:
        """The shard of an explicit hash key (a decimal string)."""
        return self.shard_for_hash(int(explicit_hash_key))

    def owns(self, shard_id: str, value: int) -> bool:
        """True when ``shard_id`` is open and its range holds ``value``."""
        shard = self.by_id.get(shard_id)
        return shard is not None and shard.start <= value <= shard.end
