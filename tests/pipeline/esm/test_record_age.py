"""MaximumRecordAgeInSeconds.

AWS accepts 60 s and more; the local ESM applies whatever the Lambda API holds, so these tests use
seconds instead of minutes.
"""

from __future__ import annotations

import time

from tests.pipeline.esm.conftest import Esm, numbers


def test_records_older_than_the_maximum_age_are_discarded_without_invoking(esm: Esm) -> None:
    """AWS: MaximumRecordAgeInSeconds "Discard records older than the specified age." and the
    SAM/CloudFormation docs: "The maximum age of a record that Lambda sends to a function for
    processing." Records already too old when read are never sent; the destination hears of them
    with the condition RecordAgeExceeded."""
    url, arn = esm.queue("age-dlq")
    fn = esm.function("age")
    esm.mapping(fn, MaximumRecordAgeInSeconds=1, DestinationConfig={"OnFailure": {"Destination": arn}})
    esm.put(count=3)
    time.sleep(1.5)
    esm.drain()
    assert esm.calls(fn) == []
    [msg] = esm.messages(url, 1)
    assert msg["requestContext"]["condition"] == "RecordAgeExceeded"
    assert msg["KinesisBatchInfo"]["batchSize"] == 3


def test_a_failing_batch_is_retried_until_its_records_are_too_old(esm: Esm) -> None:
    """AWS: "If the function is invoked but returns an error, Lambda retries until the records
    expire, exceed the maximum age (MaximumRecordAgeInSeconds), or reach the configured retry
    quota" (kinesis-on-failure-destination)."""
    url, arn = esm.queue("age-retry-dlq")
    fn = esm.function("age-retry")
    esm.mapping(
        fn,
        BatchSize=1,
        MaximumRecordAgeInSeconds=3,
        MaximumRetryAttempts=-1,
        DestinationConfig={"OnFailure": {"Destination": arn}},
    )
    runner = esm.runner()
    assert runner.run_until_drained(timeout=60)  # polling before the record arrives
    esm.put(["fail"])
    assert runner.run_until_drained(timeout=60)
    runner.stop()
    attempts = len(esm.calls(fn))
    assert attempts >= 2 and set(map(tuple, numbers(esm.calls(fn)))) == {(0,)}
    [msg] = esm.messages(url, 1)
    assert msg["requestContext"]["condition"] == "RecordAgeExceeded"
    assert msg["requestContext"]["approximateInvokeCount"] == attempts
    assert runner.stats[runner.mappings[0].uuid].discarded_batches == 1
