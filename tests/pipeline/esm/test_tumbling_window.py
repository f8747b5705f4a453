"""TumblingWindowInSeconds."""

from __future__ import annotations

import json

from tests.pipeline.esm.conftest import WINDOW, Esm


def test_state_is_carried_through_the_window_and_handed_over_at_its_end(esm: Esm) -> None:
    """AWS: "Each invocation receives a state." ... "Lambda passes the state into the next
    invocation"; "At the end of the window, the flag isFinalInvokeForWindow is set to true to
    indicate that this is the final state and that it's ready for processing." (services-kinesis-
    windows). Windows are aligned intervals of the configured length."""
    fn = esm.function("tumbling", handler=WINDOW)
    esm.mapping(fn, BatchSize=2, TumblingWindowInSeconds=2)
    seqs = esm.put(count=5)
    runner = esm.runner()
    runner.start()
    path = esm.out / "window.jsonl"

    def finals() -> list[dict]:
        lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        return [x for x in lines if x["isFinalInvokeForWindow"]]

    esm.wait_for(lambda: sum(f["state"].get("count", 0) for f in finals()) == 5, what="final invocations")
    runner.stop()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert sorted(s for x in lines for s in x["records"]) == sorted(seqs, key=int)
    for x in lines:
        assert x["shardId"] == "shardId-000000000000" and x["eventSourceARN"] == esm.stream_arn
        assert x["isWindowTerminatedEarly"] is False
        start, end = x["window"]["start"], x["window"]["end"]
        assert start < end and start.endswith("Z")
    # Within a window each invocation gets the state the previous one returned, and the final
    # invocation (no records) gets the total.
    by_window: dict[str, list[dict]] = {}
    for x in lines:
        by_window.setdefault(x["window"]["start"], []).append(x)
    for calls in by_window.values():
        count = 0
        for x in calls:
            assert x["state"].get("count", 0) == count
            count += len(x["records"])
        assert calls[-1]["isFinalInvokeForWindow"] and calls[-1]["records"] == []
        assert all(not x["isFinalInvokeForWindow"] for x in calls[:-1])
