"""The aggregator: one aggregate per shard, exact sizes, flushed by size, count and time.

Kinesis counts a record's data plus its partition key against the record limit
(https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html).
"""

from __future__ import annotations

import random

from pipeline.codecs import kpl
from producers.aggregator import Aggregator
from producers.shard_map import ShardMap
from tests.producers.fakes import even_shards

MIB = 1024 * 1024


def _fill(agg: Aggregator, smap: ShardMap, records, now: float = 0.0):
    sealed = []
    for i, (pk, data, ehk) in enumerate(records):
        shard = smap.route(pk) if ehk is None else smap.route_hash(ehk)
        out = agg.add(shard.shard_id, smap.start_keys[shard.shard_id], pk, data, ehk, i, now)
        if out is not None:
            sealed.append(out)
    return sealed


def _size(kr) -> int:
    return len(kr.data) + len(kr.partition_key.encode("utf-8"))


def test_sizes_are_exact_and_never_over_the_limit():
    rng = random.Random(7)
    smap = ShardMap(even_shards(3))
    records = []
    for i in range(6000):
        pk = rng.choice(["a", "ключ-" + str(i), "顧客" * rng.randrange(1, 60), f"k{i % 50}"])
        ehk = str(rng.randrange(2**128)) if i % 11 == 0 else None
        records.append((pk, rng.randbytes(rng.choice([0, 1, 100, 1000, 20_000])), ehk))
    agg = Aggregator(max_bytes=MIB)
    sealed = _fill(agg, smap, records) + agg.seal_all()
    for kr in sealed:
        assert kr.size == _size(kr) <= MIB
    # Nothing lost, nothing reordered within a shard.
    got = [(kr.shard_id, i) for kr in sealed for i in kr.records]
    assert sorted(i for _, i in got) == list(range(len(records)))


def test_full_aggregates_are_full():
    """An aggregate is sealed only when the next record would not fit: no under-filling."""
    smap = ShardMap(even_shards(1))
    records = [(f"key-{i}", b"x" * 100, None) for i in range(30_000)]
    sealed = _fill(Aggregator(max_bytes=MIB), smap, records)
    assert len(sealed) >= 3
    for kr in sealed:
        assert kr.size > MIB - 200  # the next 100-byte record (+ key and framing) did not fit


def test_records_of_different_shards_never_share_an_aggregate():
    shards = even_shards(4)
    smap = ShardMap(shards)
    records = [(f"customer-{i}", b"e" * 50, None) for i in range(2000)]
    agg = Aggregator(max_bytes=64 * 1024)
    sealed = _fill(agg, smap, records) + agg.seal_all()
    by_id = {s.shard_id: s for s in shards}
    for kr in sealed:
        shard = by_id[kr.shard_id]
        if len(kr.records) > 1:
            # The aggregate's explicit hash key pins it to the shard its sub-records belong to.
            assert int(kr.explicit_hash_key) in shard
            for sub in kpl.decode(kr.data):
                assert smap.predict(sub.partition_key) == shard


def test_sub_records_keep_their_keys_and_order():
    smap = ShardMap(even_shards(1))
    records = [("a", b"1", None), ("b", b"2", "77"), ("a", b"", None), ("c", b"4", "77")]
    agg = Aggregator()
    assert _fill(agg, smap, records) == []
    (kr,) = agg.seal_all()
    assert kr.records == (0, 1, 2, 3)
    assert kpl.decode(kr.data) == [kpl.SubRecord(pk, d, e) for pk, d, e in records]
    assert kr.partition_key == "a"


def test_a_lone_record_is_sent_as_itself():
    smap = ShardMap(even_shards(2))
    agg = Aggregator()
    _fill(agg, smap, [("solo", b"payload", "12345")])
    (kr,) = agg.seal_all()
    assert (kr.partition_key, kr.explicit_hash_key, kr.data) == ("solo", "12345", b"payload")
    assert not kpl.is_aggregated(kr.data)


def test_a_record_of_exactly_the_limit_goes_alone():
    smap = ShardMap(even_shards(1))
    agg = Aggregator(max_bytes=MIB)
    big = b"z" * (MIB - 3)
    sealed = _fill(agg, smap, [("k1", b"small", None), ("big", big, None), ("k2", b"after", None)])
    sealed += agg.seal_all()
    assert [len(kr.records) for kr in sealed] == [1, 1, 1]
    assert sealed[1].data == big and sealed[1].size == MIB


def test_count_limit_seals():
    smap = ShardMap(even_shards(1))
    agg = Aggregator(max_count=10)
    sealed = _fill(agg, smap, [(f"k{i}", b"v", None) for i in range(35)]) + agg.seal_all()
    assert [len(kr.records) for kr in sealed] == [10, 10, 10, 5]


def test_time_seals_only_due_aggregates_and_holds_backlogged_shards():
    shards = even_shards(2)
    smap = ShardMap(shards)
    agg = Aggregator(max_buffered_time=0.1)
    key0 = next(k for k in (f"k{i}" for i in range(100)) if smap.route(k) == shards[0])
    key1 = next(k for k in (f"k{i}" for i in range(100)) if smap.route(k) == shards[1])
    _fill(agg, smap, [(key0, b"a", None)], now=0.0)
    _fill(agg, smap, [(key1, b"b", None)], now=0.05)
    assert agg.next_deadline() == 0.1
    assert agg.seal_due(0.09) == []
    assert [kr.shard_id for kr in agg.seal_due(0.1)] == [shards[0].shard_id]
    assert agg.seal_due(0.2, hold=[shards[1].shard_id]) == []
    assert [kr.shard_id for kr in agg.seal_due(0.2)] == [shards[1].shard_id]
    assert agg.next_deadline() is None


def test_aggregates_due_soon_go_with_the_one_that_is_due():
    """One PutRecords request instead of one per shard when deadlines are close."""
    shards = even_shards(3)
    smap = ShardMap(shards)
    agg = Aggregator(max_buffered_time=0.1)
    keys = {smap.route(k).shard_id: k for k in (f"k{i}" for i in range(200))}
    for t, shard in zip((0.0, 0.04, 0.08), shards, strict=True):
        _fill(agg, smap, [(keys[shard.shard_id], b"v", None)], now=t)
    assert agg.seal_due(0.05, early=0.05) == []  # nothing due yet: nothing goes early
    sealed = agg.seal_due(0.1, early=0.05)
    assert sorted(kr.shard_id for kr in sealed) == [shards[0].shard_id, shards[1].shard_id]


def test_remove_shards_returns_their_records():
    shards = even_shards(2)
    smap = ShardMap(shards)
    agg = Aggregator()
    records = [(f"k{i}", b"v", None) for i in range(50)]
    _fill(agg, smap, records)
    gone = agg.remove_shards([shards[0].shard_id])
    kept = agg.seal_all()
    assert sorted(gone + [i for kr in kept for i in kr.records]) == list(range(50))
