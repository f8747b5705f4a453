"""Failure reporting: the first failing record is the only ``itemIdentifier``, the checkpoint stops
right before it, throttled writes are retried, and an error that leaves nothing known raises.

Semantics from "Configuring partial batch response with Kinesis Data Streams and Lambda"
(https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-batchfailurereporting.html): the
response is ``{"batchItemFailures": [{"itemIdentifier": "<SequenceNumber>"}]}``; Lambda checkpoints
at the lowest reported sequence number and retries every record from there, so reporting records
after the first failure would re-deliver records that succeeded.
"""

from __future__ import annotations

from typing import Any

import pytest

from consumers.core.event_ids import EventIdStore
from consumers.state_writer.model import expected_state
from pipeline.codecs.positions import encode_position
from pipeline.events import generate
from pipeline.settings import Settings
from tests.consumers.helpers import (
    Crash,
    CrashAfterPut,
    Proxy,
    Throttling,
    aggregate,
    build_processor,
    checkpoint,
    client,
    lake_event_ids,
    lambda_event,
    put_records,
    shard_id,
    state,
)


class FailKey(Proxy):
    """A DynamoDB client whose updates of one customer fail (a hot or broken partition)."""

    def __init__(self, real: Any, customer: str) -> None:
        super().__init__(real)
        self.customer = customer
        self.broken = True

    def update_item(self, **kwargs: Any) -> Any:
        if self.broken and kwargs["Key"]["customer_id"]["S"] == self.customer:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "UpdateItem")
        return self._real.update_item(**kwargs)


def _stream(env: Settings, n: int = 24) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    events = list(generate(n, customers=4, seed=9))
    records = put_records(
        env, [(events[i]["customer_id"], aggregate(events[i : i + 3])) for i in range(0, n, 3)]
    )
    return events, records, shard_id(env)


def test_only_the_first_failing_record_is_reported_and_the_checkpoint_stops_before_it(
    env: Settings, names: tuple[str, str]
) -> None:
    events, records, shard = _stream(env)
    firsts: dict[str, int] = {}
    for i, e in enumerate(events):
        firsts.setdefault(e["customer_id"], i)
    # The customer seen last for the first time: records before its first event all land.
    victim, first_index = max(firsts.items(), key=lambda kv: kv[1])
    assert first_index >= 3  # past the first Kinesis record
    ddb = FailKey(client("dynamodb", env), victim)
    consumer = names[1]
    processor = build_processor(env, consumer, dynamodb=ddb)
    event = lambda_event(env, records, shard)

    resp = processor.process(event)

    failed_record = records[first_index // 3]
    assert resp == {"batchItemFailures": [{"itemIdentifier": failed_record["SequenceNumber"]}]}
    cp = checkpoint(env, consumer, shard)
    if first_index % 3:
        assert cp.position == encode_position(failed_record["SequenceNumber"], first_index % 3 - 1)
    else:
        assert cp.position == encode_position(records[first_index // 3 - 1]["SequenceNumber"], 2)
    assert victim not in state(env)
    # The ESM resumes from the reported record; the others' updates made meanwhile are not repeated.
    ddb.broken = False
    assert processor.process(lambda_event(env, records[first_index // 3 :], shard)) == {
        "batchItemFailures": []
    }
    assert state(env) == expected_state(events)


@pytest.mark.parametrize("mode", ["update", "transact"])
def test_throttled_state_writes_and_unprocessed_event_ids_are_retried(
    env: Settings, names: tuple[str, str], mode: str
) -> None:
    events, records, shard = _stream(env, 60)
    consumer = names[1]
    ddb = Throttling(client("dynamodb", env))
    processor = build_processor(env, consumer, dynamodb=ddb, state_mode=mode)
    processor.event_ids = EventIdStore(ddb, env.event_id_table, consumer, env.event_id_ttl_seconds)
    assert processor.process(lambda_event(env, records, shard)) == {"batchItemFailures": []}
    assert state(env) == expected_state(events)
    assert ddb.calls["batch_write_item"] >= 2, "the store did not retry its unprocessed items"
    assert ddb.calls["update_item" if mode == "update" else "transact_write_items"] >= 2


def test_an_error_that_leaves_nothing_known_raises_so_the_esm_retries_or_bisects(
    env: Settings, names: tuple[str, str]
) -> None:
    events, records, shard = _stream(env)
    lake = names[0]
    broken = build_processor(env, lake, s3=CrashAfterPut(client("s3", env), 1))
    with pytest.raises(Crash):
        broken.process(lambda_event(env, records, shard))
    assert checkpoint(env, lake, shard).position is None
    assert checkpoint(env, lake, shard).intent is not None


def test_an_outage_of_the_lake_never_stalls_the_state_writer(env: Settings, names: tuple[str, str]) -> None:
    events, records, shard = _stream(env)
    lake, st = names
    broken = build_processor(env, lake, s3=CrashAfterPut(client("s3", env), 1))
    with pytest.raises(Crash):
        broken.process(lambda_event(env, records, shard))
    assert build_processor(env, st).process(lambda_event(env, records, shard)) == {"batchItemFailures": []}
    assert state(env) == expected_state(events)
    # … and the lake catches up on its own once S3 is back.
    assert build_processor(env, lake).process(lambda_event(env, records, shard)) == {"batchItemFailures": []}
    assert lake_event_ids(env, lake) == {e["event_id"]: 1 for e in events}
