"""The ESM's own position per shard survives a restart of the runner."""

from __future__ import annotations

from pipeline.esm.runner import PositionStore
from tests.pipeline.esm.conftest import Esm, numbers


def test_a_restarted_runner_resumes_after_the_last_processed_record(esm: Esm) -> None:
    """AWS checkpoints per shard: "by default Lambda checkpoints to the highest sequence number of a
    batch only when the batch is a complete success" (services-kinesis-batchfailurereporting); a new
    runner on the same state folder resumes there, and ``PositionStore.reset`` replays from the
    starting position."""
    fn = esm.function("restart")
    esm.mapping(fn, BatchSize=10)
    esm.put(count=3)
    esm.drain()
    esm.put(count=2)
    esm.drain()
    assert numbers(esm.calls(fn)) == [[0, 1, 2], [3, 4]]
    PositionStore(esm.settings.state_dir / "esm").reset()
    esm.drain()
    assert numbers(esm.calls(fn))[2:] == [[0, 1, 2, 3, 4]]
