"""MaximumRetryAttempts."""

from __future__ import annotations

from tests.pipeline.esm.conftest import Esm, numbers


def test_a_failing_batch_is_retried_then_discarded_and_the_shard_moves_on(esm: Esm) -> None:
    """AWS: MaximumRetryAttempts "Discard records after the specified number of retries."; "If the
    error handling measures fail, Lambda discards the records and continues processing batches
    from the stream." (kinesis-on-failure-destination)."""
    fn = esm.function("retries")
    esm.mapping(fn, BatchSize=2, MaximumRetryAttempts=2)
    esm.put(["", "fail", "", ""])
    runner = esm.drain()
    # One attempt and two retries of the failing batch, then the next batch.
    assert numbers(esm.calls(fn)) == [[0, 1], [0, 1], [0, 1], [2, 3]]
    st = runner.stats[runner.mappings[0].uuid]
    assert (st.function_errors, st.discarded_batches, st.records) == (3, 1, 2)


def test_with_infinite_retries_a_failing_batch_blocks_its_shard(esm: Esm) -> None:
    """AWS: "-1 means infinite: failed records are retried until the record expires" (ESM
    parameters), so nothing after the failing record is delivered meanwhile."""
    fn = esm.function("forever")
    esm.mapping(fn, BatchSize=1, MaximumRetryAttempts=-1)
    esm.put(["fail", ""])
    runner = esm.runner()
    runner.start()
    esm.wait_for(lambda: len(esm.calls(fn)) >= 4, what="four attempts")
    runner.stop()
    assert {n for b in numbers(esm.calls(fn)) for n in b} == {0}
