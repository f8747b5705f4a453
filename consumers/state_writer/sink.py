"""The state sink: per-customer totals in DynamoDB, coalesced per key, exactly once.

Each item remembers the last position applied to it (``last_position``, fixed-width string). An
update carries a customer's run of events and applies only if the item's position is below the
run's first event. When it is not (a retry with other batch boundaries), the position the failed
condition hands back says which events are new; only those are applied, in one more request.
This is idempotent without the checkpoint's help because one customer's events live on one shard
lineage, so its positions only grow.

Two write modes:

- ``update`` (default): one conditional UpdateItem per customer, run in parallel threads;
  1 WCU per item (≤ 1 KB);
- ``transact``: TransactWriteItems of up to 100 conditional updates; 100× fewer requests and round
  trips, but DynamoDB bills 2 WCU per transactional item, so it costs twice as much capacity.
  A cancelled transaction reports each item's reason; conditional failures are resolved as above
  and throttled or conflicting ones retried with backoff.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from consumers.core.checkpoint import Intent
from consumers.core.records import Batch, UserRecord
from consumers.core.sink import IntentHook, PartialWrite
from consumers.state_writer.model import Delta

MODES = ("update", "transact")
_RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "InternalServerError",
}
_UPDATE = (
    "ADD events :e, orders_created :c, orders_cancelled :x, paid_cents :p "
    "SET last_position = :last, last_event_type = :t, last_event_time = :tm"
)
_CONDITION = "attribute_not_exists(last_position) OR last_position < :first"


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())


class StateSink:
    """Upserts coalesced per key, conditional on the item's last applied position.

    Args:
        dynamodb: a boto3 DynamoDB client (thread-safe; shared by the worker threads).
        table: the state table (hash key ``customer_id``).
        workers: parallel UpdateItems in ``update`` mode.
        mode: ``update`` or ``transact``.
        max_attempts: tries per request for throttled or conflicting writes, on top of botocore's.

    Example:
        >>> sink = StateSink(dynamodb, "pipeline-customer-state", mode="transact")
        >>> processor = BatchProcessor("state-writer", decoder, checkpoints, sink, quarantine)
    """

    TRANSACT_CHUNK = 100  # TransactWriteItems limit
    #: The event fields this sink reads (``model.Delta.add`` and the grouping by customer).
    fields = ("event_id", "event_time", "customer_id", "event_type", "amount_cents")

    def __init__(
        self, dynamodb: Any, table: str, workers: int = 8, mode: str = "update", max_attempts: int = 6
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"state write mode {mode!r}: choose one of {', '.join(MODES)}")
        self.ddb = dynamodb
        self.table = table
        self.mode = mode
        self.max_attempts = max_attempts
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="state-sink")
        self._lock = threading.Lock()
        self.requests = 0
        self.write_units = 0  # WCU DynamoDB bills for the successful writes (items ≤ 1 KB)

    def _count(self, requests: int, units: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.write_units += units

    def resolve_intent(self, shard_id: str, intent: Intent) -> bool:
        """The state sink never announces intents: its updates are idempotent by themselves."""
        return False

    def _values(self, pending: Sequence[UserRecord]) -> dict[str, Any]:
        delta = Delta()
        add = delta.add
        for r in pending:
            add(r.event)
        return {
            ":e": {"N": str(delta.events)},
            ":c": {"N": str(delta.orders_created)},
            ":x": {"N": str(delta.orders_cancelled)},
            ":p": {"N": str(delta.paid_cents)},
            ":last": {"S": pending[-1].position},
            ":first": {"S": pending[0].position},
            ":t": {"S": delta.last_event_type},
            ":tm": {"N": str(delta.last_event_time)},
        }

    def _applied(self, key: str, item: dict[str, Any] | None) -> str:
        """The item's last applied position (read it when the failed condition did not return it)."""
        if item is None:
            self._count(1)
            item = self.ddb.get_item(
                TableName=self.table, Key={"customer_id": {"S": key}}, ConsistentRead=True
            ).get("Item", {})
        return str((item or {}).get("last_position", {}).get("S", ""))

    def _update(self, key: str, records: Sequence[UserRecord]) -> int:
        pending = list(records)
        attempt = 0
        while pending:
            self._count(1)
            try:
                self.ddb.update_item(
                    TableName=self.table,
                    Key={"customer_id": {"S": key}},
                    UpdateExpression=_UPDATE,
                    ConditionExpression=_CONDITION,
                    ExpressionAttributeValues=self._values(pending),
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                self._count(0, 1)
                return len(pending)
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code in _RETRYABLE and attempt + 1 < self.max_attempts:
                    _backoff(attempt)
                    attempt += 1
                    continue
                if code != "ConditionalCheckFailedException":
                    raise
                # Some of these events were applied by an earlier attempt: keep only the rest.
                applied = self._applied(key, exc.response.get("Item"))
                pending = [r for r in pending if r.position > applied]
        return 0

    def _transact(self, groups: dict[str, list[UserRecord]]) -> int:
        pending = dict(groups)
        attempt = 0
        while pending:
            keys = list(pending)
            self._count(1)
            try:
                self.ddb.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self.table,
                                "Key": {"customer_id": {"S": k}},
                                "UpdateExpression": _UPDATE,
                                "ConditionExpression": _CONDITION,
                                "ExpressionAttributeValues": self._values(pending[k]),
                                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                            }
                        }
                        for k in keys
                    ]
                )
                self._count(0, 2 * len(keys))
                return sum(len(v) for v in pending.values())
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                reasons = exc.response.get("CancellationReasons") or []
                if code != "TransactionCanceledException" or len(reasons) != len(keys):
                    if code in _RETRYABLE and attempt + 1 < self.max_attempts:
                        _backoff(attempt)
                        attempt += 1
                        continue
                    raise
                retry = False
                for key, reason in zip(keys, reasons, strict=True):
                    rcode = reason.get("Code") or "None"
                    if rcode == "ConditionalCheckFailed":
                        applied = self._applied(key, reason.get("Item"))
                        left = [r for r in pending[key] if r.position > applied]
                        if left:
                            pending[key] = left
                        else:
                            del pending[key]
                    elif rcode != "None":
                        retry = True  # throttled or conflicting: the whole transaction again
                if retry:
                    if attempt + 1 >= self.max_attempts:
                        raise
                    _backoff(attempt)
                    attempt += 1
        return 0

    def write(self, batch: Batch, announce: IntentHook) -> int:
        """Apply every customer's events; on errors raise ``PartialWrite`` at the earliest one."""
        groups: dict[str, list[UserRecord]] = {}
        for r in batch.records:
            groups.setdefault(str(r.event["customer_id"]), []).append(r)
        if not groups:
            return 0
        if self.mode == "transact":
            keys = list(groups)
            chunks = [
                {k: groups[k] for k in keys[i : i + self.TRANSACT_CHUNK]}
                for i in range(0, len(keys), self.TRANSACT_CHUNK)
            ]
            # Chunks touch disjoint items, so they run side by side like the updates of the
            # other mode (the embedded stack serialises transactions, as DynamoDB isolates them).
            futures: list[tuple[dict[str, list[UserRecord]], Any]] = [
                (chunk, self.pool.submit(self._transact, chunk)) for chunk in chunks
            ]
        else:
            futures = [({k: v}, self.pool.submit(self._update, k, v)) for k, v in groups.items()]
        written = 0
        failed: list[tuple[UserRecord, BaseException]] = []
        for chunk, fut in futures:
            try:
                written += fut.result()
            except Exception as exc:  # any error of one key's update: report the earliest record
                failed.append((min((recs[0] for recs in chunk.values()), key=lambda r: r.position), exc))
        if failed:
            first, cause = min(failed, key=lambda f: f[0].position)
            raise PartialWrite(first, cause, written)
        return written
