"""Poison records go to S3 with their raw bytes, position, reason and error class."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from consumers.core.records import Poison
from pipeline.codecs.positions import short


class Quarantine:
    """Writes one JSON object per poison record under a deterministic key (rewrites are harmless).

    Key: ``{prefix}/{consumer}/shard={shard}/{sequence}_{sub}.json``; body: consumer, shard,
    position, sequence and sub-sequence number, partition key, ``reason`` (machine-readable),
    ``error_class``, ``message`` and the raw bytes in base64.

    Example:
        >>> q = Quarantine(s3, "pipeline-lake", "quarantine/v1", "lake-writer")
        >>> q.put("shardId-000000000000", poison)
    """

    def __init__(self, s3: Any, bucket: str, prefix: str, consumer: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.consumer = consumer

    def key(self, shard_id: str, poison: Poison) -> str:
        """Where one poison record is kept."""
        return f"{self.prefix}/{self.consumer}/shard={shard_id}/{short(poison.position)}.json"

    def put(self, shard_id: str, records: Sequence[Poison]) -> None:
        """Store every poison record of a batch (before the checkpoint passes them)."""
        for p in records:
            body = {
                "consumer": self.consumer,
                "shard_id": shard_id,
                "position": p.position,
                "sequence_number": p.sequence_number,
                "sub_sequence_number": p.sub_sequence,
                "partition_key": p.partition_key,
                "reason": p.reason,
                "error_class": p.error_class,
                "message": p.message,
                "raw_base64": base64.b64encode(p.raw).decode("ascii"),
            }
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key(shard_id, p),
                Body=json.dumps(body).encode(),
                ContentType="application/json",
            )
