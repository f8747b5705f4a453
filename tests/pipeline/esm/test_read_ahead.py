"""The runner reads ahead of delivery only so far: its memory does not grow with a backlog."""

from __future__ import annotations

import threading
import time

from tests.pipeline.esm.conftest import Esm, numbers


def test_the_reader_waits_once_the_records_read_ahead_reach_the_byte_bound(unlimited_esm: Esm) -> None:
    """While the first batch's function sleeps, 2 MB arrive in small steps: the reader stops reading
    once 300 KB are read and not done, then reads the rest as batches complete, in order."""
    esm = unlimited_esm
    fn = esm.function("read-ahead", env={"SLEEP_SECONDS": "4"})
    esm.mapping(fn, BatchSize=1)
    esm.put(["sleep"])
    runner = esm.runner()
    runner.read_ahead_bytes = 300_000
    runner.start()
    esm.wait_for(lambda: any(c.busy[0] for c in runner.shards.values()), what="the first, sleeping batch")
    consumer = next(iter(runner.shards.values()))
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], consumer.outstanding_bytes)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for _ in range(10):  # 2 records of 100 KB each 0.25 s: two or three per read
            esm.put(count=2, data=lambda n: b'{"n": %d, "pad": "%s"}' % (n, b"x" * 100_000))
            time.sleep(0.25)
        assert esm.calls(fn) == [], "the first batch is still running"
        assert 300_000 <= peak[0] <= 300_000 + 4 * 100_100, peak[0]
    finally:
        stop.set()
        sampler.join()
    assert runner.run_until_drained(timeout=60)
    runner.stop()
    assert numbers(esm.calls(fn)) == [[n] for n in range(21)]
