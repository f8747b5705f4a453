"""Under faults — throttling on 30% of Kinesis and DynamoDB calls, the ESM runner killed and
restarted, a handler worker killed mid-batch — nothing is lost and nothing is duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from botocore.exceptions import ClientError

from consumers.state_writer.model import expected_state
from pipeline import aws
from pipeline.events import generate
from pipeline.settings import Settings
from pipeline.stack import inspect
from pipeline.stack.faults import set_throttle
from pipeline.stack.processes import children
from producers.producer import KinesisProducer

EVENTS = 8_000
ROUNDS = 10
STATE_FIELDS = ("events", "orders_created", "orders_cancelled", "paid_cents")


def _runner(settings: Settings, log: Path) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115 - handed to the child for its whole life
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "esm",
            "run",
            "--port",
            str(settings.port),
            "--state-dir",
            str(settings.state_dir),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _batches(settings: Settings) -> int:
    stats = inspect.esm_stats(settings.state_dir)
    return sum(m.get("batches", 0) for m in stats.values())


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except ClientError as exc:
            # The observer's own reads are throttled like everyone's; look again.
            if "Throttl" not in exc.response["Error"]["Code"]:
                raise
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_nothing_lost_or_duplicated_under_throttling_and_crashes(
    pipeline_stack: Settings, tmp_path: Path
) -> None:
    settings = pipeline_stack
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    lam = aws.client("lambda", settings)
    # Small batches, so the run has many invocations to interrupt.
    for m in lam.list_event_source_mappings()["EventSourceMappings"]:
        lam.update_event_source_mapping(UUID=m["UUID"], BatchSize=2)
    set_throttle(settings.endpoint_url, 0.3)

    events = list(generate(EVENTS, customers=50, seed=5))
    last: dict[str, tuple[int, int]] = {}
    with KinesisProducer(settings.stream_name, settings) as producer:
        step = EVENTS // ROUNDS
        for i in range(ROUNDS):
            futures = [producer.put_event(e) for e in events[i * step : (i + 1) * step]]
            producer.flush()
            for f in futures:
                r = f.result()
                last[r.shard_id] = max(last.get(r.shard_id, (0, 0)), (int(r.sequence_number), r.sub_sequence))

    log = tmp_path / "esm.log"
    runner = _runner(settings, log)
    try:
        # A worker killed while it runs a batch: a function error, retried by the ESM.
        _wait(lambda: len(children(runner.pid)) >= 2, 60, "handler workers")
        time.sleep(0.5)
        os.kill(children(runner.pid)[0], signal.SIGKILL)
        # The runner itself killed mid-run, then restarted from its persisted positions.
        _wait(lambda: _batches(settings) >= 4, 120, "a few batches")
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
        runner = _runner(settings, log)

        from pipeline.cli import caught_up

        _wait(
            lambda: caught_up(settings, last, ["lake-writer", "state-writer"]),
            400,
            "both consumers to reach the last produced positions",
        )
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(runner.pid, signal.SIGKILL)
    set_throttle(settings.endpoint_url, 0.0)

    ids = inspect.lake_event_ids(settings)
    assert set(ids) == {e["event_id"] for e in events}, "events were lost"
    assert max(ids.values()) == 1, "events were duplicated in the lake"
    state = {k: {f: v[f] for f in STATE_FIELDS} for k, v in inspect.state_items(settings).items()}
    assert state == expected_state(events)
