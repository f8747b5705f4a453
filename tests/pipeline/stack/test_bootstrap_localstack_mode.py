"""The LocalStack mode of `up`: mappings created disabled, run by the pipeline's own runner."""

from __future__ import annotations

from pipeline import aws
from pipeline.esm.runner import EsmRunner
from pipeline.settings import Settings
from pipeline.stack import inspect
from pipeline.stack.bootstrap import bootstrap
from producers.cli import produce


def test_disabled_mappings_stay_idle_for_others_and_run_with_run_disabled(settings: Settings) -> None:
    bootstrap(settings, enabled=False)
    mappings = aws.client("lambda", settings).list_event_source_mappings()["EventSourceMappings"]
    assert len(mappings) == 2 and {m["State"] for m in mappings} == {"Disabled"}

    produced = produce(settings, 200, customers=20, seed=3, quiet=True)
    assert produced["failed"] == 0
    runner = EsmRunner(settings, settings.state_dir, run_disabled=True)
    try:
        assert runner.run_until_drained(timeout=120), "the runner did not run the disabled mappings"
    finally:
        runner.stop()
    ids = inspect.lake_event_ids(settings)
    assert len(ids) == 200 and max(ids.values()) == 1
    assert sum(item["events"] for item in inspect.state_items(settings).values()) == 200
