"""Provisioned concurrency: environments initialised before the first event."""

from __future__ import annotations

from pipeline.esm.runner import PROVISIONED_TAG
from tests.pipeline.esm.conftest import Esm


def test_provisioned_environments_are_ready_before_any_record_and_serve_warm(esm: Esm) -> None:
    """AWS: "Provisioned concurrency is the number of pre-initialized execution environments you
    want to allocate to your function. These execution environments are prepared to respond
    immediately to incoming function requests." (moto has no provisioned-concurrency API; the
    local stack reads the count from the function tag ``pipeline:provisioned-concurrency``.)"""
    fn = esm.function("warm", tags={PROVISIONED_TAG: "2"})
    esm.mapping(fn, BatchSize=1)
    runner = esm.runner()
    runner.load_mappings()
    inits = sorted(p.name for p in esm.out.glob(f"init-{fn}-*"))
    assert len(inits) == 2, "two environments initialised before any event"
    esm.put(count=3)
    assert runner.run_until_drained(timeout=60)
    runner.stop()
    calls = esm.calls(fn)
    assert len(calls) == 3
    assert {f"init-{fn}-{c['pid']}" for c in calls} <= set(inits)
    assert runner.stats[runner.mappings[0].uuid].cold_starts == 0
    assert sorted(p.name for p in esm.out.glob(f"init-{fn}-*")) == inits
