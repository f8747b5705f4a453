"""The aggregator: one aggregate per shard, exact sizes, flushed by size, count and time.

Kinesis counts a record's data plus its partition key against the record limit
(https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html).
"""

from __future__ import annotations

import base64
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codecs import kpl
from producers.aggregator import Aggregator, _assemble, _key_entries
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


# -- the batch path: add_many gives what add gives, byte for byte --------------------------------
def _one_by_one(agg: Aggregator, smap: ShardMap, keys, datas, now: float = 0.0, arrivals=None):
    sealed = []
    for i, (pk, data) in enumerate(zip(keys, datas, strict=True)):
        shard = smap.route(pk)
        arrival = None if arrivals is None else arrivals[i]
        out = agg.add(shard.shard_id, smap.start_keys[shard.shard_id], pk, data, None, i, now, arrival)
        if out is not None:
            sealed.append(out)
    return sealed


def _same_as_one_by_one(shards, keys, datas, max_bytes=MIB, max_count=4_294_967_295, arrivals=None):
    """Run both paths on fresh aggregators; compare everything they hand back and keep open."""
    one, many = Aggregator(max_bytes, max_count), Aggregator(max_bytes, max_count)
    expect = _one_by_one(one, ShardMap(shards), keys, datas, 0.5, arrivals)
    smap = ShardMap(shards)
    got = many.add_many(
        smap.route_many(keys), smap.start_keys, keys, datas, 0.5, list(range(len(keys))), arrivals
    )
    assert got == expect
    assert list(many.open) == list(one.open)  # same shards open, in the same order
    assert many.buffered() == one.buffered()
    # route_and_add: the same, routed and added a block of records at a time.
    blocks = Aggregator(max_bytes, max_count)
    handles = list(range(len(keys)))
    assert blocks.route_and_add(ShardMap(shards), keys, datas, 0.5, handles, arrivals) == expect
    rest_one, rest_many = one.seal_all(), many.seal_all()
    assert rest_many == rest_one
    assert blocks.seal_all() == rest_one
    for kr in got + rest_many:
        assert kr.size == _size(kr) <= max(max_bytes, _size(kr) if len(kr.records) == 1 else 0)
    return got + rest_many


def test_add_many_equals_add_for_random_inputs():
    rng = random.Random(11)
    for case in range(40):
        shards = even_shards(rng.choice([1, 2, 3, 4, 7]))
        n = rng.choice([1, 2, 50, 2000, 9000])
        pool = [f"key-{rng.getrandbits(64):x}" for _ in range(rng.choice([1, 3, 16, 500, 20_000]))]
        if case % 4 == 1:  # keys of one length, as UUIDs are
            pool = [f"{rng.getrandbits(128):032x}" for _ in range(len(pool))]
        elif case % 4 == 2:
            pool = [f"{rng.getrandbits(64):x}" * 8 for _ in range(len(pool))]  # 128 bytes or so
        else:
            pool += ["ключ-ü", "🚀" * 64, "é" * 256, "x" * 127, "y" * 128]
        lengths = rng.choice([[0], [1], [100], [100, 101], [1000], [0, 5, 127, 128, 16_000], [60_000]])
        if max(lengths) > 1000:
            n = min(n, 300)
        keys = [rng.choice(pool) for _ in range(n)]
        datas = [rng.randbytes(rng.choice(lengths)) for _ in range(n)]
        max_bytes = rng.choice([MIB, 64 * 1024, 5000, 300])
        max_count = rng.choice([4_294_967_295, 10, 1])
        arrivals = [rng.random() for _ in range(n)] if case % 3 == 0 else None
        _same_as_one_by_one(shards, keys, datas, max_bytes, max_count, arrivals)


def test_add_many_at_the_size_limit_edges():
    """Aggregates that end exactly at the limit, one byte under it, and records of the limit."""
    keys = [f"k{i:04d}" for i in range(3000)]
    one = Aggregator(MIB)
    _one_by_one(one, ShardMap(even_shards(1)), keys[:1], [b"v" * 100])
    # The first record's full cost in an empty aggregate: framing + its key as the aggregate's.
    first = one.open[even_shards(1)[0].shard_id].size
    for extra in (-1, 0, 1):
        # Two records: the second fits exactly when max_bytes is first + its own cost.
        second_cost = len(kpl.key_entry(keys[1].encode())) + len(kpl.record_header(1, None, 100)) + 100
        sealed = _same_as_one_by_one(even_shards(1), keys[:3], [b"v" * 100] * 3, first + second_cost + extra)
        assert [len(kr.records) for kr in sealed] == ([1, 1, 1] if extra < 0 else [2, 1])
        assert all(kr.size <= first + second_cost + extra for kr in sealed if len(kr.records) > 1)
    big = b"z" * (MIB - 3)
    sealed = _same_as_one_by_one(even_shards(1), ["k1", "big", "k2", "k3"], [b"s", big, b"a", b"b"], MIB)
    assert [len(kr.records) for kr in sealed] == [1, 1, 2]
    assert sealed[1].data == big and sealed[1].size == MIB
    sealed = _same_as_one_by_one(even_shards(2), keys, [b"d" * 333] * len(keys), 64 * 1024)
    assert all(kr.size > 64 * 1024 - 400 for kr in sealed[:-2])


def test_add_many_repeated_and_new_keys_across_a_cut():
    """Keys new to an aggregate and first used after the cut go to the next aggregate's table."""
    keys = (["a", "b"] * 40 + [f"new-{i}" for i in range(40)] + ["a", "new-3"] * 30) * 5
    for max_bytes in (200, 333, 1000, 4096):
        sealed = _same_as_one_by_one(even_shards(1), keys, [bytes(7)] * len(keys), max_bytes)
        for kr in sealed:
            if len(kr.records) > 1:
                subs = kpl.decode(kr.data)
                assert [s.partition_key for s in subs] == [keys[i] for i in kr.records]


def test_add_many_output_reads_back_with_aws_kinesis_agg():
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    rng = random.Random(5)
    keys = [rng.choice(["ключ", "🚀", "a" * 256, f"c{rng.randrange(100)}"]) for _ in range(3000)]
    datas = [rng.randbytes(rng.randrange(300)) for _ in keys]
    smap = ShardMap(even_shards(3))
    agg = Aggregator(max_bytes=64 * 1024)
    sealed = agg.add_many(smap.route_many(keys), smap.start_keys, keys, datas, 0.0, list(range(len(keys))))
    sealed += agg.seal_all()
    seen = []
    for kr in sealed:
        kinesis = {
            "kinesisSchemaVersion": "1.0",
            "sequenceNumber": "1",
            "approximateArrivalTimestamp": 0.0,
            "partitionKey": kr.partition_key,
            "data": base64.b64encode(kr.data),
        }
        subs = list(iter_deaggregate_records([{"kinesis": kinesis}]))
        assert [s["kinesis"]["partitionKey"] for s in subs] == [keys[i] for i in kr.records]
        assert [base64.b64decode(s["kinesis"]["data"]) for s in subs] == [datas[i] for i in kr.records]
        assert all(smap.route(keys[i]).shard_id == kr.shard_id for i in kr.records)
        seen.extend(kr.records)
    assert sorted(seen) == list(range(len(keys)))


def test_add_many_without_handles_and_onto_open_aggregates():
    smap = ShardMap(even_shards(2))
    keys = [f"k{i % 37}" for i in range(500)]
    datas = [b"x" * (i % 50) for i in range(500)]
    one, many = Aggregator(4096), Aggregator(4096)
    first = _one_by_one(one, smap, keys[:100], datas[:100])
    first += _one_by_one(one, smap, keys[100:], datas[100:])
    got = many.add_many(smap.route_many(keys[:100]), smap.start_keys, keys[:100], datas[:100], 0.0)
    got += many.add_many(smap.route_many(keys[100:]), smap.start_keys, keys[100:], datas[100:], 0.0)
    assert [kr.data for kr in got] == [kr.data for kr in first]
    assert [len(kr.records) for kr in got] == [len(kr.records) for kr in first]
    assert all(h is None for kr in got for h in kr.records)
    assert [kr.data for kr in many.seal_all()] == [kr.data for kr in one.seal_all()]


def test_add_many_ignores_empty_groups_and_sends_a_lone_record_as_itself():
    smap = ShardMap(even_shards(2))
    agg = Aggregator()
    groups = [(smap.shards[0], []), *smap.route_many(["solo"])]
    assert agg.add_many(groups, smap.start_keys, ["solo"], [b"payload"], 0.0) == []
    (kr,) = agg.seal_all()
    assert (kr.partition_key, kr.explicit_hash_key, kr.data) == ("solo", None, b"payload")
    assert kr.shard_id == smap.route("solo").shard_id


# -- the fast paths of add_many: key table entries joined as text, one-copy assembly --------------
# Keys of one length in characters, ASCII or not: the text join is exact only when every
# character is one byte, and must step aside otherwise.
def _same_length_keys(max_length: int, max_keys: int) -> st.SearchStrategy[list[str]]:
    return st.integers(1, max_length).flatmap(
        lambda n: st.lists(
            st.one_of(
                st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=n, max_size=n),
                st.text(min_size=n, max_size=n),
            ),
            min_size=1,
            max_size=max_keys,
        )
    )


@settings(max_examples=200, deadline=None)
@given(st.one_of(_same_length_keys(140, 30), st.lists(st.text(min_size=1, max_size=300), max_size=30)))
def test_key_entries_are_the_codec_key_entries_joined(keys):
    entries, entry_len = _key_entries(keys)
    expect = [kpl.key_entry(k.encode("utf-8")) for k in keys]
    assert entries == b"".join(expect)
    if entry_len:
        assert all(len(e) == entry_len for e in expect)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.binary(max_size=50), max_size=5),
    st.lists(st.binary(max_size=50), max_size=5),
    st.lists(st.binary(max_size=200), max_size=700),
)
def test_assemble_is_the_codec_assemble(pk_entries, ehk_entries, parts):
    """Few pieces (hashed one by one, joined once) or many (the codec's way): the same bytes."""
    assert _assemble(pk_entries, ehk_entries, parts) == kpl.assemble(pk_entries, ehk_entries, parts)


@settings(max_examples=60, deadline=None)
@given(
    _same_length_keys(40, 12),
    st.integers(1, 4),
    st.integers(0, 300),
    st.sampled_from([MIB, 4096, 700]),
    st.integers(0, 2**32),
)
def test_add_many_equals_add_for_keys_of_one_length(pool, shard_count, n, max_bytes, seed):
    """UUID-like keys take the joined-text path for their table entries: byte for byte what
    ``add`` makes, with keys repeated, new, cut across aggregates, ASCII or not."""
    rng = random.Random(seed)
    keys = [rng.choice(pool) for _ in range(n)]
    datas = [rng.randbytes(rng.choice([0, 100, 300])) for _ in range(n)]
    _same_as_one_by_one(even_shards(shard_count), keys, datas, max_bytes)
