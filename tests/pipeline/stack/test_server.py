"""The embedded stack's server: moto's Kinesis made safe and AWS-shaped where the pipeline needs it."""

from __future__ import annotations

import threading

import boto3
from botocore.config import Config

from pipeline.stack.server import limits_enabled


def test_concurrent_put_records_to_one_shard_lose_nothing(unlimited_stack: str) -> None:
    """AWS: PutRecords answers a sequence number for each stored record, and "Sequence numbers for
    the same partition key generally increase over time"; every acknowledged record must be
    readable. moto numbers records without a lock, so concurrent writers to one shard used to
    overwrite each other (about 3% of records lost in 8 threads x 1,000 records)."""
    kin = boto3.client(
        "kinesis",
        endpoint_url=unlimited_stack,
        region_name="us-east-1",
        config=Config(max_pool_connections=16),
    )
    kin.create_stream(StreamName="race", ShardCount=1)
    acked: list[str] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        for j in range(10):
            entries = [{"Data": b"d", "PartitionKey": f"{i}-{j}-{n}"} for n in range(50)]
            resp = kin.put_records(StreamName="race", Records=entries)
            with lock:
                acked.extend(r["SequenceNumber"] for r in resp["Records"])

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    it = kin.get_shard_iterator(
        StreamName="race", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )
    stored: list[str] = []
    shard_iterator = it["ShardIterator"]
    while True:
        resp = kin.get_records(ShardIterator=shard_iterator, Limit=10_000)
        stored += [r["SequenceNumber"] for r in resp["Records"]]
        shard_iterator = resp["NextShardIterator"]
        if not resp["Records"]:
            break
    assert len(acked) == len(set(acked)) == 4000, "two records were acknowledged with one sequence number"
    assert sorted(stored, key=int) == sorted(acked, key=int)


def test_a_closed_parent_keeps_its_records_and_ends_its_iterator(unlimited_stack: str) -> None:
    """AWS: "If the shard has been closed, the shard iterator can't return more data and GetRecords
    returns null in NextShardIterator." After SplitShard the parent keeps its records (moto moved
    them into the children) and new records go to the open children only."""
    kin = boto3.client("kinesis", endpoint_url=unlimited_stack, region_name="us-east-1")
    kin.create_stream(StreamName="split", ShardCount=1)
    before = [kin.put_record(StreamName="split", Data=b"x", PartitionKey=f"k{i}") for i in range(4)]
    kin.split_shard(StreamName="split", ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**127))
    after = [kin.put_record(StreamName="split", Data=b"y", PartitionKey=f"k{i}") for i in range(4)]
    assert {r["ShardId"] for r in before} == {"shardId-000000000000"}
    assert {r["ShardId"] for r in after} <= {"shardId-000000000001", "shardId-000000000002"}
    it = kin.get_shard_iterator(
        StreamName="split", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )
    resp = kin.get_records(ShardIterator=it["ShardIterator"])
    assert [r["SequenceNumber"] for r in resp["Records"]] == [r["SequenceNumber"] for r in before]
    assert resp.get("NextShardIterator") is None


def test_limits_are_on_unless_the_environment_switches_them_off() -> None:
    """``PIPELINE_STACK_LIMITS=off`` (as ``--no-limits``) serves moto unthrottled; anything else,
    or nothing, keeps AWS's limits."""
    assert limits_enabled({}) is True
    assert limits_enabled({"PIPELINE_STACK_LIMITS": "on"}) is True
    assert all(
        limits_enabled({"PIPELINE_STACK_LIMITS": v}) is False for v in ("off", "OFF", "0", "false", "no")
    )
