"""BatchSize and the 6 MB payload cap."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.pipeline.esm.conftest import Esm, numbers


def test_batches_hold_at_most_batch_size_records_in_shard_order(esm: Esm) -> None:
    """AWS: "Before invoking the function, Lambda continues to read records from the event source
    until it has gathered a full batch, the batching window expires, or the batch reaches the
    payload limit of 6 MB." (with-kinesis.html, Polling and batching streams)."""
    fn = esm.function("batch-size")
    esm.mapping(fn, BatchSize=10)
    esm.put(count=25)
    esm.drain()
    assert numbers(esm.calls(fn)) == [list(range(0, 10)), list(range(10, 20)), list(range(20, 25))]


def test_batch_size_above_10000_is_refused_by_the_api(esm: Esm) -> None:
    """AWS: BatchSize "Maximum: 10,000" (Lambda parameters for Kinesis event source mappings)."""
    fn = esm.function("too-big")
    with pytest.raises(ClientError):
        esm.mapping(fn, BatchSize=10_001)


def test_a_batch_stops_at_the_6_mb_payload_cap(unlimited_esm: Esm) -> None:
    """AWS: "...the batch reaches the payload limit of 6 MB." Eight 700 KB records are 7.5 MB of
    base64 in the event, so they arrive as a batch of six and a batch of two."""
    esm = unlimited_esm
    fn = esm.function("payload-cap")
    esm.mapping(fn, BatchSize=100)
    esm.put(count=8, data=lambda n: b'{"n": %d, "pad": "%s"}' % (n, b"x" * 700_000))
    esm.drain()
    assert [len(b) for b in numbers(esm.calls(fn))] == [6, 2]
