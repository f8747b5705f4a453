"""The lake writer's object keys: one object per event hour (UTC), named by its first and last
positions."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.core.records import UserRecord
from consumers.lake_writer.sink import LakeSink


def _record(i: int, event_time: object) -> UserRecord:
    return UserRecord(
        f"{i:0130d}.{0:010d}", str(i), 0, "c-1", {"event_id": f"e{i}", "event_time": event_time}, 0.0
    )


def test_events_are_grouped_by_their_utc_hour_whatever_the_time_type() -> None:
    sink = LakeSink(None, "bucket", "events/v1", {}, "deflate", "raw/v1")
    hour = 1_795_000_000_000 // 3_600_000 * 3_600_000  # an hour boundary, in ms
    records = [
        _record(1, hour - 1),  # the last millisecond of the previous hour
        _record(2, hour),
        _record(3, datetime.fromtimestamp(hour / 1000 + 1, tz=UTC)),
        _record(4, -1),  # before the epoch: 1969-12-31 23h
    ]
    keys = sink.plan("shardId-000000000000", records)
    before = datetime.fromtimestamp((hour - 1) / 1000, tz=UTC)
    at = datetime.fromtimestamp(hour / 1000, tz=UTC)
    assert [[r.sequence_number for r in recs] for recs in keys.values()] == [["4"], ["1"], ["2", "3"]]
    names = list(keys)
    assert names[0].startswith("events/v1/dt=1969-12-31/hour=23/shard=shardId-000000000000/")
    assert names[1].startswith(f"events/v1/dt={before:%Y-%m-%d}/hour={before:%H}/")
    assert names[2].startswith(f"events/v1/dt={at:%Y-%m-%d}/hour={at:%H}/")
    assert before.hour != at.hour


def test_an_hour_of_mixed_time_types_keeps_position_order() -> None:
    sink = LakeSink(None, "bucket", "events/v1", {}, "deflate", "raw/v1")
    hour = 1_795_000_000_000 // 3_600_000 * 3_600_000
    records = [
        _record(1, hour + 5),
        _record(2, datetime.fromtimestamp(hour / 1000 + 6, tz=UTC)),
        _record(3, hour + 7),
        _record(4, datetime.fromtimestamp(hour / 1000 + 8, tz=UTC)),
    ]
    keys = sink.plan("shardId-000000000000", records)
    assert [[r.sequence_number for r in recs] for recs in keys.values()] == [["1", "2", "3", "4"]]
