"""BisectBatchOnFunctionError."""

from __future__ import annotations

from tests.pipeline.esm.conftest import Esm, numbers


def test_a_failing_batch_is_halved_until_the_bad_record_is_alone(esm: Esm) -> None:
    """AWS: "For function errors, you can also configure BisectBatchOnFunctionError, which splits a
    failed batch into two smaller batches, isolating bad records and avoiding timeouts. Splitting
    batches doesn't count towards the retry quota." (kinesis-on-failure-destination)."""
    url, arn = esm.queue("bisect-dlq")
    fn = esm.function("bisect")
    esm.mapping(
        fn,
        BatchSize=8,
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": arn}},
    )
    seqs = esm.put(["", "", "", "", "", "fail", "", ""])
    esm.drain()
    assert numbers(esm.calls(fn)) == [
        [0, 1, 2, 3, 4, 5, 6, 7],
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [4, 5],
        [4],
        [5],
        [6, 7],
    ]
    [msg] = esm.messages(url, 1)
    info = msg["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        seqs[5],
        seqs[5],
        1,
    )


def test_a_partial_failure_is_retried_from_the_reported_record_only(esm: Esm) -> None:
    """AWS: "When a partial batch success response is received and both BisectBatchOnFunctionError
    and ReportBatchItemFailures are turned on, the batch is bisected at the returned sequence number
    and Lambda retries only the remaining records." (services-kinesis-batchfailurereporting)."""
    fn = esm.function("bisect-partial")
    esm.mapping(
        fn, BatchSize=6, BisectBatchOnFunctionError=True, FunctionResponseTypes=["ReportBatchItemFailures"]
    )
    esm.put(["", "", "partial_once", "", "", ""])
    esm.drain()
    assert numbers(esm.calls(fn)) == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5]]
