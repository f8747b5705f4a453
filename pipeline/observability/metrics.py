"""CloudWatch Embedded Metric Format (EMF) from the handler and the producer, and a reader for it.

The documents are built by Powertools for AWS Lambda's EMF provider (the Lambda ecosystem's
metrics library; it validates names, units and limits), one document per batch or per producer
flush, written as one line to stdout: in Lambda, CloudWatch Logs turns it into metrics with no
API call; locally, the runtime sends the function's stdout to ``<state>/logs/<function>.log``,
where ``read_emf`` and the run report find it.

>>> batch_metrics("lake-writer", "shardId-000000000000", {"records_in": 500, "written": 498},
...               duration_ms=41.2, iterator_age_ms=950)             # doctest: +SKIP
{"_aws":{"Timestamp":...,"CloudWatchMetrics":[{"Namespace":"KinesisPipeline",...}]},...}
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pipeline.observability.logs import bound

if TYPE_CHECKING:
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

NAMESPACE = "KinesisPipeline"

# Handler counters (the processor's names) → (metric name, unit). Unknown counters are ignored so
# a new counter never becomes an unplanned (billed) custom metric.
BATCH_METRICS: dict[str, tuple[str, str]] = {
    "kinesis_records": ("KinesisRecords", "Count"),
    "records_in": ("RecordsIn", "Count"),
    "decoded": ("RecordsDecoded", "Count"),
    "written": ("RecordsWritten", "Count"),
    "duplicates_delivery": ("DuplicatesDelivery", "Count"),
    "duplicates_event": ("DuplicatesEvent", "Count"),
    "quarantined": ("Quarantined", "Count"),
    "failed": ("BatchItemFailures", "Count"),
    "s3_objects": ("S3Objects", "Count"),
    "s3_bytes": ("S3Bytes", "Bytes"),
    "ddb_requests": ("DynamoDBRequests", "Count"),
}

# Producer counters (``KinesisProducer.stats``, cumulative) → (metric name, unit); emitted as deltas.
PRODUCER_METRICS: dict[str, tuple[str, str]] = {
    "user_records": ("UserRecords", "Count"),
    "stored": ("UserRecordsStored", "Count"),
    "failed": ("UserRecordsFailed", "Count"),
    "expired": ("UserRecordsExpired", "Count"),
    "kinesis_records": ("KinesisRecordsPut", "Count"),
    "bytes": ("BytesPut", "Bytes"),
    "requests": ("PutRecordsRequests", "Count"),
    "retries": ("Retries", "Count"),
    "throttles": ("Throttles", "Count"),
    "mispredicted": ("ShardMispredictions", "Count"),
}

# Valid EMF units (CloudWatch's StandardUnit values).
UNITS = frozenset(
    "Seconds Microseconds Milliseconds Bytes Kilobytes Megabytes Gigabytes Terabytes Bits Kilobits "
    "Megabits Gigabits Terabits Percent Count Bytes/Second Kilobytes/Second Megabytes/Second "
    "Gigabytes/Second Terabytes/Second Bits/Second Kilobits/Second Megabits/Second Gigabits/Second "
    "Terabits/Second Count/Second None".split()
)


def _provider(dimensions: Mapping[str, str]) -> AmazonCloudWatchEMFProvider:
    # Imported here: reading EMF back (status, reports) must not need the Lambda-side library.
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
        AmazonCloudWatchEMFProvider,
    )

    # A fresh provider per document: Powertools' ``Metrics`` shares its metric set process-wide,
    # which would mix one consumer's batch into another's when both run in one process (tests).
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE
    p = AmazonCloudWatchEMFProvider(namespace=namespace, metric_set={}, dimension_set={}, metadata_set={})
    for k, v in dimensions.items():
        p.add_dimension(name=k, value=str(v))
    return p


def _emit(p: AmazonCloudWatchEMFProvider, out: TextIO | None) -> dict[str, Any] | None:
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    if not p.metric_set or is_metrics_disabled():
        return None
    doc = dict(p.serialize_metric_set())
    stream = out or sys.stdout
    # One write per document: Lambda makes one log event of each line, and a document split across
    # two events is no longer valid EMF.
    stream.write(json.dumps(doc, separators=(",", ":")) + "\n")
    stream.flush()
    return doc


def record_ages_ms(records: Iterable[Mapping[str, Any]], now: float | None = None) -> tuple[float, float]:
    """(iterator age, oldest record age) in ms of a Lambda Kinesis event's records.

    Iterator age is what Lambda reports as ``IteratorAge``: the age of the batch's last record.
    """
    now = time.time() if now is None else now
    stamps = [
        float(r["kinesis"]["approximateArrivalTimestamp"])
        for r in records
        if r.get("kinesis", {}).get("approximateArrivalTimestamp") is not None
    ]
    if not stamps:
        return 0.0, 0.0
    return max(0.0, (now - stamps[-1]) * 1000), max(0.0, (now - min(stamps)) * 1000)


def batch_metrics(
    consumer: str,
    shard: str,
    counters: Mapping[str, int | float],
    duration_ms: float,
    iterator_age_ms: float,
    *,
    record_age_ms: float | None = None,
    function: str | None = None,
    request_id: str | None = None,
    out: TextIO | None = None,
) -> dict[str, Any] | None:
    """Emit one EMF document for one handler batch; return it (None when metrics are disabled).

    Dimension: ``consumer``. Shard, function and request id (default: the one ``logs.bind`` holds)
    are properties, searchable in Logs Insights without multiplying billed metrics by the shard count.
    """
    p = _provider({"consumer": consumer})
    p.add_metric(name="Batches", unit="Count", value=1)
    for key, (name, unit) in BATCH_METRICS.items():
        if key in counters:
            p.add_metric(name=name, unit=unit, value=float(counters[key]))
    if "decoded" not in counters and "records_in" in counters:
        p.add_metric(
            name="RecordsDecoded",
            unit="Count",
            value=float(counters["records_in"]) - float(counters.get("quarantined", 0)),
        )
    p.add_metric(name="BatchDuration", unit="Milliseconds", value=float(duration_ms))
    p.add_metric(name="IteratorAge", unit="Milliseconds", value=float(iterator_age_ms))
    if record_age_ms is not None:
        p.add_metric(name="RecordAgeMax", unit="Milliseconds", value=float(record_age_ms))
    p.add_metadata(key="shard", value=shard)
    function = function or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    if function:
        p.add_metadata(key="function", value=function)
    request_id = request_id or bound().get("request_id")
    if request_id:
        p.add_metadata(key="request_id", value=request_id)
    return _emit(p, out)


def producer_metrics(
    stats: Mapping[str, Any],
    *,
    stream: str = "",
    since: Mapping[str, Any] | None = None,
    out: TextIO | None = None,
) -> dict[str, Any] | None:
    """Emit one EMF document for the producer's statistics; return it (None when nothing to say).

    ``stats`` are cumulative (``KinesisProducer.stats``); pass the previously emitted snapshot as
    ``since`` when emitting periodically, so each document holds only its own interval's counts.
    ``BufferedTime`` is the mean wait of a stored record in the interval; ``BufferedTimeMax`` the
    longest since the producer started. Dimension: ``stream``.
    """
    p = _provider({"stream": stream or os.environ.get("PIPELINE_STREAM", "pipeline-events")})
    for key, (name, unit) in PRODUCER_METRICS.items():
        if key not in stats:
            continue
        value = float(stats[key]) - float((since or {}).get(key, 0))
        p.add_metric(name=name, unit=unit, value=value)

    def delta(key: str) -> float:
        return float(stats.get(key, 0)) - float((since or {}).get(key, 0))

    user, kin = delta("user_records"), delta("kinesis_records")
    if kin > 0:
        p.add_metric(name="AggregationRatio", unit="None", value=user / kin)
    # ``buffered_ms`` sums every stored record's wait; the KPL reports the mean per record.
    stored = delta("stored") if "stored" in stats else user
    if "buffered_ms" in stats and stored > 0:
        p.add_metric(name="BufferedTime", unit="Milliseconds", value=delta("buffered_ms") / stored)
    if "buffered_ms_max" in stats:
        p.add_metric(name="BufferedTimeMax", unit="Milliseconds", value=float(stats["buffered_ms_max"]))
    return _emit(p, out)


# -- reading EMF back ----------------------------------------------------------------------------
class EmfError(ValueError):
    """A document that claims to be EMF (has ``_aws``) but breaks the specification."""


def validate(doc: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``doc`` as an EMF document (empty list when it is valid).

    Follows the CloudWatch EMF specification: ``_aws`` holds an integer ``Timestamp`` (ms) and a
    ``CloudWatchMetrics`` array of directives; each directive has a ``Namespace`` string, a
    ``Dimensions`` array of arrays of at most 30 strings, each naming a root member whose value is
    a string, and a ``Metrics`` array of at most 100 ``{Name, Unit?, StorageResolution?}`` objects,
    each naming a root member that is a number or an array of at most 100 numbers.
    """
    problems: list[str] = []
    meta = doc.get("_aws")
    if not isinstance(meta, Mapping):
        return ["no _aws object"]
    ts = meta.get("Timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
        problems.append(f"_aws.Timestamp must be a non-negative integer of epoch ms, not {ts!r}")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list):
        return problems + ["_aws.CloudWatchMetrics must be an array"]
    for i, d in enumerate(directives):
        where = f"CloudWatchMetrics[{i}]"
        if not isinstance(d, Mapping):
            problems.append(f"{where} is not an object")
            continue
        ns = d.get("Namespace")
        if not isinstance(ns, str) or not 1 <= len(ns) <= 255:
            problems.append(f"{where}.Namespace must be a string of 1-255 characters")
        dims = d.get("Dimensions")
        if not isinstance(dims, list):
            problems.append(f"{where}.Dimensions must be an array")
            dims = []
        for ds in dims:
            if not isinstance(ds, list) or len(ds) > 30:
                problems.append(f"{where}: a dimension set must be an array of at most 30 names")
                continue
            for name in ds:
                if not isinstance(name, str) or not isinstance(doc.get(name), str):
                    problems.append(f"{where}: dimension {name!r} needs a string member on the root")
        metrics = d.get("Metrics")
        if not isinstance(metrics, list) or len(metrics) > 100:
            problems.append(f"{where}.Metrics must be an array of at most 100 metric definitions")
            continue
        for m in metrics:
            name = m.get("Name") if isinstance(m, Mapping) else None
            if not isinstance(name, str) or not 1 <= len(name) <= 255:
                problems.append(f"{where}: metric definition without a valid Name: {m!r}")
                continue
            unit = m.get("Unit", "None")
            if unit not in UNITS:
                problems.append(f"{where}: metric {name!r} has an unknown unit {unit!r}")
            if m.get("StorageResolution", 60) not in (1, 60):
                problems.append(f"{where}: metric {name!r} StorageResolution must be 1 or 60")
            value = doc.get(name)
            values = value if isinstance(value, list) else [value]
            if (
                not values
                or len(values) > 100
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            ):
                problems.append(f"{where}: metric {name!r} needs a number (or ≤100 numbers) on the root")
    return problems


@dataclass(frozen=True, slots=True)
class EmfRecord:
    """One EMF document read back: when, which namespace and dimensions, metric values, properties."""

    timestamp: datetime
    namespace: str
    dimensions: dict[str, str]
    values: dict[str, float]
    units: dict[str, str]
    properties: dict[str, Any] = field(default_factory=dict)


def parse(doc: Mapping[str, Any]) -> EmfRecord:
    """An ``EmfRecord`` of a valid EMF document; ``EmfError`` says what is wrong otherwise."""
    problems = validate(doc)
    if problems:
        raise EmfError("; ".join(problems))
    meta = doc["_aws"]
    d0 = meta["CloudWatchMetrics"][0] if meta["CloudWatchMetrics"] else {"Namespace": "", "Dimensions": []}
    dim_names = {n for ds in d0.get("Dimensions", []) for n in ds}
    metric_units = {m["Name"]: m.get("Unit", "None") for d in meta["CloudWatchMetrics"] for m in d["Metrics"]}
    values: dict[str, float] = {}
    for name in metric_units:
        v = doc[name]
        # An array means several samples of one metric; summing is right for counts and lets
        # callers average durations by dividing by the sample count if they need to.
        values[name] = float(sum(v)) if isinstance(v, list) else float(v)
    props = {k: v for k, v in doc.items() if k != "_aws" and k not in metric_units and k not in dim_names}
    return EmfRecord(
        timestamp=datetime.fromtimestamp(meta["Timestamp"] / 1000, tz=UTC),
        namespace=str(d0["Namespace"]),
        dimensions={n: str(doc[n]) for n in sorted(dim_names)},
        values=values,
        units=metric_units,
        properties=props,
    )


def parse_line(line: str) -> EmfRecord | None:
    """The EMF document of one log line, or None when the line is not EMF at all."""
    line = line.strip()
    if not line.startswith("{") or '"_aws"' not in line:
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or "_aws" not in doc:
        return None
    return parse(doc)


def read_emf(paths: Iterable[Path], namespace: str | None = None) -> Iterator[EmfRecord]:
    """Every valid EMF document in the given log files (invalid ones are skipped), in file order."""
    for path in paths:
        try:
            f = path.open(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        with f:
            for line in f:
                try:
                    rec = parse_line(line)
                except EmfError:
                    continue
                if rec is not None and (namespace is None or rec.namespace == namespace):
                    yield rec
