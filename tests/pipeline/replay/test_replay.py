"""``pipeline replay`` against the embedded stack (moto server over HTTP), with the real handlers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from consumers.state_writer.model import expected_state
from pipeline import aws
from pipeline.codecs import kpl
from pipeline.esm.events import failure_message
from pipeline.esm.runner import EsmRunner
from pipeline.replay.cursor import Cursor
from pipeline.replay.ranges import Range
from pipeline.replay.records import RawRecord, from_get_records
from pipeline.replay.runner import Replay
from pipeline.replay.sources import History, StreamReader
from pipeline.replay.targets import LocalConsumer, consumer_environment, deployed_configuration
from pipeline.replay.versions import table_exists
from pipeline.settings import Settings
from pipeline.stack.bootstrap import bootstrap, dlq_name, function_name
from producers.cli import produce
from tests.pipeline.replay.helpers import (
    all_events,
    as_lambda,
    checkpoint_positions,
    create_stream,
    cursor_files,
    events_of,
    lake_ids,
    lake_snapshot,
    replay,
    shard_records,
    state,
    stream_arn,
    totals,
    write_archive,
)


def drain(settings: Settings) -> None:
    """Run the local ESM (both consumers' mappings) until every shard is processed."""
    runner = EsmRunner(settings, settings.state_dir)
    try:
        assert runner.run_until_drained(300), "the ESM did not drain"
    finally:
        runner.stop()


@pytest.fixture
def stack2(settings: Settings) -> Settings:
    """The pipeline's resources on a stream of two shards (fewer workers on a small machine)."""
    s = replace(settings, shard_count=2)
    bootstrap(s)
    return s


def test_replaying_processed_history_changes_nothing(
    stack2: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = stack2
    produce(s, 400, seed=11, quiet=True)
    drain(s)
    lake, items, positions = lake_snapshot(s), state(s), checkpoint_positions(s)
    assert sum(lake_ids(s).values()) == 400 and items

    assert replay(s) == 0
    out = capsys.readouterr().out

    assert lake_snapshot(s) == lake
    assert state(s) == items
    assert checkpoint_positions(s) == positions
    assert "lake-writer   0 events written, 400 already processed" in out
    assert "state-writer  0 events written, 400 already processed" in out


def test_reprocess_after_a_handler_bug_builds_a_correct_new_version_and_leaves_the_old_one_alone(
    stack2: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = stack2
    produce(s, 400, seed=7, quiet=True)
    # The current version was written by a state writer with a bug (it ignores refunds) and a
    # correct lake writer, each under its own checkpoint namespace, as the ESM delivers.
    arn = stream_arn(s)
    lam = aws.client("lambda", s)
    writers = []
    for consumer, handler in (
        ("lake-writer", None),
        ("state-writer", "tests.pipeline.replay.buggy_state_writer.lambda_handler"),
    ):
        config = deployed_configuration(lam, function_name(s, consumer)) or {}
        env = consumer_environment(s, consumer, config["Environment"]["Variables"], {})
        writers.append(
            LocalConsumer(consumer, env, arn, s.region, log_dir=s.state_dir / "logs", handler=handler)
        )
    history = History(StreamReader(aws.client("kinesis", s), s.stream_name), None)
    try:
        Replay().history(history, history.shard_ids(), Range(), writers, Cursor.open(s.state_dir, {"v": 1}))
    finally:
        for w in writers:
            w.close()
    for cursor in cursor_files(s):
        cursor.unlink()
    events = all_events(s)
    right = expected_state(events)
    assert len(events) == 400
    assert totals(state(s)) != right  # the bug shows in the current version
    lake, items, positions = lake_snapshot(s), state(s), checkpoint_positions(s)
    assert sum(lake_ids(s).values()) == 400 and set(positions) == {
        f"{c}#shardId-00000000000{i}" for c in ("lake-writer", "state-writer") for i in range(2)
    }

    assert replay(s, "--reprocess", "--output-version", "v2", "--dry-run") == 0
    plan = capsys.readouterr().out
    assert "would create state table pipeline-customer-state-v2" in plan
    assert "lake s3://pipeline-lake/events/v2/" in plan and "checkpoints 'state-writer-v2'" in plan
    assert not table_exists(aws.client("dynamodb", s), "pipeline-customer-state-v2")
    assert cursor_files(s) == [] and lake_snapshot(s, "events/v2") == {}

    assert replay(s, "--reprocess", "--output-version", "v2") == 0
    out = capsys.readouterr().out

    assert totals(state(s, "pipeline-customer-state-v2")) == right
    assert lake_ids(s, "events/v2") == Counter(str(e["event_id"]) for e in events)
    assert max(lake_ids(s, "events/v2").values()) == 1
    assert lake_snapshot(s) == lake and state(s) == items  # the current version is untouched
    current = {k: v for k, v in checkpoint_positions(s).items() if "-v2#" not in k}
    assert current == positions
    assert "created state table pipeline-customer-state-v2" in out
    assert "state-writer  400 events written" in out


def test_an_on_failure_message_replays_its_batch_and_is_deleted(
    stack2: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = stack2
    for seed in range(5):  # one flush per call: several Kinesis records per shard
        produce(s, 60, seed=100 + seed, quiet=True)
    shard, records = max(
        ((sh, shard_records(s, sh)) for sh in (f"shardId-00000000000{i}" for i in range(2))),
        key=lambda x: len(x[1]),
    )
    assert len(records) >= 3
    arn = stream_arn(s)
    # The ESM gave up on the middle of the shard and went on: later batches succeeded, so the
    # lake writer's checkpoint is past the failed batch.
    lam = aws.client("lambda", s)
    config = deployed_configuration(lam, function_name(s, "lake-writer")) or {}
    env = consumer_environment(s, "lake-writer", config["Environment"]["Variables"], {})
    lake_writer = LocalConsumer("lake-writer", env, arn, s.region, log_dir=s.state_dir / "logs")
    try:
        lake_writer.deliver(shard, [from_get_records(shard, r) for r in records[:1]])
        lake_writer.deliver(shard, [from_get_records(shard, r) for r in records[-1:]])
    finally:
        lake_writer.close()
    failed = records[1:-1]
    sqs = aws.client("sqs", s)
    queue = sqs.get_queue_url(QueueName=dlq_name(s, "lake-writer"))["QueueUrl"]
    sqs.send_message(
        QueueUrl=queue,
        MessageBody=failure_message(
            failed, shard, arn, config["FunctionArn"], "RetryAttemptsExhausted", 11, "SinkError"
        ),
    )
    shard_ids = Counter(str(e["event_id"]) for e in events_of(as_lambda(s, shard, records, arn)))
    missing = Counter(str(e["event_id"]) for e in events_of(as_lambda(s, shard, failed, arn)))
    assert lake_ids(s) == shard_ids - missing  # the failed batch is not in the lake
    lake = lake_snapshot(s)

    assert replay(s, "--source", "dlq", "--consumer", "lake-writer", "--dry-run") == 0
    assert "queue pipeline-on-failure-lake-writer: about 1 message(s)" in capsys.readouterr().out
    assert lake_snapshot(s) == lake  # the dry run wrote nothing and kept the message:

    assert replay(s, "--source", "dlq", "--consumer", "lake-writer") == 0
    out = capsys.readouterr().out

    assert lake_ids(s) == shard_ids  # every event of the shard, once
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert "1 replayed and deleted, 0 kept" in out


def test_a_range_the_stream_no_longer_holds_comes_from_the_archive(
    stack2: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = stack2
    # moto never trims a stream, so the trimmed history is simulated: it was produced into an
    # earlier stream and archived the way the lake writer archives it, while the live stream
    # (same shard ids) holds none of it, as after its retention passed.
    old = replace(s, stream_name="pipeline-events-before")
    create_stream(old, 2)
    for seed in range(4):
        produce(old, 50, seed=200 + seed, quiet=True)
    shard = "shardId-000000000001"
    records = as_lambda(s, shard, shard_records(old, shard), stream_arn(s))
    assert len(records) >= 4
    # Two objects that overlap, as after a retried batch.
    write_archive(s, shard, records[: len(records) // 2 + 1])
    write_archive(s, shard, records[len(records) // 2 - 1 :])
    assert shard_records(s, shard) == []
    wanted = records[1:-1]
    first, last = wanted[0]["kinesis"]["sequenceNumber"], wanted[-1]["kinesis"]["sequenceNumber"]

    assert replay(s, "--shard", shard, "--from-sequence", first, "--to-sequence", last) == 0
    out = capsys.readouterr().out

    events = events_of(wanted)
    assert lake_ids(s) == Counter(str(e["event_id"]) for e in events)
    assert totals(state(s)) == expected_state(events)
    assert f"{len(wanted):,} Kinesis records (0 from the stream, {len(wanted):,} from the archive)" in out


def test_an_interrupted_replay_continues_where_it_stopped(stack2: Settings) -> None:
    s = stack2
    for seed in range(6):
        produce(s, 40, seed=300 + seed, quiet=True)
    kinesis = aws.client("kinesis", s)
    history = History(StreamReader(kinesis, s.stream_name), None)
    shard_ids = history.shard_ids()
    expected = [r["SequenceNumber"] for sh in shard_ids for r in shard_records(s, sh)]
    assert len(expected) >= 6

    class Interrupting:
        """Takes ``stop_after`` batches, then the operator presses Ctrl-C."""

        name = "interrupting"

        def __init__(self, stop_after: int | None) -> None:
            self.stop_after = stop_after
            self.got: list[str] = []

        def deliver(self, shard_id: str, records: list[RawRecord]) -> None:
            if self.stop_after is not None and len(self.got) >= self.stop_after:
                raise KeyboardInterrupt
            self.got += [r.sequence_number for r in records]

        def describe(self) -> str:
            return self.name

        def close(self) -> None:
            pass

    command = {"test": "resume"}
    first = Interrupting(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        Replay(batch_size=1).history(history, shard_ids, Range(), [first], Cursor.open(s.state_dir, command))
    second = Interrupting(stop_after=None)
    Replay(batch_size=1).history(history, shard_ids, Range(), [second], Cursor.open(s.state_dir, command))

    assert first.got + second.got == expected


def test_replay_into_a_stream_keeps_partition_keys_and_payloads(
    stack2: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = stack2
    produce(s, 300, seed=5, quiet=True)
    copy = replace(s, stream_name="pipeline-events-copy")
    create_stream(copy, 3)

    assert replay(s, "--to-stream", copy.stream_name) == 0
    out = capsys.readouterr().out

    def user_records(settings: Settings, shards: int) -> Counter[tuple[str, bytes]]:
        got: Counter[tuple[str, bytes]] = Counter()
        for i in range(shards):
            for r in shard_records(settings, f"shardId-00000000000{i}"):
                for sub in kpl.deaggregate(r["Data"], r["PartitionKey"]):
                    got[(sub.partition_key, sub.data)] += 1
        return got

    source, target = user_records(s, 2), user_records(copy, 3)
    assert sum(source.values()) == 300 and target == source
    assert "300 user records put" in out


def test_shards_replayed_in_parallel_arrive_once_each_and_in_order(stack2: Settings) -> None:
    s = stack2
    for seed in range(4):
        produce(s, 40, seed=400 + seed, quiet=True)
    history = History(StreamReader(aws.client("kinesis", s), s.stream_name), None)
    shard_ids = history.shard_ids()
    expected = {sh: [r["SequenceNumber"] for r in shard_records(s, sh)] for sh in shard_ids}
    assert all(len(v) >= 2 for v in expected.values())

    class Recording:
        name = "recording"

        def __init__(self) -> None:
            self.got: dict[str, list[str]] = {sh: [] for sh in shard_ids}
            # Both shards' first batches must be in flight together (a sequential run never
            # gets past the barrier, which then breaks and fails the test).
            self.together = threading.Barrier(len(shard_ids), timeout=60)

        def deliver(self, shard_id: str, records: list[RawRecord]) -> None:
            if not self.got[shard_id]:
                self.together.wait()
            self.got[shard_id] += [r.sequence_number for r in records]

        def describe(self) -> str:
            return self.name

        def close(self) -> None:
            pass

    target = Recording()
    Replay(batch_size=1, parallel=2).history(
        history, shard_ids, Range(), [target], Cursor.open(s.state_dir, {"test": "parallel"})
    )

    assert target.got == expected


def arrival(record: dict[str, Any]) -> float:
    return float(record["ApproximateArrivalTimestamp"].timestamp())


def test_a_time_range_replays_only_what_arrived_within_it(stack2: Settings) -> None:
    s = stack2
    produce(s, 40, seed=500, quiet=True)
    since = time.time()
    during = produce(s, 40, seed=501, quiet=True)
    until = time.time()
    produce(s, 40, seed=502, quiet=True)
    history = History(StreamReader(aws.client("kinesis", s), s.stream_name), None)
    shard_ids = history.shard_ids()
    arrived = {sh: [r for r in shard_records(s, sh) if since <= arrival(r) <= until] for sh in shard_ids}
    assert sum(len(v) for v in arrived.values()) == during["kinesis_records"]

    got: dict[str, list[str]] = {sh: [] for sh in shard_ids}

    class Recording:
        name = "recording"

        def deliver(self, shard_id: str, records: list[RawRecord]) -> None:
            got[shard_id] += [r.sequence_number for r in records]

        def describe(self) -> str:
            return self.name

        def close(self) -> None:
            pass

    rng = Range(from_time=since, to_time=until)
    Replay().history(history, shard_ids, rng, [Recording()], Cursor.open(s.state_dir, {"test": "time"}))

    assert got == {sh: [r["SequenceNumber"] for r in recs] for sh, recs in arrived.items()}
