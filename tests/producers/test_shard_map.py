"""Shard prediction: MD5 of the UTF-8 partition key as a 128-bit integer, or the explicit hash key.

https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecordsRequestEntry.html: "an MD5
hash function is used to map partition keys to 128-bit integer values and to map associated data
records to shards"; a shard owns the inclusive range StartingHashKey..EndingHashKey
(https://docs.aws.amazon.com/kinesis/latest/APIReference/API_HashKeyRange.html).
"""

from __future__ import annotations

import hashlib

import pytest

from producers.errors import StreamNotFound
from producers.shard_map import ShardMap, ShardRange, hash_key, list_open_shards, shards_from_pages
from tests.producers.fakes import even_shards


def test_hash_key_is_md5_of_utf8_key_big_endian():
    key = "kunde-ü-1"
    assert hash_key(key) == int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16)


def test_range_ends_are_inclusive():
    shards = even_shards(4)
    smap = ShardMap(list(reversed(shards)))  # order of ListShards does not matter
    for s in shards:
        assert smap.shard_for_hash(s.start) == s
        assert smap.shard_for_hash(s.end) == s
    assert smap.shard_for_hash(2**128 - 1) == shards[-1]


def test_route_agrees_with_predict_for_many_keys_and_repeats():
    smap = ShardMap(even_shards(7))
    keys = [f"customer-{i}" for i in range(2000)] + ["ключ", "🚀"] * 3
    for key in keys:
        assert smap.route(key) == smap.predict(key)
        assert hash_key(key) in smap.route(key)


def test_explicit_hash_key_overrides_the_partition_key():
    shards = even_shards(4)
    smap = ShardMap(shards)
    assert smap.predict("anything", str(shards[2].start + 5)) == shards[2]
    assert smap.route_hash(str(shards[3].end)) == shards[3]


def test_owns_checks_the_shard_and_its_range():
    shards = even_shards(2)
    smap = ShardMap(shards)
    assert smap.owns(shards[0].shard_id, shards[0].end)
    assert not smap.owns(shards[0].shard_id, shards[1].start)
    assert not smap.owns("shardId-gone", 0)


class PagedKinesis:
    """Answers ListShards in pages, refusing StreamName together with NextToken as AWS does."""

    def __init__(self, pages: list[dict]) -> None:
        self.pages = pages
        self.requests: list[dict] = []

    def list_shards(self, **kwargs):
        self.requests.append(kwargs)
        if "NextToken" in kwargs:
            assert "StreamName" not in kwargs
            return self.pages[int(kwargs["NextToken"])]
        return self.pages[0]


def _shard(shard_id: str, start: int, end: int, closed: bool = False) -> dict:
    seq = {"StartingSequenceNumber": "1"}
    if closed:
        seq["EndingSequenceNumber"] = "9"
    return {
        "ShardId": shard_id,
        "HashKeyRange": {"StartingHashKey": str(start), "EndingHashKey": str(end)},
        "SequenceNumberRange": seq,
    }


def test_list_open_shards_follows_pages_and_skips_closed_parents():
    """ListShards is paged by NextToken; a closed shard (with EndingSequenceNumber) takes no writes
    (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_ListShards.html)."""
    half = 2**127
    client = PagedKinesis(
        [
            {"Shards": [_shard("shardId-0", 0, 2**128 - 1, closed=True)], "NextToken": "1"},
            {"Shards": [_shard("shardId-1", 0, half - 1)], "NextToken": "2"},
            {"Shards": [_shard("shardId-2", half, 2**128 - 1)]},
        ]
    )
    shards = list_open_shards(client, "s")
    assert [s.shard_id for s in shards] == ["shardId-1", "shardId-2"]
    assert len(client.requests) == 3


def test_no_open_shards_is_a_clear_error():
    with pytest.raises(StreamNotFound, match="no open shards"):
        ShardMap(shards_from_pages([{"Shards": [_shard("shardId-0", 0, 1, closed=True)]}]))


def test_shard_range_membership():
    r = ShardRange("s", 10, 20)
    assert 10 in r and 20 in r and 9 not in r and 21 not in r
