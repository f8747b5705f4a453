"""Lambda entry point of the lake writer: Kinesis batch → Avro container files in S3."""

from __future__ import annotations

from typing import Any

from consumers.core.app import build
from consumers.lake_writer.sink import LakeSink
from pipeline import aws

processor = build(
    "lake-writer",
    lambda s, reg: LakeSink(aws.client("s3", s), s.bucket, s.lake_prefix, reg.reader, s.lake_codec),
)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Process one batch of one shard; answer with the partial batch response."""
    return processor.process(event)
