"""The batch processor pauses the cyclic collector for a batch and always gives it back."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from consumers.core.decode import Decoder
from consumers.core.processor import BatchProcessor
from pipeline.codecs.avro import SchemaRegistry


def _processor() -> BatchProcessor:
    # Neither path below reaches the checkpoints, the sink or the quarantine.
    none: Any = None
    return BatchProcessor("c", Decoder(SchemaRegistry.load()), none, none, none)


def _record(shard: str) -> dict[str, Any]:
    return {"eventID": f"{shard}:1", "kinesis": {"sequenceNumber": "1", "data": ""}}


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_as_it_was_after_a_batch_and_after_an_error(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        p = _processor()
        assert p.process({"Records": []}) == {"batchItemFailures": []}
        assert gc.isenabled() is enabled
        with pytest.raises(ValueError, match="several shards"):
            p.process({"Records": [_record("shardId-000000000000"), _record("shardId-000000000001")]})
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_the_collector_is_off_while_a_batch_is_processed() -> None:
    """Observed from inside the batch: the checkpoint store is asked for the shard's position."""
    seen: list[bool] = []

    class Stop(Exception):
        pass

    class Checkpoints:
        def load(self, shard_id: str) -> Any:
            seen.append(gc.isenabled())
            raise Stop

    was = gc.isenabled()
    try:
        gc.enable()
        none: Any = None
        p = BatchProcessor("c", Decoder(SchemaRegistry.load()), Checkpoints(), none, none)
        with pytest.raises(Stop):
            p.process({"Records": [_record("shardId-000000000000")]})
        assert seen == [False] and gc.isenabled()
    finally:
        gc.enable() if was else gc.disable()
