"""MaximumBatchingWindowInSeconds."""

from __future__ import annotations

import time

from tests.pipeline.esm.conftest import Esm, numbers


def test_records_arriving_within_the_window_are_invoked_together(esm: Esm) -> None:
    """AWS: "To avoid invoking the function with a small number of records, you can tell the event
    source to buffer records for up to 5 minutes by configuring a batching window. Before invoking
    the function, Lambda continues to read records from the event source until it has gathered a
    full batch, the batching window expires, or the batch reaches the payload limit of 6 MB."
    (with-kinesis.html). Three records put a second apart reach the function as one batch."""
    fn = esm.function("window")
    esm.mapping(fn, BatchSize=100, MaximumBatchingWindowInSeconds=6)
    runner = esm.runner()
    runner.start()
    for _ in range(3):
        esm.put(count=1)
        time.sleep(1.0)
    esm.wait_for(lambda: sum(len(b) for b in numbers(esm.calls(fn))) == 3, what="three records")
    runner.stop()
    assert numbers(esm.calls(fn)) == [[0, 1, 2]]


def test_a_full_batch_does_not_wait_for_the_window(esm: Esm) -> None:
    """AWS: Lambda invokes when "it has gathered a full batch", whichever comes first: a full batch
    goes out at once even with a 300-second window."""
    fn = esm.function("full")
    esm.mapping(fn, BatchSize=5, MaximumBatchingWindowInSeconds=300)
    esm.put(count=5)
    runner = esm.runner()
    runner.start()
    esm.wait_for(lambda: len(esm.calls(fn)) == 1, timeout=60, what="the full batch")
    runner.stop()
    assert numbers(esm.calls(fn)) == [[0, 1, 2, 3, 4]]
