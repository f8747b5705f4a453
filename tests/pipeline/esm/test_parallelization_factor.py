"""ParallelizationFactor."""

from __future__ import annotations

from collections import defaultdict

from tests.pipeline.esm.conftest import Esm


def test_batches_of_one_shard_run_concurrently_and_each_key_stays_in_order(esm: Esm) -> None:
    """AWS: ParallelizationFactor "(Kinesis and DynamoDB Streams only) The number of batches to
    process concurrently from each shard. The default value is 1." (EventSourceMapping API); records
    of one partition key are never processed concurrently, so their order is kept. Four lanes,
    eight keys, every handler call sleeps."""
    fn = esm.function("parallel", env={"SLEEP_SECONDS": "0.3"})
    esm.mapping(fn, BatchSize=3, ParallelizationFactor=4)
    esm.put(["sleep"] * 16, key=lambda n: f"key-{n % 8}")
    esm.drain()
    calls = esm.calls(fn)
    per_key: dict[str, list[int]] = defaultdict(list)
    for c in sorted(calls, key=lambda c: c["start"]):
        for r in c["records"]:
            per_key[r["key"]].append(r["n"])
    assert sorted(n for ns in per_key.values() for n in ns) == list(range(16)), "each record once"
    assert all(ns == sorted(ns) for ns in per_key.values()), "a key was processed out of order"
    # Some invocations of the one shard overlapped in time.
    spans = sorted((c["start"], c["end"]) for c in calls)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))
    assert len({c["pid"] for c in calls}) > 1
