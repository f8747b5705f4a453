"""PutRecords requests: at most 500 entries and 5 MiB, partition keys included
(https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html)."""

from __future__ import annotations

from dataclasses import dataclass

from producers.collector import Collector, batches

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Rec:
    size: int
    deadline: float = 1.0
    n: int = 0


def test_requests_respect_500_entries_and_5_mib():
    c: Collector[Rec] = Collector()
    for i in range(1200):
        c.add(Rec(10, n=i))
    for i in range(12):
        c.add(Rec(MIB, n=1200 + i))
    reqs = c.take(0.0, force=True)
    assert all(len(r) <= 500 and sum(x.size for x in r) <= 5 * MIB for r in reqs)
    assert [x.n for r in reqs for x in r] == list(range(1212))
    assert len(c) == 0


def test_partial_request_waits_for_its_deadline_unless_forced():
    c: Collector[Rec] = Collector()
    c.add(Rec(10, deadline=2.0))
    c.add(Rec(10, deadline=1.5))
    assert c.take(1.0) == []
    assert c.next_deadline() == 1.5
    assert len(c.take(1.5)[0]) == 2


def test_take_honours_the_connection_limit():
    c: Collector[Rec] = Collector(max_entries=2)
    for _ in range(7):
        c.add(Rec(1))
    assert len(c.take(0.0, limit=2)) == 2
    assert c.waiting()
    assert [len(r) for r in c.take(0.0, force=True)] == [2, 1]


def test_batches_splits_pairs_in_order():
    assert list(batches([(3, "a"), (3, "b"), (3, "c")], max_entries=5, max_bytes=6)) == [["a", "b"], ["c"]]
