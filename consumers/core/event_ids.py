"""Producer duplicates: the same event id stored twice under two sequence numbers.

Modes: ``off``; ``batch`` (first occurrence within the batch wins, free); ``table`` (a DynamoDB
event-id store with a TTL at least as long as the replay horizon; one conditional write per event).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from consumers.core.records import UserRecord


def within_batch(records: Sequence[UserRecord]) -> list[UserRecord]:
    """Keep the first record of each event id."""
    seen: set[str] = set()
    out = []
    for r in records:
        eid = str(r.event["event_id"])
        if eid in seen:
            continue
        seen.add(eid)
        out.append(r)
    return out


class EventIdStore:
    """Remembers which position first carried each event id, for ``ttl_seconds``."""

    def __init__(self, dynamodb: Any, table: str, consumer: str, ttl_seconds: int) -> None:
        self.ddb = dynamodb
        self.table = table
        self.consumer = consumer
        self.ttl = ttl_seconds

    def filter(self, records: Sequence[UserRecord]) -> list[UserRecord]:
        """Drop records whose event id was first seen at another position."""
        out = []
        expires = str(int(time.time()) + self.ttl)
        for r in within_batch(records):
            key = f"{self.consumer}#{r.event['event_id']}"
            try:
                self.ddb.put_item(
                    TableName=self.table,
                    Item={
                        "event_id": {"S": key},
                        "position": {"S": r.position},
                        "expires_at": {"N": expires},
                    },
                    ConditionExpression="attribute_not_exists(event_id) OR #p = :p",
                    ExpressionAttributeNames={"#p": "position"},
                    ExpressionAttributeValues={":p": {"S": r.position}},
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue  # first seen at another position: a producer duplicate
                raise
            out.append(r)
        return out
