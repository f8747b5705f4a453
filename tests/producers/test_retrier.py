"""Reading PutRecords answers. Per-entry errors are ProvisionedThroughputExceededException or
InternalFailure (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecordsResultEntry.html);
both are retried. Back-off is exponential with full jitter."""

from __future__ import annotations

import random

from botocore.exceptions import ClientError, EndpointConnectionError

from producers.records import KinesisRecord
from producers.retrier import Retrier


def _kr(shard: str, n: int = 0) -> KinesisRecord:
    return KinesisRecord(shard, f"pk{n}", None, b"d", 4, (), 1.0, 0.0)


def test_outcome_sorts_entries():
    recs = [_kr("s1", 0), _kr("s1", 1), _kr("s2", 2), _kr("s2", 3), _kr("s1", 4)]
    response = {
        "Records": [
            {"ShardId": "s1", "SequenceNumber": "10"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
            {"ErrorCode": "InternalFailure", "ErrorMessage": "oops"},
            {"ErrorCode": "KMSAccessDeniedException", "ErrorMessage": "no key"},
            {"ShardId": "s9", "SequenceNumber": "11"},
        ]
    }
    out = Retrier().outcome(recs, response)
    assert out.stored == [(recs[0], "s1", "10")]
    assert out.retry == [recs[1], recs[2]]
    assert out.throttled == [recs[1]]
    assert [(r, "KMSAccessDeniedException" in why) for r, why in out.failed] == [(recs[3], True)]
    assert out.moved == [(recs[4], "s9", "11")]


def test_answer_of_the_wrong_length_is_retried_not_trusted():
    recs = [_kr("s1"), _kr("s1", 1)]
    out = Retrier().outcome(recs, {"Records": [{"ShardId": "s1", "SequenceNumber": "1"}]})
    assert out.retry == recs and not out.stored


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "PutRecords")


def test_call_failures_retry_unless_the_request_itself_is_wrong():
    recs = [_kr("s1")]
    r = Retrier()
    assert r.call_failed(recs, EndpointConnectionError(endpoint_url="http://x")).retry == recs
    assert r.call_failed(recs, _client_error("ServiceUnavailable")).retry == recs
    throttled = r.call_failed(recs, _client_error("ProvisionedThroughputExceededException"))
    assert throttled.retry == recs and throttled.throttled == recs
    fatal = r.call_failed(recs, _client_error("ResourceNotFoundException"))
    assert fatal.retry == [] and "ResourceNotFoundException" in fatal.failed[0][1]


def test_backoff_is_jittered_under_an_exponential_ceiling():
    r = Retrier(base_delay=0.1, max_delay=2.0, rng=random.Random(3))
    for attempts, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (6, 2.0), (30, 2.0)]:
        delays = [r.delay(attempts) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the range, not a fixed value
