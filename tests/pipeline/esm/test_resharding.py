"""Parents before children after resharding."""

from __future__ import annotations

from tests.pipeline.esm.conftest import Esm


def test_a_parent_shard_is_drained_before_its_children_are_read(esm: Esm) -> None:
    """Parents are drained before their children (DESIGN.md §4, as Lambda and the KCL do); a reader
    knows a parent is drained because, AWS: "If the shard has been closed, the shard iterator can't
    return more data and GetRecords returns null in NextShardIterator." (GetRecords API). The
    children are read from their start."""
    fn = esm.function("reshard")
    esm.mapping(fn, BatchSize=2)
    esm.put(count=6, key=lambda n: f"k{n}")
    [parent] = esm.kinesis.list_shards(StreamName=esm.stream)["Shards"]
    esm.kinesis.split_shard(
        StreamName=esm.stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(2**127)
    )
    esm.put(count=6, key=lambda n: f"k{n}")
    esm.drain()
    calls = esm.calls(fn)
    shards = [{r["shard"] for r in c["records"]} for c in calls]
    assert all(len(s) == 1 for s in shards), "a batch mixed shards"
    order = [s.pop() for s in shards]
    first_child = next(i for i, s in enumerate(order) if s != parent["ShardId"])
    assert set(order[:first_child]) == {parent["ShardId"]}
    assert parent["ShardId"] not in order[first_child:]
    assert sorted(r["n"] for c in calls for r in c["records"]) == list(range(12))
    assert len(set(order)) == 3
