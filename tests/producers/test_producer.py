"""KinesisProducer with the network call replaced by a plain function (``FakeKinesis.put_records``).

PutRecords semantics from https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html:
partial failures come back per entry (``ErrorCode``), a request holds at most 500 entries and
5 MiB, and a record's size is its data plus its partition key.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from pipeline.codecs.avro import SchemaRegistry
from pipeline.errors import InvalidInput
from producers.errors import BackpressureTimeout, ProducerClosed, PutFailed, RecordExpired
from producers.producer import KinesisProducer
from producers.shard_map import ShardRange, hash_key
from tests.producers.fakes import MAX, FakeKinesis, even_shards

MIB = 1024 * 1024


def producer(fake: FakeKinesis, **options) -> KinesisProducer:
    return KinesisProducer("s", put_records=fake.put_records, list_shards=fake.list_shards, **options)


def check_results(fake: FakeKinesis, futures, records) -> None:
    """Every future names the position of exactly its own record in what the fake stored."""
    stored = {(shard, seq, sub): rec for shard, seq, sub, rec in fake.user_records()}
    positions = []
    for fut, (data, pk) in zip(futures, records, strict=True):
        r = fut.result(timeout=30)
        rec = stored[(r.shard_id, r.sequence_number, r.sub_sequence)]
        assert (rec.data, rec.partition_key) == (data, pk)
        positions.append((r.shard_id, r.sequence_number, r.sub_sequence))
    assert len(set(positions)) == len(positions)


def test_every_future_resolves_to_its_records_position():
    fake = FakeKinesis(even_shards(4))
    records = [(f"event-{i}".encode() * (i % 7), f"customer-{i % 97}") for i in range(5000)]
    with producer(fake) as p:
        futures = [p.put(data, pk) for data, pk in records]
        assert p.flush()
    check_results(fake, futures, records)
    assert p.stats["user_records"] == p.stats["stored"] == 5000
    assert p.stats["kinesis_records"] < 5000 / 10  # aggregated
    for s in fake.stored:  # each record went to the shard that owns its explicit hash key
        assert s.explicit_hash_key is None or int(s.explicit_hash_key) in fake.shard_of(
            int(s.explicit_hash_key)
        )


def test_sub_records_land_on_the_shard_their_key_hashes_to():
    """KCL readers drop sub-records outside the shard's hash range, so this is what 'not lost' means."""
    fake = FakeKinesis(even_shards(8))
    with producer(fake) as p:
        for i in range(3000):
            p.put(b"x" * 30, f"k{i}")
    by_id = {s.shard_id: s for s in fake.shards}
    for shard_id, _, _, rec in fake.user_records():
        h = int(rec.explicit_hash_key) if rec.explicit_hash_key else hash_key(rec.partition_key)
        assert h in by_id[shard_id]
    assert len(fake.user_records()) == 3000


def test_requests_stay_within_500_entries_and_5_mib():
    fake = FakeKinesis(even_shards(2))
    with producer(fake, aggregation_enabled=False, max_buffered_bytes=64 * MIB, rate_limit=1000) as p:
        for i in range(1800):
            p.put(b"a" * 3000, f"k{i}")
        big = [p.put(b"b" * (MIB - 10), f"big{i}") for i in range(7)]
    assert max(len(c) for c in fake.calls) <= 500
    assert max(sum(len(e["Data"]) + len(e["PartitionKey"]) for e in c) for c in fake.calls) <= 5 * MIB
    assert all(f.result().sub_sequence == 0 for f in big)


def test_throttled_entries_are_retried_until_stored():
    def answer(entry, call):
        return "ProvisionedThroughputExceededException" if call < 3 else None

    fake = FakeKinesis(even_shards(2), answer=answer)
    records = [(b"v%d" % i, f"k{i}") for i in range(200)]
    with producer(fake, retry_base_delay=0.001, retry_max_delay=0.01) as p:
        futures = [p.put(d, k) for d, k in records]
    check_results(fake, futures, records)
    assert all(f.result().attempts >= 2 for f in futures)
    assert p.stats["throttles"] >= 1 and p.stats["retries"] >= 1 and p.stats["failed"] == 0


def test_failed_calls_are_retried():
    fake = FakeKinesis(
        even_shards(1), raise_on_call=lambda call: ConnectionError("reset") if call < 2 else None
    )
    with producer(fake, retry_base_delay=0.001, retry_max_delay=0.01) as p:
        fut = p.put(b"payload", "k")
    assert fut.result().attempts == 3
    assert p.stats["requests"] == 3


def test_refused_records_fail_alone_with_the_reason():
    def answer(entry, call):
        return "KMSAccessDeniedException" if entry["PartitionKey"] == "bad" else None

    fake = FakeKinesis(even_shards(1), answer=answer)
    with producer(fake, aggregation_enabled=False) as p:
        bad = p.put(b"1", "bad")
        good = p.put(b"2", "good")
    with pytest.raises(PutFailed, match="KMSAccessDeniedException"):
        bad.result()
    assert good.result().shard_id == "shardId-000000000000"
    assert p.stats["failed"] == 1 and p.stats["stored"] == 1
    assert p.first_error is not None and "KMSAccessDeniedException" in p.first_error


def test_records_past_their_ttl_fail_with_a_clear_error():
    fake = FakeKinesis(even_shards(1), answer=lambda entry, call: "InternalFailure")
    with producer(fake, record_ttl=0.2, retry_base_delay=0.01, retry_max_delay=0.02) as p:
        futures = [p.put(b"x", f"k{i}") for i in range(20)]
    for f in futures:
        with pytest.raises(RecordExpired, match="record_ttl"):
            f.result()
    assert p.stats["expired"] == 20 and p.outstanding() == 0


def stuck_producer(shards: int) -> tuple[KinesisProducer, threading.Event]:
    """A producer with a 1 MiB buffer whose PutRecords calls hang until the event is set."""
    release = threading.Event()
    fake = FakeKinesis(even_shards(shards))

    def stuck(records):
        release.wait()
        return fake.put_records(records)

    p = KinesisProducer(
        "s",
        put_records=stuck,
        list_shards=fake.list_shards,
        max_buffered_bytes=MIB,
        put_timeout=0.2,
        record_max_buffered_time=0.0,
    )
    return p, release


def test_put_blocks_when_the_buffer_is_full_then_times_out():
    p, release = stuck_producer(1)
    first = [p.put(b"x" * 1000, f"k{i}") for i in range(1000)]  # ~1 MiB: the buffer is full
    with pytest.raises(BackpressureTimeout, match="max_buffered_bytes"):
        for i in range(100):
            p.put(b"y" * 1000, f"late{i}")
    release.set()
    p.close()
    assert all(f.result().shard_id for f in first)
    assert p.stats["user_bytes"] <= MIB + 2000


def test_put_many_blocks_when_the_buffer_is_full_then_times_out():
    """put_many is bounded by the same buffer: its blocks wait for room like single puts."""
    p, release = stuck_producer(2)
    # Blocks of about half a MiB: two fit in the 1 MiB buffer, the third waits and times out.
    with pytest.raises(BackpressureTimeout, match="max_buffered_bytes") as info:
        p.put_many([(b"x" * 1000, f"k{i}") for i in range(1500)])
    first = info.value.queued  # type: ignore[attr-defined]
    assert 1000 < len(first) < 1500
    with pytest.raises(BackpressureTimeout, match="max_buffered_bytes") as info:
        p.put_many([(b"y" * 1000, f"late{i}") for i in range(100)])
    assert info.value.queued == []  # type: ignore[attr-defined]
    release.set()
    p.close()
    assert all(f.result().shard_id for f in first)
    assert p.stats["user_records"] == len(first) and p.stats["user_bytes"] <= MIB


def test_bad_input_is_refused_at_once_and_alone():
    fake = FakeKinesis(even_shards(1))
    with producer(fake) as p:
        ok = p.put(b"fine", "k")
        with pytest.raises(InvalidInput, match="bytes"):
            p.put("text", "k")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="1 to 256"):
            p.put(b"x", "")
        with pytest.raises(InvalidInput, match="1 to 256"):
            p.put(b"x", "k" * 257)
        with pytest.raises(InvalidInput, match="record limit"):
            p.put(b"x" * MIB, "k")
        for bad in ("-1", "01", str(2**128), "12a"):
            with pytest.raises(InvalidInput, match="explicit hash key"):
                p.put(b"x", "k", bad)
        p.put(bytearray(b"ok too"), "k", str(2**128 - 1))
    assert ok.result().sub_sequence == 0
    assert p.stats["user_records"] == 2


def test_partition_key_limit_counts_characters_and_size_counts_utf8_bytes():
    """Partition keys are up to 256 Unicode characters; the record limit counts the key's bytes."""
    fake = FakeKinesis(even_shards(1))
    with producer(fake) as p:
        key = "ü" * 256  # 256 characters, 512 bytes
        p.put(b"x", key).result()
        with pytest.raises(InvalidInput, match="record limit"):
            p.put(b"x" * (MIB - 511), key)


def test_put_event_encodes_valid_events_and_names_what_is_wrong():
    fake = FakeKinesis(even_shards(2))
    reg = SchemaRegistry.load()
    event = reg.example()
    with producer(fake) as p:
        fut = p.put_event(event)
        with pytest.raises(InvalidInput, match="amount_cents"):
            p.put_event(dict(event, amount_cents="12"))
        with pytest.raises(InvalidInput, match="amount_cents is <12.7>"):
            p.put_event(dict(event, amount_cents=12.7))  # Avro would silently write 12
        with pytest.raises(InvalidInput, match="must be a mapping"):
            p.put_event([event])  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="'order_id' is missing"):
            p.put_event({k: v for k, v in event.items() if k != "order_id"})
    ((shard, seq, sub, rec),) = fake.user_records()
    assert rec.partition_key == event["customer_id"]
    decoded = reg.decode(rec.data)
    assert (str(decoded["event_id"]), decoded["order_id"]) == (event["event_id"], event["order_id"])
    assert fut.result().sequence_number == seq


def test_put_after_close_raises():
    fake = FakeKinesis(even_shards(1))
    p = producer(fake)
    p.close()
    with pytest.raises(ProducerClosed):
        p.put(b"x", "k")
    p.close()  # twice is fine


def test_many_threads_put_at_once():
    fake = FakeKinesis(even_shards(3))
    futures: list = []
    lock = threading.Lock()

    def work(t: int) -> None:
        mine = [
            (p.put(b"%d-%d" % (t, i), f"k{i % 13}"), (b"%d-%d" % (t, i), f"k{i % 13}")) for i in range(800)
        ]
        with lock:
            futures.extend(mine)

    with producer(fake) as p:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    check_results(fake, [f for f, _ in futures], [r for _, r in futures])
    assert Counter(rec.data for _, _, _, rec in fake.user_records()).most_common(1)[0][1] == 1


def stale_map_producer() -> tuple[KinesisProducer, FakeKinesis, dict[str, ShardRange]]:
    """A producer whose first shard map (one shard) is stale: the stream was split in two, which
    it learns only when aggregates land on a child shard. Also the fake and the children by id."""
    half = MAX // 2
    children = [ShardRange("shardId-1", 0, half - 1), ShardRange("shardId-2", half, MAX - 1)]
    fake = FakeKinesis(children)
    maps = [[ShardRange("shardId-0", 0, MAX - 1)]]  # what ListShards said before the split

    def list_shards():
        return maps.pop() if maps else children

    p = KinesisProducer(
        "s", put_records=fake.put_records, list_shards=list_shards, shard_map_refresh_interval=3600
    )
    return p, fake, {s.shard_id: s for s in children}


def test_stale_shard_map_is_refreshed_and_misplaced_sub_records_sent_again():
    """After a split the producer's map is stale: aggregates land on a child shard that does not
    own all their sub-records. KCL readers would drop those, so they are put again."""
    records = [(b"e%d" % i, f"k{i}") for i in range(400)]
    p, fake, by_id = stale_map_producer()
    with p:
        futures = [p.put(d, k) for d, k in records]
    for fut, (_, pk) in zip(futures, records, strict=True):
        assert hash_key(pk) in by_id[fut.result().shard_id]
    assert p.stats["mispredicted"] >= 1 and p.stats["shard_map_refreshes"] >= 1
    check_results(fake, futures, records)


def test_records_put_without_results_are_retried_stored_and_counted():
    """``results=False``: no futures; the records are retried like any (their attempts counted on
    futures made at the first retry) and the statistics and last positions tell the outcome."""

    def answer(entry, call):
        return "ProvisionedThroughputExceededException" if call < 3 else None

    fake = FakeKinesis(even_shards(2), answer=answer)
    records = [(b"v%d" % i, f"k{i}") for i in range(300)]
    with producer(fake, retry_base_delay=0.001, retry_max_delay=0.01) as p:
        assert p.put_many(records, results=False) == []
        assert p.put_events([], results=False) == []
    stored = fake.user_records()
    assert sorted((r.data, r.partition_key) for *_, r in stored) == sorted(records)
    assert p.stats["stored"] == 300 and p.stats["failed"] == 0 and p.stats["retries"] >= 1
    last: dict[str, tuple[int, int]] = {}
    for shard, seq, sub, _ in stored:
        last[shard] = max(last.get(shard, (0, 0)), (int(seq), sub))
    assert p.last_positions() == last and p.outstanding() == 0


def test_records_put_without_results_expire_with_the_attempts_they_took():
    fake = FakeKinesis(even_shards(1), answer=lambda entry, call: "InternalFailure")
    with producer(fake, record_ttl=0.2, retry_base_delay=0.01, retry_max_delay=0.02) as p:
        p.put_many([(b"x", f"k{i}") for i in range(20)], results=False)
    assert p.stats["expired"] == 20 and p.stats["failed"] == 20 and p.outstanding() == 0
    assert p.first_error is not None and "record_ttl" in p.first_error
    attempts = int(p.first_error.split("(")[1].split(" failed attempts")[0])
    assert attempts >= 1


def test_records_put_without_results_follow_a_split_shard():
    records = [(b"e%d" % i, f"k{i}") for i in range(400)]
    p, fake, by_id = stale_map_producer()
    with p:
        p.put_many(records, results=False)
    owned = {
        (r.data, r.partition_key)
        for shard, _, _, r in fake.user_records()
        if hash_key(r.partition_key) in by_id[shard]
    }
    assert owned == set(records)
    assert p.stats["mispredicted"] >= 1 and p.stats["stored"] == 400 and p.stats["failed"] == 0


def test_done_callbacks_run_and_may_put_again():
    fake = FakeKinesis(even_shards(1))
    seen = []
    with producer(fake) as p:
        fut = p.put(b"first", "k")
        fut.add_done_callback(lambda f: seen.append(p.put(b"second", "k")))
        p.flush()
        p.flush()
    assert seen and seen[0].result().sub_sequence == 0


def test_a_future_settled_with_its_position_gives_the_same_result_each_time():
    from producers.records import PutResult, RecordFuture, settle

    fut = RecordFuture()
    settle([fut], [("shardId-000000000001", "4959", 3, 2)])
    assert fut.done() and fut.exception() is None
    assert fut.result() == PutResult("shardId-000000000001", "4959", 3, 2)
    assert fut.result() is fut.result()


def test_stored_records_settle_in_one_pass_with_their_positions_waiters_and_callbacks():
    import threading

    from producers.records import (
        KinesisRecord,
        PutResult,
        RecordFuture,
        new_user_record,
        settle,
        settle_stored,
    )

    futures = [RecordFuture() for _ in range(5)]
    futures[1].attempts = 2  # two failed attempts before the one that stored it
    settle([futures[4]], [RuntimeError("settled before")])
    called = []
    futures[2].add_done_callback(called.append)
    got = []
    waiter = threading.Thread(target=lambda: got.append(futures[3].result(timeout=5)))
    waiter.start()
    recs = [new_user_record("k", b"x" * i, None, i + 1, 10.0 + i, f) for i, f in enumerate(futures)]

    def kr(part: list) -> KinesisRecord:
        return KinesisRecord("s", "k", None, b"", 0, tuple(part), 0.0, min(r.arrival for r in part))

    count, size, arrivals = settle_stored([(kr(recs[:2]), "shard-a", "7"), (kr(recs[2:]), "shard-b", "9")])
    waiter.join(5)
    assert (count, size, arrivals) == (5, 1 + 2 + 3 + 4 + 5, 10.0 + 11 + 12 + 13 + 14)
    assert [f.result() for f in futures[:4]] == [
        PutResult("shard-a", "7", 0, 1),
        PutResult("shard-a", "7", 1, 3),
        PutResult("shard-b", "9", 0, 1),
        PutResult("shard-b", "9", 1, 1),
    ]
    assert called == [futures[2]] and got == [futures[3].result()]
    assert str(futures[4].exception()) == "settled before"  # a settled future is left as it was


def test_buffered_time_statistics_count_every_stored_record():
    fake = FakeKinesis(even_shards(2))
    with producer(fake, record_max_buffered_time=0.05) as p:
        p.put_many([(b"x", f"k-{i}") for i in range(1000)])
        assert p.flush()
        stats = dict(p.stats)
    assert stats["stored"] == 1000
    # The mean is the sum of the records' waits over the count; the sum is taken as count x the
    # call's start - the arrivals' sum, which may round a hair above the longest wait.
    assert 0 < stats["buffered_ms"] / 1000 <= stats["buffered_ms_max"] + 1e-6
    assert stats["buffered_ms_max"] < 5_000


def test_last_positions_name_each_shards_last_stored_record_as_numbers_order_them():
    """The fake's sequence numbers grow from 2 to 4 digits: "100" follows "99" though it sorts first
    as text."""
    fake = FakeKinesis(even_shards(4), sequence=lambda n: str(95 + 3 * n))
    records = [(b"x" * (i % 300), f"k-{i}") for i in range(20_000)]
    with producer(fake, record_max_buffered_time=0.01) as p:
        futures = p.put_many(records)
        assert p.flush()
    expected: dict[str, tuple[int, int]] = {}
    for f in futures:
        r = f.result()
        pos = (int(r.sequence_number), r.sub_sequence)
        expected[r.shard_id] = max(expected.get(r.shard_id, pos), pos)
    assert len(expected) == 4
    assert p.last_positions() == expected
    assert max(len(s.sequence_number) for s in fake.stored) > min(len(s.sequence_number) for s in fake.stored)
    assert p.first_error is None
