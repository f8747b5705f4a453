"""Shard prediction: MD5 of the UTF-8 partition key as a 128-bit integer, or the explicit hash key.

https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecordsRequestEntry.html: "an MD5
hash function is used to map partition keys to 128-bit integer values and to map associated data
records to shards"; a shard owns the inclusive range StartingHashKey..EndingHashKey
(https://docs.aws.amazon.com/kinesis/latest/APIReference/API_HashKeyRange.html).
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.errors import StreamNotFound
from producers.shard_map import ShardMap, ShardRange, hash_key, list_open_shards, shards_from_pages
from tests.producers.fakes import even_shards

MAX = 2**128 - 1


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


# -- batch routing: route_indexes / route_many ---------------------------------------------------
def _reference_index(shards: list[ShardRange], key: str) -> int:
    """The shard index by the definition: MD5 of the UTF-8 key as a big-endian 128-bit integer,
    the last shard (by start) whose start is at or below it, the first if none is."""
    h = int.from_bytes(hashlib.md5(key.encode("utf-8")).digest(), "big")
    ordered = sorted(shards, key=lambda s: s.start)
    below = [i for i, s in enumerate(ordered) if s.start <= h]
    return below[-1] if below else 0


def test_route_indexes_and_route_many_agree_with_the_md5_definition():
    keys = [f"customer-{i}" for i in range(3000)] + ["ключ", "🚀" * 60, "é" * 256, "a"] * 3
    for n in (1, 2, 3, 7, 16):
        shards = even_shards(n)
        smap = ShardMap(list(reversed(shards)))
        expect = [_reference_index(shards, k) for k in keys]
        assert smap.route_indexes(keys) == expect
        assert smap.route_indexes(keys) == expect  # the second time from the cache
        groups = ShardMap(shards).route_many(keys)
        got = {i: shard for shard, positions in groups for i in positions}
        assert [got[i] for i in range(len(keys))] == [smap.shards[j] for j in expect]
        for _, positions in groups:
            assert list(positions) == sorted(positions)
        assert [smap.route(k) for k in keys] == [smap.shards[j] for j in expect]


def test_keys_hashing_exactly_onto_a_shard_boundary():
    """A key whose hash is a shard's start belongs to that shard; one below, to the shard before.
    Shard starts that differ from the key's hash only in the last bit, or only in the high 64
    bits, must not be confused (the comparison is over all 128 bits)."""
    keys = [f"boundary-{i}" for i in range(50)]
    for key in keys:
        h = hash_key(key)
        for start in (h, h + 1, h - 1, h ^ (1 << 64), (h >> 64) << 64, ((h >> 64) + 1) << 64):
            if not 0 < start <= MAX:
                continue
            shards = [ShardRange("low", 0, start - 1), ShardRange("high", start, MAX)]
            smap = ShardMap(shards)
            expect = "high" if h >= start else "low"
            assert smap.route(key).shard_id == expect
            assert smap.predict(key).shard_id == expect
            assert [smap.shards[i].shard_id for i in smap.route_indexes([key, key])] == [expect] * 2
            assert [(s.shard_id, list(p)) for s, p in ShardMap(shards).route_many([key])] == [(expect, [0])]


def test_a_gap_below_the_first_shard_routes_to_the_first_shard():
    """Mid-resharding the open shards may not start at 0: as ``shard_for_hash``, the first."""
    keys = [f"k{i}" for i in range(500)]
    shards = [ShardRange("a", 2**127, 2**127 + 2**120), ShardRange("b", 2**127 + 2**120 + 1, MAX)]
    smap = ShardMap(shards)
    expect = [smap.shard_for_hash(hash_key(k)) for k in keys]
    assert [smap.shards[i] for i in smap.route_indexes(keys)] == expect
    assert [smap.route(k) for k in keys] == expect


def test_route_indexes_skips_the_cache_while_keys_do_not_repeat_and_comes_back():
    smap = ShardMap(even_shards(4))
    unique = [f"unique-{i}" for i in range(5 * 4096)]
    assert smap.route_indexes(unique) == [_reference_index(smap.shards, k) for k in unique]
    assert len(smap._cache) <= 4096  # only the first chunk went into it
    repeated = [f"customer-{i % 16}" for i in range(20 * 4096)]
    assert smap.route_indexes(repeated) == [_reference_index(smap.shards, k) for k in repeated[:16]] * (
        20 * 4096 // 16
    )
    assert all(f"customer-{i}" in smap._cache for i in range(16))  # used again after a while


def test_route_many_on_one_shard_and_on_no_keys():
    smap = ShardMap(even_shards(1))
    assert [(s, list(p)) for s, p in smap.route_many(["a", "b", "c"])] == [(smap.shards[0], [0, 1, 2])]
    assert smap.route_indexes(["a", "b"]) == [0, 0]
    assert ShardMap(even_shards(3)).route_many([]) == []


# -- the top-byte table: shard indexes from the digests' first bytes, bisect where a start splits one
def _shards_from_starts(starts: list[int]) -> list[ShardRange]:
    """Shards starting at 0 and at each of ``starts`` (distinct, inside the hash key space)."""
    cuts = sorted({0, *starts})
    ends = [c - 1 for c in cuts[1:]] + [MAX]
    return [ShardRange(f"shardId-{i:012d}", c, e) for i, (c, e) in enumerate(zip(cuts, ends, strict=True))]


_starts = st.lists(
    st.one_of(
        st.integers(1, MAX),
        st.integers(1, 255).map(lambda b: b << 120),  # exactly on a first byte's lowest hash
        st.integers(0, 255).map(lambda b: (b << 120) + 1),  # just inside a first byte's range
        st.integers(1, 255).map(lambda b: (b << 120) - 1),  # the last hash of the byte below
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_starts, st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=60))
def test_route_indexes_with_any_shard_starts_agree_with_the_md5_definition(starts, keys):
    shards = _shards_from_starts(starts)
    smap = ShardMap(shards)
    smap._cache_useful = False  # every key hashed: the path that uses the top-byte table
    assert smap.route_indexes(keys) == [_reference_index(shards, k) for k in keys]


@settings(max_examples=150, deadline=None)
@given(_starts, st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=80))
def test_digest_indexes_agree_with_bisect_for_any_digest(starts, digests):
    """Digests whose first byte a shard start splits are bisected; the others come from the table,
    and both give the index of the last shard starting at or below the digest's value."""
    smap = ShardMap(_shards_from_starts(starts))
    ordered = [s.start for s in smap.shards]
    expect = [max(0, sum(1 for s in ordered if s <= int.from_bytes(d, "big")) - 1) for d in digests]
    assert list(smap._digest_indexes(digests)) == expect


def test_top_byte_table_is_used_for_few_shards_and_not_for_many():
    assert ShardMap(even_shards(4))._top_table == bytes(b >> 6 for b in range(256))  # no byte split
    assert ShardMap(even_shards(3))._top_table is not None  # two bytes split, bisected
    assert ShardMap(even_shards(200))._top_table is None  # most bytes split: bisect them all
    assert ShardMap(even_shards(300))._top_table is None  # indexes past a byte
    keys = [f"k{i}" for i in range(3000)]
    for n in (3, 200, 300):
        smap = ShardMap(even_shards(n))
        smap._cache_useful = False
        assert smap.route_indexes(keys) == [_reference_index(smap.shards, k) for k in keys]
