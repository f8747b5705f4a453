"""Exactly-once effects under failure: a fault at every step of a batch, then the ESM's retry of the
same batch, of a smaller one (bisect) or of a larger one, then the rest of the stream.

Lambda retries a failed batch whole, splits it in two when ``BisectBatchOnFunctionError`` is on,
and after a partial batch response resumes from the reported sequence number; see "Configuring
partial batch response with Kinesis Data Streams and Lambda"
(https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-batchfailurereporting.html): "If the
batchItemFailures array contains multiple items, Lambda uses the record with the lowest sequence
number as the checkpoint. Lambda then retries all records starting from that checkpoint", and
"when a batch partial success response is received and both BisectBatchOnFunctionError and
ReportBatchItemFailures are turned on, the batch is bisected at the returned sequence number".
Faults are collaborators that raise at the chosen step over real boto3 clients on the moto server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from consumers.core.checkpoint import CheckpointStore
from consumers.core.processor import BatchProcessor
from consumers.state_writer.model import expected_state
from pipeline.events import generate
from pipeline.settings import Settings
from tests.consumers.helpers import (
    CheckpointFaults,
    Crash,
    CrashAfterPut,
    FailingWrites,
    aggregate,
    archived,
    avro,
    build_processor,
    checkpoint,
    client,
    lake_event_ids,
    lambda_event,
    last_position,
    put_records,
    quarantined,
    shard_id,
    state,
)

HOUR_MS = 3_600_000
FIRST_BATCH = 8  # Kinesis records in the batch that fails
LARGER = 12


def _events() -> list[dict[str, Any]]:
    """Events of six customers whose times cross two hour boundaries (several lake objects a batch)."""
    base = 1_795_000_000_000 // HOUR_MS * HOUR_MS + HOUR_MS - 25 * 60_000
    events = list(generate(46, customers=6, seed=5))
    for i, e in enumerate(events):
        e["event_time"] = base + i * 90_000
    return events


@pytest.fixture(scope="module")
def stream(world: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """Put the test's records: aggregates of four events, some plain Avro records, a producer
    duplicate (the same event under a second sequence number) and a poison record."""
    events = _events()
    payloads: list[tuple[str, bytes]] = []
    i = 0
    n = 0
    while i < len(events):
        n += 1
        if n % 5 == 0:  # a plain (non-aggregated) record
            payloads.append((events[i]["customer_id"], avro(events[i])))
            i += 1
        else:
            chunk = events[i : i + 4]
            payloads.append((chunk[0]["customer_id"], aggregate(chunk)))
            i += 4
        if n == 3:
            payloads.append(("x", b"\x00not an event"))
        if n == 6:  # retried put of an event of record 2
            payloads.append((events[5]["customer_id"], avro(events[5])))
    return events, put_records(world, payloads), shard_id(world)


class Esm:
    """Delivers record ranges as Lambda events and follows the partial batch responses."""

    def __init__(self, settings: Settings, records: list[dict[str, Any]], shard: str) -> None:
        self.settings = settings
        self.records = records
        self.shard = shard
        self.index = {r["SequenceNumber"]: i for i, r in enumerate(records)}

    def deliver(self, processor: BatchProcessor, start: int, stop: int) -> int:
        """Run one batch; the index the ESM resumes from."""
        resp = processor.process(lambda_event(self.settings, self.records[start:stop], self.shard))
        failures = resp["batchItemFailures"]
        assert len(failures) <= 1, "more than one itemIdentifier: later records would be re-delivered"
        if failures:
            return self.index[failures[0]["itemIdentifier"]]
        return stop

    def drain(self, processor: BatchProcessor, start: int, size: int = 3) -> None:
        """Deliver everything from ``start`` on; a healthy processor must never fail."""
        cursor = start
        while cursor < len(self.records):
            stop = min(cursor + size, len(self.records))
            assert self.deliver(processor, cursor, stop) == stop
            cursor = stop


def _lake_faults(settings: Settings, consumer: str) -> dict[str, Callable[[], BatchProcessor]]:
    def checkpoints(**kw: bool) -> CheckpointFaults:
        return CheckpointFaults(
            CheckpointStore(client("dynamodb", settings), settings.checkpoint_table, consumer), **kw
        )

    s3 = client("s3", settings)
    return {
        "after the intent": lambda: build_processor(
            settings, consumer, checkpoints=checkpoints(after_intent=True)
        ),
        "after the raw archive put": lambda: build_processor(settings, consumer, s3=CrashAfterPut(s3, 1)),
        "after a lake object put": lambda: build_processor(settings, consumer, s3=CrashAfterPut(s3, 2)),
        "before the checkpoint": lambda: build_processor(
            settings, consumer, checkpoints=checkpoints(before_advance=True)
        ),
    }


def _state_faults(settings: Settings, consumer: str, mode: str) -> dict[str, Callable[[], BatchProcessor]]:
    ddb = client("dynamodb", settings)
    cps = CheckpointFaults(
        CheckpointStore(client("dynamodb", settings), settings.checkpoint_table, consumer),
        before_advance=True,
    )
    return {
        "every DynamoDB write fails": lambda: build_processor(
            settings, consumer, dynamodb=FailingWrites(ddb, fail_from=1), state_mode=mode
        ),
        "DynamoDB writes fail part-way": lambda: build_processor(
            settings, consumer, dynamodb=FailingWrites(ddb, fail_from=3), state_mode=mode
        ),
        "before the checkpoint": lambda: build_processor(
            settings, consumer, checkpoints=cps, state_mode=mode
        ),
    }


def _run(esm: Esm, faulty: BatchProcessor, healthy: BatchProcessor, retry: str) -> None:
    try:
        cursor = esm.deliver(faulty, 0, FIRST_BATCH)
    except Crash:
        cursor = 0  # a function error: the ESM retries the batch from its start
    else:
        assert cursor < FIRST_BATCH, "the injected fault went unnoticed"
    if retry == "same":
        cursor = esm.deliver(healthy, cursor, FIRST_BATCH)
    elif retry == "bisect":
        mid = cursor + max(1, (FIRST_BATCH - cursor) // 2)
        assert esm.deliver(healthy, cursor, mid) == mid
        cursor = esm.deliver(healthy, mid, FIRST_BATCH)
    else:
        cursor = esm.deliver(healthy, cursor, LARGER)
    esm.drain(healthy, cursor)


RETRIES = ("same", "bisect", "larger")


def _distinct(events: list[dict[str, Any]]) -> set[str]:
    return {e["event_id"] for e in events}


@pytest.mark.parametrize("retry", RETRIES)
@pytest.mark.parametrize(
    "fault",
    ["after the intent", "after the raw archive put", "after a lake object put", "before the checkpoint"],
)
def test_lake_holds_every_event_once_after_a_fault_and_any_retry(
    env: Settings, names: tuple[str, str], stream: Any, fault: str, retry: str
) -> None:
    events, records, shard = stream
    consumer = names[0]
    esm = Esm(env, records, shard)
    _run(esm, _lake_faults(env, consumer)[fault](), build_processor(env, consumer), retry)

    assert lake_event_ids(env, consumer) == {eid: 1 for eid in _distinct(events)}
    raw = archived(env, consumer, shard)
    assert [r["kinesis"]["sequenceNumber"] for r in raw] == [r["SequenceNumber"] for r in records]
    assert raw == lambda_event(env, records, shard)["Records"]
    assert [q["reason"] for q in quarantined(env, consumer)] == ["bad_magic"]
    assert checkpoint(env, consumer, shard).position == last_position(env, records, shard)
    assert checkpoint(env, consumer, shard).intent is None


@pytest.mark.parametrize("retry", RETRIES)
@pytest.mark.parametrize(
    ("fault", "mode"),
    [
        ("every DynamoDB write fails", "update"),
        ("DynamoDB writes fail part-way", "update"),
        ("before the checkpoint", "update"),
        ("every DynamoDB write fails", "transact"),
    ],
)
def test_state_equals_the_fold_of_every_event_once_after_a_fault_and_any_retry(
    env: Settings, names: tuple[str, str], stream: Any, fault: str, mode: str, retry: str
) -> None:
    events, records, shard = stream
    consumer = names[1]
    esm = Esm(env, records, shard)
    faulty = _state_faults(env, consumer, mode)[fault]()
    _run(esm, faulty, build_processor(env, consumer, state_mode=mode), retry)

    assert state(env) == expected_state(events)
    assert [q["reason"] for q in quarantined(env, consumer)] == ["bad_magic"]
    cp = checkpoint(env, consumer, shard)
    assert cp.position == last_position(env, records, shard)
    assert cp.counters["duplicates_event"] >= 1
