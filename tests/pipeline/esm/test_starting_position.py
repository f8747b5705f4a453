"""StartingPosition: TRIM_HORIZON, LATEST and AT_TIMESTAMP."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.pipeline.esm.conftest import Esm, numbers


def test_each_starting_position_reads_from_where_aws_says(esm: Esm) -> None:
    """AWS: StartingPosition "AT_TIMESTAMP, TRIM_HORIZON, or LATEST" (Kinesis ESM parameters);
    TRIM_HORIZON: "Start reading at the last untrimmed record in the shard in the system, which is the
    oldest data record in the shard.", LATEST: "Start reading just after the most recent record in
    the shard, so that you always read the most recent data in the shard.", AT_TIMESTAMP: "Start
    reading from a position defined by a time stamp." (Lambda StartingPosition, AWS CDK reference)."""
    esm.put(count=2)  # n = 0, 1: before everything
    time.sleep(1.1)
    since = datetime.now(tz=UTC)
    time.sleep(0.1)
    esm.put(count=2)  # n = 2, 3: after the timestamp, before the mappings start
    trim = esm.function("trim")
    latest = esm.function("latest")
    stamp = esm.function("stamp")
    esm.mapping(trim, StartingPosition="TRIM_HORIZON")
    esm.mapping(latest, StartingPosition="LATEST")
    esm.mapping(stamp, StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=since)
    runner = esm.runner()
    assert runner.run_until_drained(timeout=60)
    esm.put(count=2)  # n = 4, 5: after the mappings started
    assert runner.run_until_drained(timeout=60)
    runner.stop()
    seen = {fn: sorted(n for b in numbers(esm.calls(fn)) for n in b) for fn in (trim, latest, stamp)}
    assert seen == {trim: [0, 1, 2, 3, 4, 5], latest: [4, 5], stamp: [2, 3, 4, 5]}
