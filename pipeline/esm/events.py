"""Lambda events and on-failure messages of the exact shape AWS sends for Kinesis."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

# Everything in a Lambda Kinesis record except the data itself, measured for the 6 MB cap.
RECORD_OVERHEAD = 520


def lambda_record(
    record: dict[str, Any], shard_id: str, stream_arn: str, region: str, role_arn: str
) -> dict[str, Any]:
    """One element of ``Records`` for a Kinesis record returned by GetRecords."""
    arrival = record.get("ApproximateArrivalTimestamp")
    ts = arrival.timestamp() if isinstance(arrival, datetime) else float(arrival or 0)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record["PartitionKey"],
            "sequenceNumber": record["SequenceNumber"],
            "data": _base64(record["Data"]),
            "approximateArrivalTimestamp": ts,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{record['SequenceNumber']}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": role_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


def window_event(
    start: float,
    end: float,
    state: dict[str, Any],
    shard_id: str,
    stream_arn: str,
    final: bool,
    early: bool = False,
) -> dict[str, Any]:
    """The tumbling-window fields AWS adds to a Kinesis event (``window``, ``state``, ...)."""
    return {
        "window": {"start": _iso_seconds(start), "end": _iso_seconds(end)},
        "state": state,
        "shardId": shard_id,
        "eventSourceARN": stream_arn,
        "isFinalInvokeForWindow": final,
        "isWindowTerminatedEarly": early,
    }


def _iso_seconds(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _base64(data: bytes | str) -> str:
    """A record's data as base64 text: bytes are encoded; text is base64 already (a client that
    leaves blobs as the service sent them, ``pipeline.aws.client(raw_blobs=True)``)."""
    return data if isinstance(data, str) else base64.b64encode(data).decode("ascii")


def data_bytes(record: dict[str, Any]) -> int:
    """The size of a GetRecords record's data in bytes (decoded, if it is base64 text)."""
    data = record["Data"]
    if isinstance(data, str):
        return len(data) // 4 * 3 - data[-2:].count("=")
    return len(data)


def record_size(record: dict[str, Any]) -> int:
    """Bytes one GetRecords record adds to the invocation payload."""
    data = record["Data"]
    encoded = len(data) if isinstance(data, str) else (len(data) + 2) // 3 * 4
    return encoded + len(record["PartitionKey"]) + RECORD_OVERHEAD


def _iso(ts: Any) -> str:
    if isinstance(ts, datetime):
        return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return (
        datetime.fromtimestamp(float(ts or 0), tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def failure_message(
    records: Sequence[dict[str, Any]],
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    condition: str,
    invoke_count: int,
    error_type: str | None,
) -> str:
    """The on-failure destination message body (``KinesisBatchInfo``) for a discarded batch."""
    body = {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        # Lambda reports how the function failed ("Unhandled": it raised), not the exception type.
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"}
        | ({"functionError": "Unhandled"} if error_type else {}),
        "version": "1.0",
        "timestamp": datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "KinesisBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0]["SequenceNumber"],
            "endSequenceNumber": records[-1]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": _iso(records[0].get("ApproximateArrivalTimestamp")),
            "approximateArrivalOfLastRecord": _iso(records[-1].get("ApproximateArrivalTimestamp")),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }
    return json.dumps(body)
