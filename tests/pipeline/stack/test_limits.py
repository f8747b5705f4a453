"""Kinesis limits of the embedded stack, driven through boto3 against the real server process.

Each test cites the AWS documentation sentence it proves. The token buckets hold one second of
quota, so a single call that asks for several seconds' worth is refused deterministically.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import StackProcess

MAX_HASH_KEY = 2**128 - 1


def kinesis(endpoint_url: str) -> Any:
    """A client that reports throttling instead of retrying it away."""
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def make_stream(client: Any, name: str, shards: int = 2) -> list[dict[str, Any]]:
    """A stream with ``shards`` shards; returns its shards."""
    client.create_stream(StreamName=name, ShardCount=shards)
    return list(client.list_shards(StreamName=name)["Shards"])


def key_of(shard: dict[str, Any]) -> str:
    """An explicit hash key routing to ``shard``."""
    return str(shard["HashKeyRange"]["StartingHashKey"])


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """One server for the module: quotas are per stream and shard, and each test has its own stream."""
    server = StackProcess(tmp_path_factory.mktemp("limits") / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kin(shared_stack: StackProcess) -> Any:
    return kinesis(shared_stack.endpoint_url)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """This test's own stream (quotas are per stream and shard)."""
    return str(request.node.name)[:120]


def test_put_records_over_a_shards_byte_rate_fails_only_the_excess_entries(kin: Any, name: str) -> None:
    """AWS: "Each shard can support writes up to 1,000 records per second, up to a maximum data write
    total of 1 MiB per second." and "A single record failure does not stop the processing of
    subsequent records." (PutRecords API reference)."""
    shards = make_stream(kin, name)
    hot, cold = key_of(shards[0]), key_of(shards[1])
    # 5 MB to one shard in one call is five seconds of its quota; the other shard is idle.
    entries = [
        {"Data": b"x" * 9_990, "PartitionKey": "k", "ExplicitHashKey": hot if i % 10 else cold}
        for i in range(500)
    ]
    resp = kin.put_records(StreamName=name, Records=entries)
    failed = [i for i, r in enumerate(resp["Records"]) if "ErrorCode" in r]
    assert resp["FailedRecordCount"] == len(failed) > 0
    assert {resp["Records"][i]["ErrorCode"] for i in failed} == {"ProvisionedThroughputExceededException"}
    assert all(i % 10 for i in failed), "entries to the idle shard are never throttled"
    ok = [r for r in resp["Records"] if "SequenceNumber" in r]
    assert {r["ShardId"] for r in ok} == {shards[0]["ShardId"], shards[1]["ShardId"]}
    assert "Rate exceeded for shard" in resp["Records"][failed[0]]["ErrorMessage"]
    # What was accepted is about one second of quota (1 MiB), the burst AWS allows.
    accepted_hot = sum(1 for i, r in enumerate(resp["Records"]) if i % 10 and "SequenceNumber" in r)
    assert 90 <= accepted_hot <= 150


def test_put_records_over_a_shards_record_rate_is_throttled(kin: Any, name: str) -> None:
    """AWS: "Each shard can support writes up to 1,000 records per second" (PutRecords API)."""
    shards = make_stream(kin, name, 1)
    entries = [{"Data": b"x", "PartitionKey": str(i)} for i in range(500)]
    results = [kin.put_records(StreamName=name, Records=entries) for _ in range(6)]
    assert sum(r["FailedRecordCount"] for r in results) > 0
    assert results[0]["FailedRecordCount"] == 0
    assert shards


def test_put_record_over_the_byte_rate_is_refused_whole(kin: Any, name: str) -> None:
    """AWS: "ProvisionedThroughputExceededException: The request rate for the stream is too high, or
    the requested data is too large for the available throughput." (PutRecord API, Errors)."""
    make_stream(kin, name, 1)
    kin.put_record(StreamName=name, Data=b"x" * 1_000_000, PartitionKey="k")
    with pytest.raises(ClientError) as exc:
        kin.put_record(StreamName=name, Data=b"x" * 1_000_000, PartitionKey="k")
    assert error_code(exc) == "ProvisionedThroughputExceededException"


def test_get_records_beyond_five_calls_per_second_is_throttled(kin: Any, name: str) -> None:
    """AWS: "Each shard can support up to five read transactions per second." (Kinesis Data Streams
    quotas and limits)."""
    shards = make_stream(kin, name, 1)
    it = kin.get_shard_iterator(StreamName=name, ShardId=shards[0]["ShardId"], ShardIteratorType="LATEST")
    codes = []
    for _ in range(20):
        try:
            kin.get_records(ShardIterator=it["ShardIterator"])
            codes.append("ok")
        except ClientError as err:
            codes.append(err.response["Error"]["Code"])
    assert codes[:5] == ["ok"] * 5
    assert "ProvisionedThroughputExceededException" in codes


def test_a_large_read_throttles_the_next_reads_of_the_shard(kin: Any, name: str) -> None:
    """AWS: "Each shard can support up to a maximum total data read rate of 2 MiB per second via
    GetRecords. If a call to GetRecords returns 10 MiB, subsequent calls made within the next 5
    seconds throw an exception." (Kinesis Data Streams quotas and limits)."""
    shards = make_stream(kin, name, 1)
    for _ in range(5):  # 4.5 MB, written within the 1 MiB/s write quota
        while True:
            try:
                kin.put_record(StreamName=name, Data=b"x" * 900_000, PartitionKey="k")
                break
            except ClientError as err:
                assert err.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
                time.sleep(0.2)
    it = kin.get_shard_iterator(
        StreamName=name, ShardId=shards[0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )
    resp = kin.get_records(ShardIterator=it["ShardIterator"])
    assert len(resp["Records"]) == 5
    with pytest.raises(ClientError) as exc:
        kin.get_records(ShardIterator=resp["NextShardIterator"])
    assert error_code(exc) == "ProvisionedThroughputExceededException"


def test_more_than_500_entries_are_rejected(kin: Any, name: str) -> None:
    """AWS: "Each PutRecords request can support up to 500 records." (PutRecords API)."""
    make_stream(kin, name, 1)
    with pytest.raises(ClientError) as exc:
        kin.put_records(StreamName=name, Records=[{"Data": b"x", "PartitionKey": "k"}] * 501)
    assert error_code(exc) == "ValidationException"


def test_a_record_over_1_mib_with_its_partition_key_is_rejected(kin: Any, name: str) -> None:
    """AWS: "The record size limit applies to the total size of the partition key and data blob."
    (PutRecords API) with "Each record in the request can be as large as 1 MiB"."""
    make_stream(kin, name, 1)
    data = b"x" * (1024 * 1024 - 1)
    with pytest.raises(ClientError) as exc:
        kin.put_record(StreamName=name, Data=data, PartitionKey="kk")
    assert error_code(exc) == "ValidationException"
    with pytest.raises(ClientError) as exc:
        kin.put_records(StreamName=name, Records=[{"Data": data, "PartitionKey": "kk"}])
    assert error_code(exc) == "ValidationException"
    # Exactly 1 MiB is allowed.
    kin.put_record(StreamName=name, Data=data, PartitionKey="k")


def test_a_request_over_5_mib_is_rejected(kin: Any, name: str) -> None:
    """AWS: "up to a limit of 5 MiB for the entire request, including partition keys." (PutRecords)."""
    make_stream(kin, name, 1)
    entries = [{"Data": b"x" * 1_000_000, "PartitionKey": "k"} for _ in range(6)]
    with pytest.raises(ClientError) as exc:
        kin.put_records(StreamName=name, Records=entries)
    assert error_code(exc) == "InvalidArgumentException"


def test_explicit_hash_keys_are_checked_against_0_to_2_128_minus_1(kin: Any, name: str) -> None:
    """AWS: ExplicitHashKey must match the pattern "0|([1-9]\\d{0,38})" (PutRecord API), the hash
    key space being 0 to 2^128-1; the top key is valid and lands on the last shard."""
    shards = make_stream(kin, name, 2)
    top = kin.put_record(StreamName=name, Data=b"x", PartitionKey="k", ExplicitHashKey=str(MAX_HASH_KEY))
    assert top["ShardId"] == shards[-1]["ShardId"]
    low = kin.put_record(StreamName=name, Data=b"x", PartitionKey="k", ExplicitHashKey="0")
    assert low["ShardId"] == shards[0]["ShardId"]
    edge = kin.put_record(
        StreamName=name,
        Data=b"x",
        PartitionKey="k",
        ExplicitHashKey=shards[0]["HashKeyRange"]["EndingHashKey"],
    )
    assert edge["ShardId"] == shards[0]["ShardId"]
    for bad in (str(2**128), "-1", "01", "abc"):
        with pytest.raises(ClientError) as exc:
            kin.put_record(StreamName=name, Data=b"x", PartitionKey="k", ExplicitHashKey=bad)
        assert error_code(exc) in ("InvalidArgumentException", "ValidationException")


def test_get_records_limit_over_10000_is_rejected(kin: Any, name: str) -> None:
    """AWS: "If you specify a value that is greater than 10,000, GetRecords throws
    InvalidArgumentException." (GetRecords API, Limit)."""
    shards = make_stream(kin, name, 1)
    it = kin.get_shard_iterator(StreamName=name, ShardId=shards[0]["ShardId"], ShardIteratorType="LATEST")
    with pytest.raises(ClientError) as exc:
        kin.get_records(ShardIterator=it["ShardIterator"], Limit=10_001)
    assert error_code(exc) == "InvalidArgumentException"


def test_no_limits_switch_serves_moto_unthrottled(unlimited_stack: str, name: str) -> None:
    """``--no-limits`` turns the throughput quotas off (for raw speed), everything else unchanged."""
    kin = kinesis(unlimited_stack)
    make_stream(kin, name, 1)
    entries = [{"Data": b"x" * 9_990, "PartitionKey": "k"} for _ in range(500)]
    assert kin.put_records(StreamName=name, Records=entries)["FailedRecordCount"] == 0
    assert kin.put_records(StreamName=name, Records=entries)["FailedRecordCount"] == 0
