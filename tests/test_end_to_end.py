"""The whole path on the embedded stack: producer → Kinesis → local ESM → both consumers."""

from __future__ import annotations

from collections import Counter

from consumers.state_writer.model import expected_state
from pipeline.esm.runner import EsmRunner, PositionStore
from pipeline.events import generate
from pipeline.settings import Settings
from pipeline.stack import inspect
from producers.producer import KinesisProducer

STATE_FIELDS = ("events", "orders_created", "orders_cancelled", "paid_cents")


def _drain(settings: Settings) -> EsmRunner:
    runner = EsmRunner(settings, settings.state_dir)
    try:
        assert runner.run_until_drained(timeout=240), "the ESM did not drain the stream"
    finally:
        runner.stop()
    return runner


def _state(settings: Settings) -> dict[str, dict[str, int]]:
    return {k: {f: v[f] for f in STATE_FIELDS} for k, v in inspect.state_items(settings).items()}


def test_ten_thousand_events_land_exactly_once_and_a_full_replay_changes_nothing(
    pipeline_stack: Settings,
) -> None:
    settings = pipeline_stack
    events = list(generate(10_000, customers=500, seed=11))
    with KinesisProducer(settings.stream_name, settings) as producer:
        futures = [producer.put_event(e) for e in events]
        producer.flush()
    shards = Counter(f.result().shard_id for f in futures)
    assert len(shards) == 4, f"events reached {len(shards)} of 4 shards"

    first = _drain(settings)
    ids = inspect.lake_event_ids(settings)
    assert set(ids) == {e["event_id"] for e in events}
    assert max(ids.values()) == 1, "an event was written to the lake twice"
    assert _state(settings) == expected_state(events)
    functions = {m.function_name for m in first.mappings}
    assert functions == {"pipeline-lake-writer", "pipeline-state-writer"}

    keys_before = sorted(inspect.lake_keys(settings))
    state_before = inspect.state_items(settings)

    # Forget the ESM's positions: every record is delivered again from TRIM_HORIZON.
    PositionStore(settings.state_dir / "esm").reset()
    second = _drain(settings)
    assert sum(second.stats[m.uuid].records for m in second.mappings) > 0, "nothing was replayed"
    assert sorted(inspect.lake_keys(settings)) == keys_before
    assert inspect.state_items(settings) == state_before
    assert inspect.lake_event_ids(settings) == ids
    dropped = Counter()
    for key, cp in inspect.checkpoints(settings).items():
        dropped[key.split("#")[0]] += cp.get("duplicates_delivery", 0)
    assert dropped == {"lake-writer": 10_000, "state-writer": 10_000}
