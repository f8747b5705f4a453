"""Lambda entry point of the state writer: Kinesis batch → per-customer state in DynamoDB."""

from __future__ import annotations

from typing import Any

from pipeline.coldstart import collector_paused

# Everything the cold start imports and builds lives as long as the execution environment.
with collector_paused():
    from consumers.core.app import build
    from consumers.state_writer.sink import StateSink
    from pipeline import aws
    from pipeline.observability.logs import bind

    # ``update`` (one conditional UpdateItem per customer) or ``transact`` (100 per request, 2× WCU).
    # The sink's writes use a client without botocore's client-side parameter validation: their
    # shape is fixed, and the tests drive the same sink through validating clients (tests/consumers).
    processor = build(
        "state-writer",
        lambda s, reg, c: StateSink(
            aws.client("dynamodb", s, validate=False), s.state_table, mode=s.state_writes
        ),
    )


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Process one batch of one shard; answer with the partial batch response."""
    with bind(
        request_id=getattr(context, "aws_request_id", None), function=getattr(context, "function_name", None)
    ):
        return processor.process(event)
