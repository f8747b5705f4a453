"""EMF output of the handler and producer hooks is valid CloudWatch Embedded Metric Format.

The structure checked is the one the CloudWatch EMF specification documents
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
a root ``_aws`` object with an integer epoch-ms ``Timestamp`` and a ``CloudWatchMetrics`` array of
directives, each with a ``Namespace``, ``Dimensions`` (arrays of root member names whose values are
strings) and ``Metrics`` (``{Name, Unit}`` objects naming root members that hold numbers).
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from pipeline.observability import metrics

COUNTERS = {
    "batches": 1,
    "kinesis_records": 10,
    "records_in": 500,
    "written": 490,
    "duplicates_delivery": 4,
    "duplicates_event": 3,
    "quarantined": 3,
    "failed": 0,
    "s3_bytes": 18_000,
    "ddb_requests": 3,
}


def _one_line(buf: io.StringIO) -> dict[str, Any]:
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1, "one EMF document must be exactly one log line"
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    return doc


def _check_spec_structure(doc: dict[str, Any]) -> None:
    # Written out here, independently of metrics.validate, so a bug there cannot hide one here.
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    assert isinstance(meta["CloudWatchMetrics"], list) and meta["CloudWatchMetrics"]
    for directive in meta["CloudWatchMetrics"]:
        assert set(directive) <= {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str) and directive["Namespace"]
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            assert all(isinstance(doc[name], str) for name in dimension_set)
        assert 1 <= len(directive["Metrics"]) <= 100
        for m in directive["Metrics"]:
            assert set(m) <= {"Name", "Unit", "StorageResolution"}
            assert m["Unit"] in metrics.UNITS
            value = doc[m["Name"]]
            values = value if isinstance(value, list) else [value]
            assert values and all(isinstance(v, int | float) for v in values)


def test_batch_metrics_is_one_valid_emf_line_with_the_consumer_dimension() -> None:
    buf = io.StringIO()
    doc = metrics.batch_metrics(
        "lake-writer",
        "shardId-000000000002",
        COUNTERS,
        duration_ms=41.5,
        iterator_age_ms=950.0,
        record_age_ms=1_800.0,
        function="pipeline-lake-writer",
        request_id="r-1",
        out=buf,
    )
    line = _one_line(buf)
    assert line == doc
    _check_spec_structure(line)
    assert metrics.validate(line) == []
    directive = line["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "KinesisPipeline"
    assert directive["Dimensions"] == [["consumer"]]
    assert line["consumer"] == "lake-writer"
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units["BatchDuration"] == units["IteratorAge"] == "Milliseconds"
    assert units["S3Bytes"] == "Bytes" and units["RecordsIn"] == "Count"

    rec = metrics.parse(line)
    assert rec.dimensions == {"consumer": "lake-writer"}
    assert rec.values["RecordsIn"] == 500 and rec.values["RecordsWritten"] == 490
    assert rec.values["RecordsDecoded"] == 497  # records in less the quarantined ones
    assert rec.values["DuplicatesDelivery"] == 4 and rec.values["DuplicatesEvent"] == 3
    assert rec.values["DynamoDBRequests"] == 3 and rec.values["Batches"] == 1
    assert rec.values["IteratorAge"] == 950 and rec.values["RecordAgeMax"] == 1_800
    assert rec.properties == {
        "shard": "shardId-000000000002",
        "function": "pipeline-lake-writer",
        "request_id": "r-1",
    }


def test_producer_metrics_are_valid_emf_and_count_only_their_interval() -> None:
    earlier = {
        "user_records": 1_000,
        "stored": 1_000,
        "kinesis_records": 20,
        "bytes": 50_000,
        "requests": 2,
        "retries": 1,
        "throttles": 1,
        "buffered_ms": 40_000.0,
        "buffered_ms_max": 90.0,
    }
    now = {
        **earlier,
        "user_records": 3_000,
        "stored": 2_990,
        "failed": 10,
        "kinesis_records": 60,
        "bytes": 150_000,
        "requests": 5,
        "retries": 4,
        "throttles": 3,
        "buffered_ms": 139_500.0,
        "buffered_ms_max": 120.0,
        "elapsed": 2.5,
        "last_positions": {"shardId-000000000000": (1, 2)},
    }
    buf = io.StringIO()
    metrics.producer_metrics(now, stream="pipeline-events", since=earlier, out=buf)
    doc = _one_line(buf)
    _check_spec_structure(doc)
    rec = metrics.parse(doc)
    assert rec.dimensions == {"stream": "pipeline-events"}
    assert rec.values == {
        "UserRecords": 2_000,
        "UserRecordsStored": 1_990,
        "UserRecordsFailed": 10,
        "KinesisRecordsPut": 40,
        "BytesPut": 100_000,
        "PutRecordsRequests": 3,
        "Retries": 3,
        "Throttles": 2,
        "AggregationRatio": 50,
        "BufferedTime": 50,  # 99,500 ms of waiting over 1,990 stored records
        "BufferedTimeMax": 120,
    }
    assert rec.units["BytesPut"] == "Bytes" and rec.units["AggregationRatio"] == "None"
    assert rec.units["BufferedTime"] == "Milliseconds"


def test_metrics_can_be_switched_off_with_the_powertools_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    buf = io.StringIO()
    assert metrics.batch_metrics("lake-writer", "s", COUNTERS, 1.0, 0.0, out=buf) is None
    assert buf.getvalue() == ""


@pytest.mark.parametrize(
    ("break_it", "complaint"),
    [
        (lambda d: d.pop("_aws"), "no _aws"),
        (lambda d: d["_aws"].update(Timestamp="yesterday"), "Timestamp"),
        (lambda d: d.pop("consumer"), "dimension 'consumer'"),
        (lambda d: d.update(RecordsIn="many"), "'RecordsIn' needs a number"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0].update(Unit="Parsecs"), "unknown unit"),
        (lambda d: d["_aws"]["CloudWatchMetrics"][0].pop("Namespace"), "Namespace"),
    ],
)
def test_the_validator_names_what_breaks_the_specification(break_it: Any, complaint: str) -> None:
    buf = io.StringIO()
    metrics.batch_metrics("lake-writer", "s", COUNTERS, 1.0, 0.0, out=buf)
    doc = json.loads(buf.getvalue())
    break_it(doc)
    problems = metrics.validate(doc)
    assert any(complaint in p for p in problems), problems
    if "_aws" in doc:
        with pytest.raises(metrics.EmfError):
            metrics.parse(doc)


def test_read_emf_finds_documents_among_other_log_lines(tmp_path: Any) -> None:
    buf = io.StringIO()
    metrics.batch_metrics("state-writer", "shardId-000000000000", {"records_in": 7}, 3.0, 10.0, out=buf)
    metrics.batch_metrics("state-writer", "shardId-000000000001", {"records_in": 5}, 4.0, 20.0, out=buf)
    log = tmp_path / "pipeline-state-writer.log"
    log.write_text(
        "START RequestId: 1 Version: $LATEST\n"
        '{"msg": "batch", "consumer": "state-writer"}\n'
        + buf.getvalue()
        + '{"_aws": {"CloudWatchMetrics": "not a list"}}\n'
        + "END RequestId: 1\nREPORT RequestId: 1\tDuration: 3.00 ms\n"
    )
    found = list(metrics.read_emf([log, tmp_path / "missing.log"]))
    assert [r.properties["shard"] for r in found] == ["shardId-000000000000", "shardId-000000000001"]
    assert [r.values["RecordsIn"] for r in found] == [7, 5]


def test_record_ages_follow_lambda_iterator_age_definition() -> None:
    records = [
        {"kinesis": {"approximateArrivalTimestamp": 100.0}},
        {"kinesis": {"approximateArrivalTimestamp": 104.5}},
    ]
    assert metrics.record_ages_ms(records, now=106.0) == (1_500.0, 6_000.0)
    assert metrics.record_ages_ms([], now=1.0) == (0.0, 0.0)
