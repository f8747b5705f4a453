"""``KinesisProducer``: user records → shard-aware KPL aggregates → PutRecords, with retries.

>>> with KinesisProducer("pipeline-events") as p:          # doctest: +SKIP
...     fut = p.put_event(event)
>>> fut.result().shard_id                                  # doctest: +SKIP
'shardId-000000000001'
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pipeline import aws
from pipeline.codecs import kpl
from pipeline.codecs.avro import SchemaRegistry
from pipeline.errors import InvalidInput, PipelineError
from pipeline.settings import Settings
from producers.aggregator import MAX_RECORD_BYTES, Aggregator, OpenAggregate
from producers.collector import batches
from producers.shard_map import ShardMap


@dataclass(frozen=True, slots=True)
class PutResult:
    """Where one user record landed."""

    shard_id: str
    sequence_number: str
    sub_sequence: int
    attempts: int


class KinesisProducer:
    """Aggregating producer; ``put``/``put_event`` return futures resolved on ``flush``."""

    def __init__(
        self,
        stream_name: str,
        settings: Settings | None = None,
        kinesis: Any = None,
        registry: SchemaRegistry | None = None,
        max_attempts: int = 20,
    ) -> None:
        self.stream_name = stream_name
        self.kinesis = kinesis or aws.client("kinesis", settings)
        self.registry = registry or SchemaRegistry.load()
        self.shard_map = ShardMap.from_stream(self.kinesis, stream_name)
        self.aggregator = Aggregator()
        self.ready: list[OpenAggregate] = []
        self.max_attempts = max_attempts
        self.lock = threading.Lock()
        self.stats = {
            "user_records": 0,
            "kinesis_records": 0,
            "bytes": 0,
            "requests": 0,
            "retries": 0,
            "throttles": 0,
        }

    def __enter__(self) -> KinesisProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, data: bytes, partition_key: str, explicit_hash_key: str | None = None) -> Future[PutResult]:
        """Queue one user record; its future resolves when the record is stored."""
        if not isinstance(data, bytes | bytearray):
            raise InvalidInput(f"data must be bytes, not {type(data).__name__}")
        if not isinstance(partition_key, str) or not 1 <= len(partition_key) <= 256:
            raise InvalidInput("partition key must be a string of 1 to 256 characters")
        if len(data) + len(partition_key.encode()) > MAX_RECORD_BYTES:
            raise InvalidInput(f"record of {len(data)} bytes + key exceeds the {MAX_RECORD_BYTES}-byte limit")
        fut: Future[PutResult] = Future()
        shard = self.shard_map.predict(partition_key, explicit_hash_key)
        with self.lock:
            sealed = self.aggregator.add(
                shard.shard_id, str(shard.start), kpl.SubRecord(partition_key, bytes(data)), fut
            )
            self.stats["user_records"] += 1
            if sealed:
                self.ready.append(sealed)
            ready = self.ready if len(self.ready) >= 8 else []
            if ready:
                self.ready = []
        if ready:
            self._send(ready)
        return fut

    def put_event(self, event: Mapping[str, Any]) -> Future[PutResult]:
        """Encode an event (Avro single-object) and queue it under its customer id."""
        try:
            data = self.registry.encode(event)
        except Exception as exc:
            raise InvalidInput(f"event does not match the schema: {exc}") from None
        return self.put(data, str(event["customer_id"]))

    def flush(self) -> None:
        """Send everything buffered and wait for it."""
        with self.lock:
            ready = self.ready + self.aggregator.drain()
            self.ready = []
        self._send(ready)

    def close(self) -> None:
        """Flush and release."""
        self.flush()

    def _send(self, aggregates: list[OpenAggregate]) -> None:
        pending = [(agg, *agg.seal()) for agg in aggregates]
        attempt = 0
        while pending:
            attempt += 1
            failed = []
            sized = [(len(data) + len(pk.encode()), (agg, pk, ehk, data)) for agg, pk, ehk, data in pending]
            for batch in batches(sized):
                resp = self.kinesis.put_records(
                    StreamName=self.stream_name,
                    Records=[
                        {"Data": data, "PartitionKey": pk, "ExplicitHashKey": ehk}
                        for _, pk, ehk, data in batch
                    ],
                )
                self.stats["requests"] += 1
                for entry, res in zip(batch, resp["Records"], strict=True):
                    agg = entry[0]
                    if "ErrorCode" in res:
                        failed.append(entry)
                        if res["ErrorCode"] == "ProvisionedThroughputExceededException":
                            self.stats["throttles"] += 1
                        continue
                    self.stats["kinesis_records"] += 1
                    self.stats["bytes"] += len(entry[3])
                    for sub, fut in enumerate(agg.handles):
                        fut.set_result(PutResult(res["ShardId"], res["SequenceNumber"], sub, attempt))
            if failed and attempt >= self.max_attempts:
                for agg, *_ in failed:
                    for fut in agg.handles:
                        fut.set_exception(PipelineError(f"record not stored after {attempt} attempts"))
                return
            if failed:
                self.stats["retries"] += len(failed)
                time.sleep(min(2.0, 0.05 * 2**attempt) * random.random())
            pending = failed
