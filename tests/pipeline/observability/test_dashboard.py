"""The CloudWatch dashboard graphs exactly the metrics the handlers and the producer emit."""

from __future__ import annotations

import io
import json
from typing import Any

from pipeline.observability import dashboard, metrics


def _emitted() -> dict[str, set[str]]:
    """Metric names per dimension name, as the emitters actually write them."""
    buf = io.StringIO()
    counters = {k: 1 for k in metrics.BATCH_METRICS}
    metrics.batch_metrics("lake-writer", "s", counters, 1.0, 1.0, record_age_ms=1.0, out=buf)
    stats = {k: 2 for k in metrics.PRODUCER_METRICS} | {"buffered_ms": 10.0, "buffered_ms_max": 9.0}
    metrics.producer_metrics(stats, stream="pipeline-events", out=buf)
    out: dict[str, set[str]] = {}
    for line in buf.getvalue().splitlines():
        rec = metrics.parse(json.loads(line))
        (dim,) = rec.dimensions
        out.setdefault(dim, set()).update(rec.values)
    return out


def _metric_rows(body: dict[str, Any]) -> list[list[Any]]:
    return [row for w in body["widgets"] if w["type"] == "metric" for row in w["properties"]["metrics"]]


def test_dashboard_body_is_json_with_every_placeholder_filled() -> None:
    text = dashboard.body(region="eu-west-1", stream_name="prod-events", lake_function="prod-lake-writer")
    assert "${" not in text
    parsed = json.loads(text)
    assert all(w["properties"]["region"] == "eu-west-1" for w in parsed["widgets"] if w["type"] == "metric")
    rows = _metric_rows(parsed)
    assert ["AWS/Lambda", "IteratorAge", "FunctionName", "prod-lake-writer"] in [r[:4] for r in rows]
    template = dashboard.TEMPLATE.read_text()
    for name in dashboard.VARIABLES:
        assert "${" + name + "}" in template, f"unused variable {name}"


def test_every_custom_metric_on_the_dashboard_is_emitted_with_that_dimension() -> None:
    emitted = _emitted()
    rows = _metric_rows(json.loads(dashboard.body("us-east-1", "pipeline-events")))
    custom = [r for r in rows if r[0] == metrics.NAMESPACE]
    assert len(custom) >= 20
    for _ns, name, dim, value, *_ in custom:
        assert name in emitted.get(dim, set()), f"{name} by {dim} is on the dashboard but never emitted"
        assert value in ("lake-writer", "state-writer", "pipeline-events")
    graphed = {(r[2], r[1]) for r in custom}
    for key in ("RecordsIn", "IteratorAge", "BatchDuration", "Quarantined", "DuplicatesDelivery", "S3Bytes"):
        assert ("consumer", key) in graphed
    for key in ("UserRecords", "KinesisRecordsPut", "Retries", "Throttles"):
        assert ("stream", key) in graphed
