"""History records as the replay moves them: one Kinesis record of one shard, wherever it came from."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.replay.errors import ReplayError


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kinesis record (possibly a KPL aggregate) exactly as it was stored in the stream."""

    shard_id: str
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: float  # approximate arrival timestamp, seconds since the epoch
    origin: str = "stream"  # "stream" or "archive"

    @property
    def seq(self) -> int:
        """The sequence number as an integer (sequence numbers compare numerically)."""
        return int(self.sequence_number)

    def as_get_records(self) -> dict[str, Any]:
        """The record in the shape GetRecords returns it (what ``lambda_record`` takes)."""
        return {
            "SequenceNumber": self.sequence_number,
            "PartitionKey": self.partition_key,
            "Data": self.data,
            "ApproximateArrivalTimestamp": datetime.fromtimestamp(self.arrival, tz=UTC),
        }


def from_get_records(shard_id: str, record: Mapping[str, Any]) -> RawRecord:
    """A GetRecords element as a ``RawRecord``."""
    arrival = record.get("ApproximateArrivalTimestamp")
    ts = arrival.timestamp() if isinstance(arrival, datetime) else float(arrival or 0)
    return RawRecord(shard_id, str(record["SequenceNumber"]), record["PartitionKey"], record["Data"], ts)


def from_lambda(record: Mapping[str, Any], where: str) -> RawRecord:
    """A Lambda Kinesis record (one archive line) as a ``RawRecord``; ``where`` names it in errors."""
    try:
        k = record["kinesis"]
        shard_id = str(record["eventID"]).rsplit(":", 1)[0]
        data = base64.b64decode(k["data"], validate=True)
        return RawRecord(
            shard_id,
            str(k["sequenceNumber"]),
            str(k["partitionKey"]),
            data,
            float(k.get("approximateArrivalTimestamp") or 0.0),
            "archive",
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ReplayError(
            f"{where} holds a line that is not a Lambda Kinesis record ({type(exc).__name__}: {exc})"
        ) from None
