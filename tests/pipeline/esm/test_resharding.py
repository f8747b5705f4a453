"""Parents before children after resharding."""

from __future__ import annotations

from tests.pipeline.esm.conftest import Esm


def test_a_parent_shard_is_drained_before_its_children_are_read(esm: Esm) -> None:
    """AWS: "Lambda processes records from parent shards before processing records from child
    shards" ... the event source mapping "will not start processing the child shards until the
    parent shard is fully processed" (Kinesis resharding with Lambda). The children are read from
    their start."""
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
