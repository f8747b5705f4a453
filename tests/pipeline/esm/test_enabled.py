"""Enabled / disabled mappings."""

from __future__ import annotations

from tests.pipeline.esm.conftest import Esm, numbers


def test_a_disabled_mapping_does_not_poll_until_it_is_enabled(esm: Esm) -> None:
    """AWS: "Enabled – Set to true to enable the event source mapping. Set to false to stop
    processing records. Lambda keeps track of the last record processed and resumes processing from
    that point when the mapping is reenabled." (Kinesis trigger settings). A mapping enabled through
    the API while the runner runs starts polling; one never run starts at its starting position."""
    on = esm.function("on")
    off = esm.function("off")
    esm.mapping(on, BatchSize=10)
    off_uuid = esm.mapping(off, BatchSize=10, Enabled=False)
    esm.put(count=4)
    runner = esm.runner()
    assert runner.run_until_drained(timeout=60)
    assert numbers(esm.calls(on)) == [[0, 1, 2, 3]]
    assert esm.calls(off) == []
    esm.lam.update_event_source_mapping(UUID=off_uuid, Enabled=True)
    esm.wait_for(lambda: len(esm.calls(off)) == 1, what="the enabled mapping's first batch")
    runner.stop()
    assert numbers(esm.calls(off)) == [[0, 1, 2, 3]]
