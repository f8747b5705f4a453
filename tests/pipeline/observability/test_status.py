"""``pipeline status`` against a real embedded stack: positions, lag, queues, lake, and --watch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline import aws
from pipeline.esm.runner import EsmRunner
from pipeline.observability import status
from pipeline.settings import Settings
from pipeline.stack import inspect
from producers.cli import produce
from tests.conftest import StackProcess

CONSUMERS = ("lake-writer", "state-writer")


def _drain(settings: Settings) -> None:
    runner = EsmRunner(settings, settings.state_dir)
    try:
        assert runner.run_until_drained(120), "the ESM did not drain the stream"
    finally:
        runner.stop()


def test_status_shows_each_shard_with_checkpoints_lag_throughput_queue_depth_and_lake(
    pipeline_stack: Settings,
) -> None:
    settings = pipeline_stack
    clients = status.Clients(settings)
    first = produce(settings, 200, quiet=True, seed=1)
    before = status.collect(settings, clients=clients)
    for consumer in CONSUMERS:
        rows = [c for s in before.shards for c in s.consumers if c.consumer == consumer]
        assert all(c.checkpoint is None and c.esm_position is None for c in rows)
        assert sum(c.lag_records or 0 for c in rows) == first["kinesis_records"]

    _drain(settings)
    after = status.collect(settings, previous=before, clients=clients)
    for s in after.shards:
        seq, sub = first["last_positions"][s.shard_id]
        assert s.newest_known and s.newest == str(seq)
        for c in s.consumers:
            assert c.checkpoint == (str(seq), sub), (s.shard_id, c)
            assert c.esm_position == str(seq), (s.shard_id, c)
            assert c.lag_records == 0 and not c.lag_is_lower_bound and c.lag_seconds == 0
            assert c.throughput is not None and c.throughput > 0, (s.shard_id, c)
    assert {m.function for m in after.mappings} == {"pipeline-lake-writer", "pipeline-state-writer"}
    assert all(m.batches and m.records and m.last_result == "OK" for m in after.mappings)

    sqs = aws.client("sqs", settings)
    url = sqs.get_queue_url(QueueName=f"{settings.dlq_prefix}-state-writer")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody='{"KinesisBatchInfo": {}}')
    # Produced after the drain and never consumed: this is the lag the view must count.
    second = produce(settings, 120, quiet=True, seed=2)
    snap = status.collect(settings, clients=clients)
    text = status.render(snap)

    listed = clients("kinesis").list_shards(StreamName=settings.stream_name)["Shards"]
    shard_ids = {s["ShardId"] for s in listed}
    assert {s.shard_id for s in snap.shards} == shard_ids and len(shard_ids) == 4
    lines = text.splitlines()
    for s in snap.shards:
        assert sum(line.startswith(s.shard_id) for line in lines) == 1, f"{s.shard_id}: one row group"
        assert [c.consumer for c in s.consumers] == list(CONSUMERS)
        newest = second["last_positions"].get(s.shard_id, first["last_positions"][s.shard_id])[0]
        assert s.newest_known and s.newest == str(newest)
        seq, sub = first["last_positions"][s.shard_id]
        assert all(c.checkpoint == (str(seq), sub) for c in s.consumers)
        assert f" {seq}/{sub} " in text
    for consumer in CONSUMERS:
        rows = [c for s in snap.shards for c in s.consumers if c.consumer == consumer]
        assert not any(c.lag_is_lower_bound for c in rows)
        assert sum(c.lag_records or 0 for c in rows) == second["kinesis_records"]
        assert all(c.lag_seconds is not None and c.lag_seconds >= 0 for c in rows)

    assert snap.queues == {
        f"{settings.dlq_prefix}-lake-writer": 0,
        f"{settings.dlq_prefix}-state-writer": 1,
    }
    assert f"on-failure queue {settings.dlq_prefix}-state-writer: depth 1" in text
    assert snap.lake_objects == len(inspect.lake_keys(settings)) > 0
    assert snap.lake_bytes and snap.lake_bytes > 0
    assert snap.quarantined == 0
    assert snap.problems == ()


def test_status_of_a_stopped_local_stack_says_how_to_start_it(tmp_path: Path) -> None:
    from tests.conftest import free_port

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "status",
            "--port",
            str(free_port()),
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "server   not running" in out.stdout and "make up" in out.stdout


def test_watch_refreshes_in_place_and_ctrl_c_exits_cleanly(
    pipeline_stack: Settings, stack: StackProcess, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "status",
            "--watch",
            "--interval",
            "0.2",
            "--port",
            str(stack.port),
            "--state-dir",
            str(pipeline_stack.state_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    seen = b""
    try:
        deadline = time.monotonic() + 60
        os.set_blocking(proc.stdout.fileno(), False)  # type: ignore[union-attr]
        while seen.count(status.CLEAR.encode()) < 2 and time.monotonic() < deadline:
            chunk = proc.stdout.read()  # type: ignore[union-attr]
            seen += chunk or b""
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    seen += rest
    assert seen.count(status.CLEAR.encode()) >= 2, seen[-2000:]
    assert b"shardId-000000000000" in seen and b"Ctrl-C to exit" in seen
    assert proc.returncode == 0, err
    assert b"Traceback" not in err


def test_render_shortens_aws_sequence_numbers_and_marks_lower_bounds() -> None:
    seq = "49654318976612344837722341205843095474452353845284749314"  # 56 digits, as AWS writes them
    row = status.ConsumerShard(
        consumer="lake-writer",
        esm_position=None,
        checkpoint=(seq, 7),
        lag_records=20_000,
        lag_is_lower_bound=True,
        lag_seconds=5_400.0,
        records_total=10,
        throughput=1234.4,
    )
    snap = status.Snapshot(
        taken_at=0.0,
        endpoint="AWS eu-west-1",
        stream="prod-events",
        processes={},
        shards=(status.ShardStatus("shardId-000000000007", False, seq, False, (row,)),),
        mappings=(),
        queues={"pipeline-on-failure-lake-writer": None},
        quarantined=3,
        lake_objects=12_000,
        lake_bytes=3 * 1024**3,
        lake_is_lower_bound=True,
        problems=("checkpoints: ResourceNotFoundException: table missing",),
    )
    text = status.render(snap)
    line = next(x for x in text.splitlines() if x.startswith("shardId-000000000007"))
    assert "(closed)" in line and "≥…" + seq[-17:] in line and f"…{seq[-17:]}/7" in line
    assert "≥20,000" in line and "1.5 h" in line and "1,234" in line
    assert seq not in text, "a 56-digit sequence number would push the table off the screen"
    assert "server" not in text, "no local process lines against AWS"
    assert "on-failure queue pipeline-on-failure-lake-writer: missing" in text
    assert "lake: ≥12,000 objects, ≥3.0 GiB" in text and "quarantine: 3 records" in text
    assert "note: checkpoints: ResourceNotFoundException" in text
