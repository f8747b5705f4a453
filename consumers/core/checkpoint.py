"""Per-(consumer, shard) checkpoints in DynamoDB, with the intent of the write in flight.

One item per consumer and shard (``pk`` = ``"<consumer>#<shard>"``): the highest position whose
effects are complete (``position``, a fixed-width string), counters, and, while a sink write is in
flight, its intent (``intent_keys``: object keys, ``intent_position``: the position they complete).
Every change is a conditional update that only moves forward, so a late or duplicate invocation
cannot rewind it. Cost: one GetItem and at most two UpdateItems per batch, whatever its size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import ClientError

COUNTERS = ("batches", "records_in", "written", "duplicates_delivery", "duplicates_event", "quarantined")


@dataclass(frozen=True, slots=True)
class Intent:
    """A sink write that was announced but whose completion was not yet recorded.

    Example:
        >>> Intent(("events/v1/a.avro",), "0001.0000000000").keys
        ('events/v1/a.avro',)
    """

    keys: tuple[str, ...]
    position: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What one consumer has completed on one shard.

    Example:
        >>> Checkpoint(None).position is None
        True
    """

    position: str | None
    intent: Intent | None = None
    counters: Mapping[str, int] = field(default_factory=dict)


class Checkpoints(Protocol):
    """What the processor needs from a checkpoint store (tests hand in wrappers that fail on cue)."""

    def load(self, shard_id: str) -> Checkpoint: ...

    def put_intent(self, shard_id: str, keys: list[str], position: str) -> None: ...

    def advance(self, shard_id: str, position: str | None, counters: Mapping[str, int]) -> bool: ...


class CheckpointStore:
    """DynamoDB-backed checkpoints: one GetItem and at most two UpdateItems per batch.

    Example:
        >>> store = CheckpointStore(dynamodb_client, "pipeline-checkpoints", "lake-writer")
        >>> store.load("shardId-000000000000").position
        None
    """

    def __init__(self, dynamodb: Any, table: str, consumer: str) -> None:
        self.ddb = dynamodb
        self.table = table
        self.consumer = consumer

    def _key(self, shard_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"{self.consumer}#{shard_id}"}}

    def load(self, shard_id: str) -> Checkpoint:
        """The checkpoint of ``shard_id`` (position None when the shard was never processed)."""
        item = self.ddb.get_item(TableName=self.table, Key=self._key(shard_id), ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return Checkpoint(None)
        intent = None
        if "intent_position" in item:
            keys = tuple(k["S"] for k in item.get("intent_keys", {}).get("L", []))
            intent = Intent(keys, item["intent_position"]["S"])
        counters = {c: int(item[c]["N"]) for c in COUNTERS if c in item}
        return Checkpoint(item.get("position", {}).get("S"), intent, counters)

    def put_intent(self, shard_id: str, keys: list[str], position: str) -> None:
        """Record that objects ``keys`` holding records up to ``position`` are about to be written."""
        self.ddb.update_item(
            TableName=self.table,
            Key=self._key(shard_id),
            UpdateExpression="SET intent_keys = :k, intent_position = :p",
            ConditionExpression="attribute_not_exists(#pos) OR #pos < :p",
            ExpressionAttributeNames={"#pos": "position"},
            ExpressionAttributeValues={":k": {"L": [{"S": k} for k in keys]}, ":p": {"S": position}},
        )

    def advance(self, shard_id: str, position: str | None, counters: Mapping[str, int]) -> bool:
        """Move the checkpoint forward to ``position``, clear any intent and add the counters.

        Returns False when the checkpoint already stood further ahead (nothing is rewound, and the
        counters of this stale invocation are not added).
        """
        values: dict[str, Any] = {}
        adds = []
        for i, (name, n) in enumerate(counters.items()):
            if n:
                adds.append(f"{name} :c{i}")
                values[f":c{i}"] = {"N": str(n)}
        expr = []
        kwargs: dict[str, Any] = {"TableName": self.table, "Key": self._key(shard_id)}
        if position is not None:
            expr.append("SET #pos = :p")
            values[":p"] = {"S": position}
            kwargs["ConditionExpression"] = "attribute_not_exists(#pos) OR #pos <= :p"
            kwargs["ExpressionAttributeNames"] = {"#pos": "position"}
        if adds:
            expr.append("ADD " + ", ".join(adds))
        expr.append("REMOVE intent_keys, intent_position")
        kwargs["UpdateExpression"] = " ".join(expr)
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            self.ddb.update_item(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
