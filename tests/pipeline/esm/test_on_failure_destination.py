"""DestinationConfig.OnFailure to SQS."""

from __future__ import annotations

from datetime import datetime

from tests.pipeline.esm.conftest import Esm


def test_a_discarded_batch_is_described_on_the_queue_as_aws_sends_it(esm: Esm) -> None:
    """AWS: "Each record sent to the destination is a JSON document that contains metadata about the
    failed invocation." with the example body of requestContext (requestId, functionArn, condition,
    approximateInvokeCount), responseContext (statusCode, executedVersion, functionError), version,
    timestamp and KinesisBatchInfo (shardId, start/endSequenceNumber, approximateArrivalOfFirst/
    LastRecord, batchSize, streamArn) (kinesis-on-failure-destination)."""
    url, arn = esm.queue("dlq")
    fn = esm.function("dlq-fn")
    esm.mapping(
        fn, BatchSize=3, MaximumRetryAttempts=1, DestinationConfig={"OnFailure": {"Destination": arn}}
    )
    seqs = esm.put(["", "fail", ""])
    esm.drain()
    [msg] = esm.messages(url, 1)
    fn_arn = esm.lam.get_function_configuration(FunctionName=fn)["FunctionArn"]
    assert set(msg) == {"requestContext", "responseContext", "version", "timestamp", "KinesisBatchInfo"}
    assert {k: v for k, v in msg["requestContext"].items() if k != "requestId"} == {
        "functionArn": fn_arn,
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 2,
    }
    assert msg["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    info = msg["KinesisBatchInfo"]
    assert {
        k: info[k] for k in ("shardId", "startSequenceNumber", "endSequenceNumber", "batchSize", "streamArn")
    } == {
        "shardId": "shardId-000000000000",
        "startSequenceNumber": seqs[0],
        "endSequenceNumber": seqs[2],
        "batchSize": 3,
        "streamArn": esm.stream_arn,
    }
    first = datetime.fromisoformat(info["approximateArrivalOfFirstRecord"].replace("Z", "+00:00"))
    last = datetime.fromisoformat(info["approximateArrivalOfLastRecord"].replace("Z", "+00:00"))
    assert first <= last
    assert msg["version"] == "1.0" and msg["timestamp"].endswith("Z")
