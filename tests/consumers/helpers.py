"""Building blocks of the consumer tests: resources, records in a real stream, Lambda events,
processors wired to real clients, collaborators that fail on cue, and what landed where."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import fastavro
from botocore.exceptions import ClientError

from consumers.core.checkpoint import Checkpoint, CheckpointStore
from consumers.core.decode import Decoder
from consumers.core.event_ids import make_filter
from consumers.core.processor import BatchProcessor
from consumers.core.quarantine import Quarantine
from consumers.lake_writer.archive import read_archive
from consumers.lake_writer.container import register_zstandard_reader
from consumers.lake_writer.sink import LakeSink
from consumers.state_writer.sink import StateSink
from pipeline import aws
from pipeline.codecs import kpl
from pipeline.codecs.avro import SchemaRegistry
from pipeline.esm.events import lambda_record
from pipeline.settings import Settings

REGISTRY = SchemaRegistry.load()
ROLE_ARN = "arn:aws:iam::123456789012:role/pipeline-consumer"
STATE_FIELDS = ("events", "orders_created", "orders_cancelled", "paid_cents")
register_zstandard_reader()


_CLIENTS: dict[tuple[str, str | None], Any] = {}


def client(service: str, settings: Settings) -> Any:
    """A shared boto3 client per service and endpoint (clients are thread-safe and slow to make)."""
    key = (service, settings.endpoint_url)
    if key not in _CLIENTS:
        _CLIENTS[key] = aws.client(service, settings)
    return _CLIENTS[key]


def _table(settings: Settings, table: str, key: str) -> None:
    client("dynamodb", settings).create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


def create_state_table(settings: Settings) -> None:
    """The state table the settings name."""
    _table(settings, settings.state_table, "customer_id")


def create_resources(settings: Settings) -> None:
    """The stream (one shard), bucket, checkpoint and event-id tables the consumer tests share."""
    kinesis = client("kinesis", settings)
    kinesis.create_stream(StreamName=settings.stream_name, ShardCount=settings.shard_count)
    client("s3", settings).create_bucket(Bucket=settings.bucket)
    _table(settings, settings.checkpoint_table, "pk")
    _table(settings, settings.event_id_table, "event_id")
    for _ in range(100):
        desc = kinesis.describe_stream_summary(StreamName=settings.stream_name)
        if desc["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.05)


def shard_id(settings: Settings) -> str:
    """The id of the stream's only shard."""
    return str(
        client("kinesis", settings).list_shards(StreamName=settings.stream_name)["Shards"][0]["ShardId"]
    )


def put_records(settings: Settings, payloads: Sequence[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """Put (partition key, data) records one by one (so their order is the stream's order) and
    read them back as GetRecords returns them."""
    kinesis = client("kinesis", settings)
    shard = kinesis.list_shards(StreamName=settings.stream_name)["Shards"][0]["ShardId"]
    first = None
    for pk, data in payloads:
        seq = kinesis.put_record(StreamName=settings.stream_name, PartitionKey=pk, Data=data)[
            "SequenceNumber"
        ]
        first = first or seq
    it = kinesis.get_shard_iterator(
        StreamName=settings.stream_name,
        ShardId=shard,
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=first,
    )["ShardIterator"]
    out: list[dict[str, Any]] = []
    while len(out) < len(payloads):
        resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
        out.extend(resp["Records"])
        it = resp["NextShardIterator"]
    return out


def stream_arn(settings: Settings) -> str:
    """ARN of the test's stream."""
    return f"arn:aws:kinesis:{settings.region}:123456789012:stream/{settings.stream_name}"


def lambda_event(settings: Settings, records: Sequence[dict[str, Any]], shard_id: str) -> dict[str, Any]:
    """A Lambda Kinesis event for GetRecords-shaped records."""
    arn = stream_arn(settings)
    return {"Records": [lambda_record(r, shard_id, arn, settings.region, ROLE_ARN) for r in records]}


def avro(event: Mapping[str, Any]) -> bytes:
    """Single-object Avro encoding of ``event`` with the reader schema."""
    return REGISTRY.encode(event)


def aggregate(events: Sequence[Mapping[str, Any]]) -> bytes:
    """One KPL aggregated record holding ``events`` (partition key = customer id)."""
    return kpl.encode([kpl.SubRecord(str(e["customer_id"]), avro(e)) for e in events])


def build_processor(
    settings: Settings,
    consumer: str,
    *,
    s3: Any = None,
    dynamodb: Any = None,
    checkpoints: Any = None,
    dedupe: str = "table",
    state_mode: str = "update",
    codec: str = "deflate",
) -> BatchProcessor:
    """A processor of ``consumer`` ("lake-…" or "state-…") on real clients, any of them replaceable."""
    s3 = s3 or client("s3", settings)
    dynamodb = dynamodb or client("dynamodb", settings)
    sink: Any
    if consumer.startswith("lake"):
        sink = LakeSink(
            s3,
            settings.bucket,
            f"{settings.lake_prefix}/{consumer}",
            REGISTRY.reader,
            codec,
            f"{settings.raw_prefix}/{consumer}",
        )
    else:
        sink = StateSink(dynamodb, settings.state_table, mode=state_mode, max_attempts=3)
    return BatchProcessor(
        consumer=consumer,
        decoder=Decoder(REGISTRY),
        checkpoints=checkpoints
        or CheckpointStore(client("dynamodb", settings), settings.checkpoint_table, consumer),
        sink=sink,
        quarantine=Quarantine(client("s3", settings), settings.bucket, settings.quarantine_prefix, consumer),
        event_ids=make_filter(
            dedupe,
            client("dynamodb", settings),
            settings.event_id_table,
            consumer,
            settings.event_id_ttl_seconds,
        ),
    )


class Crash(Exception):
    """The injected failure: the invocation dies here."""


class Proxy:
    """Forwards every call to a real client except the ones a subclass overrides."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class CrashAfterPut(Proxy):
    """An S3 client whose ``crash_after``-th PutObject lands and then the invocation dies."""

    def __init__(self, real: Any, crash_after: int) -> None:
        super().__init__(real)
        self.crash_after = crash_after
        self.puts = 0

    def put_object(self, **kwargs: Any) -> Any:
        out = self._real.put_object(**kwargs)
        self.puts += 1
        if self.puts == self.crash_after:
            raise Crash(f"after S3 put #{self.puts} ({kwargs['Key']})")
        return out


class FailingWrites(Proxy):
    """A DynamoDB client whose writes fail from the ``fail_from``-th one on (``error`` code), and
    whose first ``throttle`` writes are throttled once each before they succeed."""

    WRITES = ("update_item", "transact_write_items")

    def __init__(self, real: Any, fail_from: int | None = None, code: str = "InternalServerError") -> None:
        super().__init__(real)
        self.fail_from = fail_from
        self.code = code
        self.writes = 0

    def _write(self, op: str, kwargs: dict[str, Any]) -> Any:
        self.writes += 1
        if self.fail_from is not None and self.writes >= self.fail_from:
            raise ClientError({"Error": {"Code": self.code, "Message": "injected"}}, op)
        return getattr(self._real, op)(**kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        return self._write("update_item", kwargs)

    def transact_write_items(self, **kwargs: Any) -> Any:
        return self._write("transact_write_items", kwargs)


class Throttling(Proxy):
    """A DynamoDB client that throttles the first write of each item (and whose first BatchWriteItem
    leaves items unprocessed), the way a hot partition answers; the next try goes through."""

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.calls = Counter[str]()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def _first_time(self, op: str, key: str) -> None:
        with self._lock:
            self.calls[op] += 1
            first = key not in self._seen
            self._seen.add(key)
        if first:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}}, op
            )

    def update_item(self, **kwargs: Any) -> Any:
        self._first_time("update_item", json.dumps(kwargs["Key"], sort_keys=True))
        return self._real.update_item(**kwargs)

    def transact_write_items(self, **kwargs: Any) -> Any:
        keys = [json.dumps(i["Update"]["Key"], sort_keys=True) for i in kwargs["TransactItems"]]
        self._first_time("transact_write_items", "|".join(keys))
        return self._real.transact_write_items(**kwargs)

    def batch_write_item(self, **kwargs: Any) -> Any:
        with self._lock:
            self.calls["batch_write_item"] += 1
            first = self.calls["batch_write_item"] == 1
        items = kwargs["RequestItems"]
        if first:
            # Write the first item only and hand the rest back, as DynamoDB does under throttling.
            table, reqs = next(iter(items.items()))
            self._real.batch_write_item(RequestItems={table: reqs[:1]})
            return {"UnprocessedItems": {table: reqs[1:]} if reqs[1:] else {}}
        return self._real.batch_write_item(**kwargs)


class CheckpointFaults:
    """A checkpoint store that dies right after recording the intent, or right before advancing."""

    def __init__(
        self, real: CheckpointStore, after_intent: bool = False, before_advance: bool = False
    ) -> None:
        self.real = real
        self.after_intent = after_intent
        self.before_advance = before_advance

    def load(self, shard_id: str) -> Checkpoint:
        return self.real.load(shard_id)

    def put_intent(self, shard_id: str, keys: list[str], position: str) -> None:
        self.real.put_intent(shard_id, keys, position)
        if self.after_intent:
            raise Crash("after the intent")

    def advance(self, shard_id: str, position: str | None, counters: Mapping[str, int]) -> bool:
        if self.before_advance:
            raise Crash("before the checkpoint")
        return self.real.advance(shard_id, position, counters)


class Counting(Proxy):
    """A client that counts its calls by operation."""

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.calls = Counter[str]()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if not callable(attr) or name.startswith("_") or name in ("meta", "exceptions", "get_paginator"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return call


def lake_events(settings: Settings, consumer: str) -> list[dict[str, Any]]:
    """Every event in the consumer's lake files."""
    s3 = client("s3", settings)
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.bucket, Prefix=f"{settings.lake_prefix}/{consumer}/"
    ):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read()
            out.extend(fastavro.reader(io.BytesIO(body)))  # type: ignore[arg-type]
    return out


def archived(settings: Settings, consumer: str, shard_id: str) -> list[dict[str, Any]]:
    """The consumer's raw archive of one shard, through the replay helper."""
    return list(
        read_archive(client("s3", settings), settings.bucket, f"{settings.raw_prefix}/{consumer}", shard_id)
    )


def state(settings: Settings) -> dict[str, dict[str, int]]:
    """The state table's counters by customer."""
    ddb = client("dynamodb", settings)
    out = {}
    for page in ddb.get_paginator("scan").paginate(TableName=settings.state_table):
        for item in page["Items"]:
            out[item["customer_id"]["S"]] = {f: int(item[f]["N"]) for f in STATE_FIELDS}
    return out


def quarantined(settings: Settings, consumer: str) -> list[dict[str, Any]]:
    """The consumer's quarantine objects, parsed."""
    s3 = client("s3", settings)
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.bucket, Prefix=f"{settings.quarantine_prefix}/{consumer}/"
    ):
        for obj in page.get("Contents", []):
            out.append(json.loads(s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read()))
    return out


def checkpoint(settings: Settings, consumer: str, shard_id: str) -> Checkpoint:
    """The consumer's checkpoint of one shard."""
    return CheckpointStore(client("dynamodb", settings), settings.checkpoint_table, consumer).load(shard_id)


def ids(events: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """How many times each event id occurs."""
    return Counter(str(e["event_id"]) for e in events)


def lake_event_ids(settings: Settings, consumer: str) -> Counter[str]:
    """How many times each event id occurs in the consumer's lake files."""
    return ids(lake_events(settings, consumer))


def last_position(settings: Settings, records: Sequence[dict[str, Any]], shard_id: str) -> str:
    """The highest user-record position (poison included) of ``records``."""
    decoded, poison = Decoder(REGISTRY).decode(lambda_event(settings, records, shard_id)["Records"])
    return max([r.position for r in decoded] + [p.position for p in poison])
