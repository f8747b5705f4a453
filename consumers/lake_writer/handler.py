"""Lambda entry point of the lake writer: Kinesis batch → Avro container files and raw archive in S3."""

from __future__ import annotations

from typing import Any

from pipeline.coldstart import collector_paused

# Everything the cold start imports and builds lives as long as the execution environment.
with collector_paused():
    from consumers.core.app import build
    from consumers.lake_writer.container import register_zstandard_reader
    from consumers.lake_writer.sink import LakeSink
    from pipeline.observability.logs import bind

    register_zstandard_reader()

    processor = build(
        "lake-writer",
        lambda s, reg, c: LakeSink(c.s3, s.bucket, s.lake_prefix, reg.reader, s.lake_codec, s.raw_prefix),
    )


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Process one batch of one shard; answer with the partial batch response."""
    with bind(
        request_id=getattr(context, "aws_request_id", None), function=getattr(context, "function_name", None)
    ):
        return processor.process(event)
