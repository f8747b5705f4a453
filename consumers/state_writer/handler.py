"""Lambda entry point of the state writer: Kinesis batch → per-customer state in DynamoDB."""

from __future__ import annotations

import os
from typing import Any

from consumers.core.app import build
from consumers.state_writer.sink import StateSink

# ``update`` (one conditional UpdateItem per customer) or ``transact`` (100 per request, 2× WCU).
processor = build(
    "state-writer",
    lambda s, reg, c: StateSink(
        c.dynamodb, s.state_table, mode=os.environ.get("PIPELINE_STATE_WRITES", "update")
    ),
)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Process one batch of one shard; answer with the partial batch response."""
    return processor.process(event)
