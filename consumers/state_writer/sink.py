"""The state sink: per-customer totals in DynamoDB, one conditional update per customer per batch.

Each item remembers the last position applied to it; an update applies only if that position is
below the first event it carries. When it is not (a retry with other batch boundaries), the item's
position tells which of the events are new, and only those are applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from consumers.core.checkpoint import Intent
from consumers.core.records import UserRecord
from consumers.core.sink import IntentHook, PartialWrite
from consumers.state_writer.model import Delta


class StateSink:
    """Upserts coalesced per key, conditional on the item's last applied position."""

    def __init__(self, dynamodb: Any, table: str, workers: int = 8) -> None:
        self.ddb = dynamodb
        self.table = table
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="state-sink")
        self.requests = 0

    def resolve_intent(self, shard_id: str, intent: Intent) -> bool:
        """The state sink never announces intents: its updates are idempotent by themselves."""
        return False

    def _update(self, key: str, records: Sequence[UserRecord]) -> int:
        pending = list(records)
        while pending:
            delta = Delta()
            for r in pending:
                delta.add(r.event)
            self.requests += 1
            try:
                self.ddb.update_item(
                    TableName=self.table,
                    Key={"customer_id": {"S": key}},
                    UpdateExpression=(
                        "ADD events :e, orders_created :c, orders_cancelled :x, paid_cents :p "
                        "SET last_position = :last, last_event_type = :t, last_event_time = :tm"
                    ),
                    ConditionExpression="attribute_not_exists(last_position) OR last_position < :first",
                    ExpressionAttributeValues={
                        ":e": {"N": str(delta.events)},
                        ":c": {"N": str(delta.orders_created)},
                        ":x": {"N": str(delta.orders_cancelled)},
                        ":p": {"N": str(delta.paid_cents)},
                        ":last": {"S": pending[-1].position},
                        ":first": {"S": pending[0].position},
                        ":t": {"S": delta.last_event_type},
                        ":tm": {"N": str(delta.last_event_time)},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return len(pending)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                item = exc.response.get("Item")
                if item is None:
                    self.requests += 1
                    item = self.ddb.get_item(
                        TableName=self.table, Key={"customer_id": {"S": key}}, ConsistentRead=True
                    ).get("Item", {})
                applied = item.get("last_position", {}).get("S", "")
                pending = [r for r in pending if r.position > applied]
        return 0

    def write(self, shard_id: str, records: Sequence[UserRecord], announce: IntentHook) -> int:
        """Apply every customer's events; on errors raise ``PartialWrite`` at the earliest one."""
        groups: dict[str, list[UserRecord]] = {}
        for r in records:
            groups.setdefault(str(r.event["customer_id"]), []).append(r)
        futures = {key: self.pool.submit(self._update, key, recs) for key, recs in groups.items()}
        written = 0
        failed: list[tuple[UserRecord, BaseException]] = []
        for key, fut in futures.items():
            try:
                written += fut.result()
            except Exception as exc:  # any error of one key's update: report the earliest
                failed.append((groups[key][0], exc))
        if failed:
            first, cause = min(failed, key=lambda f: f[0].position)
            raise PartialWrite(first, cause)
        return written
