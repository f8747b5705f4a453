"""Per-shard token buckets: 1 MiB/s and 1,000 records/s per shard by default.

https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html: "Each shard can
support writes up to 1,000 records per second, up to a maximum data write total of 1 MiB per second."
"""

from __future__ import annotations

from dataclasses import dataclass

from producers.limiter import Limiter, TokenBucket

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Rec:
    shard_id: str
    size: int
    n: int = 0


def test_bytes_bucket_holds_a_second_then_refills_at_the_rate():
    lim: Limiter[Rec] = Limiter(MIB, 1000, MIB)
    for i in range(30):
        lim.add(Rec("s", 100 * 1024, i), 0.0)
    out, wait = lim.release(0.0)
    assert len(out) == 10  # 1 MiB of burst
    assert wait is not None and 0 < wait <= 0.1
    out, _ = lim.release(0.5)
    assert len(out) == 5  # half a second earns half a MiB
    out, _ = lim.release(10.0)
    assert [r.n for r in out] == list(range(15, 25))  # in order, capped by the burst


def test_records_bucket_caps_small_records_at_1000_per_second():
    lim: Limiter[Rec] = Limiter(MIB, 1000, MIB)
    for _ in range(2500):
        lim.add(Rec("s", 10), 0.0)
    assert len(lim.release(0.0)[0]) == 1000
    assert len(lim.release(0.25)[0]) == 250
    assert lim.waiting == 1250


def test_shards_are_independent():
    lim: Limiter[Rec] = Limiter(MIB, 1000, MIB)
    for shard in ("a", "b"):
        for _ in range(2):
            lim.add(Rec(shard, MIB), 0.0)
    out, _ = lim.release(0.0)
    assert sorted(r.shard_id for r in out) == ["a", "b"]
    assert sorted(lim.backlogged()) == ["a", "b"]


def test_record_larger_than_the_bucket_waits_for_a_full_bucket_and_is_not_stuck():
    lim: Limiter[Rec] = Limiter(1000, 1000, 500)
    lim.add(Rec("s", 100), 0.0)
    lim.add(Rec("s", 5000), 0.0)
    assert [r.size for r in lim.release(0.0)[0]] == [100]  # the big one waits for a full bucket
    assert len(lim.release(0.1)[0]) == 1


def test_retry_goes_ahead_of_the_queue():
    lim: Limiter[Rec] = Limiter(MIB, 1000, MIB)
    for i in range(3):
        lim.add(Rec("s", MIB, i), 0.0)
    lim.add_front(Rec("s", MIB, 99), 0.0)
    assert [r.n for r in lim.release(0.0)[0]] == [99]


def test_throttled_record_gets_its_tokens_back():
    """A throttled record did not use the shard's quota; its retry must not pay twice."""
    lim: Limiter[Rec] = Limiter(MIB, 1000, MIB)
    lim.add(Rec("s", MIB), 0.0)
    assert len(lim.release(0.0)[0]) == 1
    lim.add(Rec("s", MIB), 0.0)
    assert lim.release(0.0)[0] == []
    lim.throttled("s", MIB, 0.0)
    assert len(lim.release(0.0)[0]) == 1


def test_remove_shards_returns_what_waited():
    lim: Limiter[Rec] = Limiter(10, 1, 10)
    for i in range(3):
        lim.add(Rec("gone", 10, i), 0.0)
    lim.release(0.0)
    assert [r.n for r in lim.remove_shards(["gone"])] == [1, 2]
    assert lim.waiting == 0


def test_token_bucket_never_exceeds_capacity():
    b = TokenBucket(rate=100, capacity=50, now=0.0)
    b.take(50)
    b.refill(100.0)
    assert b.tokens == 50
