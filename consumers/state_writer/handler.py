"""Lambda entry point of the state writer: Kinesis batch → per-customer state in DynamoDB."""

from __future__ import annotations

from typing import Any

from consumers.core.app import build
from consumers.state_writer.sink import StateSink
from pipeline import aws

processor = build("state-writer", lambda s, reg: StateSink(aws.client("dynamodb", s), s.state_table))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Process one batch of one shard; answer with the partial batch response."""
    return processor.process(event)
