"""Duplicates: delivery duplicates (the same records again) by the checkpoint, producer duplicates
(the same event under two sequence numbers) by event id, in each of the three modes."""

from __future__ import annotations

import math

import pytest

from consumers.core.checkpoint import CheckpointStore
from consumers.core.event_ids import EventIdStore
from consumers.state_writer.model import expected_state
from pipeline.events import generate
from pipeline.settings import Settings
from tests.consumers.helpers import (
    Counting,
    aggregate,
    avro,
    build_processor,
    checkpoint,
    client,
    lake_event_ids,
    lambda_event,
    put_records,
    shard_id,
    state,
)


def _twice(env: Settings) -> tuple[list[dict], list[dict], str]:
    """Ten events, then the sixth put again under a new sequence number (a retried put)."""
    events = list(generate(10, customers=3, seed=3))
    payloads = [(e["customer_id"], avro(e)) for e in events] + [(events[5]["customer_id"], avro(events[5]))]
    return events, put_records(env, payloads), shard_id(env)


@pytest.mark.parametrize("mode", ["table", "batch"])
def test_the_same_event_put_twice_in_one_batch_counts_once(
    env: Settings, names: tuple[str, str], mode: str
) -> None:
    events, records, shard = _twice(env)
    event = lambda_event(env, records, shard)
    for consumer in names:
        assert build_processor(env, consumer, dedupe=mode).process(event) == {"batchItemFailures": []}
        assert checkpoint(env, consumer, shard).counters["duplicates_event"] == 1
    assert lake_event_ids(env, names[0]) == {e["event_id"]: 1 for e in events}
    assert state(env) == expected_state(events)


def test_the_same_event_put_twice_in_two_batches_counts_once_with_the_table(
    env: Settings, names: tuple[str, str]
) -> None:
    events, records, shard = _twice(env)
    for consumer in names:
        processor = build_processor(env, consumer, dedupe="table")
        processor.process(lambda_event(env, records[:8], shard))
        processor.process(lambda_event(env, records[8:], shard))
        # The whole range again (a replay): the first copy is recognised at its own position.
        processor.process(lambda_event(env, records, shard))
    assert lake_event_ids(env, names[0]) == {e["event_id"]: 1 for e in events}
    assert state(env) == expected_state(events)


@pytest.mark.parametrize(("mode", "copies"), [("batch", 2), ("off", 2)])
def test_without_the_table_a_duplicate_in_a_later_batch_passes(
    env: Settings, names: tuple[str, str], mode: str, copies: int
) -> None:
    """What ``batch`` and ``off`` give up for being free: the README states it."""
    events, records, shard = _twice(env)
    lake = names[0]
    processor = build_processor(env, lake, dedupe=mode)
    processor.process(lambda_event(env, records[:8], shard))
    processor.process(lambda_event(env, records[8:], shard))
    assert lake_event_ids(env, lake)[events[5]["event_id"]] == copies


def test_off_keeps_a_duplicate_even_within_one_batch(env: Settings, names: tuple[str, str]) -> None:
    events, records, shard = _twice(env)
    build_processor(env, names[0], dedupe="off").process(lambda_event(env, records, shard))
    assert lake_event_ids(env, names[0])[events[5]["event_id"]] == 2


def keys(s3: object, bucket: str, consumer: str) -> list[str]:
    """Every key of the bucket that names the consumer (lake, archive, quarantine)."""
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):  # type: ignore[attr-defined]
        out += [o["Key"] for o in page.get("Contents", []) if f"/{consumer}/" in o["Key"]]
    return sorted(out)


def test_a_redelivered_batch_changes_nothing_and_counts_as_delivery_duplicates(
    env: Settings, names: tuple[str, str]
) -> None:
    events = list(generate(12, customers=3, seed=4))
    records = put_records(
        env, [(events[i]["customer_id"], aggregate(events[i : i + 3])) for i in range(0, 12, 3)]
    )
    shard = shard_id(env)
    s3 = client("s3", env)
    for consumer in names:
        processor = build_processor(env, consumer)
        processor.process(lambda_event(env, records, shard))
        before = keys(s3, env.bucket, consumer)
        processor.process(lambda_event(env, records, shard))
        assert keys(s3, env.bucket, consumer) == before
        assert checkpoint(env, consumer, shard).counters["duplicates_delivery"] == len(events)
    assert lake_event_ids(env, names[0]) == {e["event_id"]: 1 for e in events}
    assert state(env) == expected_state(events)


@pytest.mark.parametrize("kinesis_records", [4, 120])
def test_the_checkpoint_costs_at_most_three_dynamodb_requests_per_batch_whatever_its_size(
    env: Settings, names: tuple[str, str], kinesis_records: int
) -> None:
    events = list(generate(kinesis_records * 5, customers=50, seed=6))
    records = put_records(
        env, [(events[i]["customer_id"], aggregate(events[i : i + 5])) for i in range(0, len(events), 5)]
    )
    ddb = Counting(client("dynamodb", env))
    lake = names[0]
    processor = build_processor(
        env, lake, dedupe="batch", checkpoints=CheckpointStore(ddb, env.checkpoint_table, lake)
    )
    processor.process(lambda_event(env, records, shard_id(env)))
    assert dict(ddb.calls) == {"get_item": 1, "update_item": 2}
    assert lake_event_ids(env, lake) == {e["event_id"]: 1 for e in events}


def test_the_event_id_table_costs_one_read_per_100_and_one_write_per_25_records(
    env: Settings, names: tuple[str, str]
) -> None:
    events = list(generate(230, customers=50, seed=7))
    records = put_records(
        env, [(events[i]["customer_id"], aggregate(events[i : i + 10])) for i in range(0, 230, 10)]
    )
    event = lambda_event(env, records, shard_id(env))
    ddb = Counting(client("dynamodb", env))
    store = EventIdStore(ddb, env.event_id_table, names[0], env.event_id_ttl_seconds)
    processor = build_processor(env, names[0])
    processor.event_ids = store
    processor.process(event)
    assert dict(ddb.calls) == {
        "batch_get_item": math.ceil(230 / 100),
        "batch_write_item": math.ceil(230 / 25),
    }
    ddb.calls.clear()
    processor.process(event)  # all below the checkpoint now: the store is not asked at all
    assert dict(ddb.calls) == {}
    item = client("dynamodb", env).get_item(
        TableName=env.event_id_table, Key={"event_id": {"S": f"{names[0]}#{events[0]['event_id']}"}}
    )["Item"]
    assert int(item["expires_at"]["N"]) >= item_time_floor(env)


def item_time_floor(env: Settings) -> int:
    """The earliest expiry a fresh item may carry: now + the replay horizon (7 days by default)."""
    import time

    assert env.event_id_ttl_seconds >= 7 * 24 * 3600
    return int(time.time()) + env.event_id_ttl_seconds - 60
