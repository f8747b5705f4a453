"""``KinesisProducer``: user records → shard-aware KPL aggregates → PutRecords, with retries.

The stages are the KPL's: ``ShardMap`` predicts each record's shard, ``Aggregator`` fills one
aggregate per shard, ``Limiter`` holds them to the shard's rate, ``Collector`` packs PutRecords
requests, ``Retrier`` reads the answers. This class only wires them: ``put`` feeds the aggregator,
one background thread moves records between stages on time, and a few connection threads send.

>>> with KinesisProducer("pipeline-events") as producer:     # doctest: +SKIP
...     future = producer.put(b"hello", "customer-1")
>>> future.result().shard_id                                  # doctest: +SKIP
'shardId-000000000001'
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from typing import Any

from pipeline.codecs.avro import SchemaRegistry
from pipeline.errors import ConfigError, InvalidInput
from pipeline.settings import Settings
from producers.aggregator import Aggregator
from producers.collector import Collector
from producers.config import ProducerConfig
from producers.errors import BackpressureTimeout, ProducerClosed, PutFailed, RecordExpired
from producers.limiter import Limiter
from producers.records import (
    KinesisRecord,
    PutResult,
    RecordFuture,
    Settlement,
    UserRecord,
    new_user_record,
    settle,
    settle_stored,
)
from producers.retrier import Outcome, Retrier
from producers.shard_map import ShardMap, ShardRange, list_open_shards
from producers.validation import EventChecker, check_explicit_hash_key, schema_errors

__all__ = ["KinesisProducer", "PutResult", "RecordFuture", "ProducerConfig"]

log = logging.getLogger(__name__)

_new_tuple = tuple.__new__
repeat = itertools.repeat

PutRecordsFn = Callable[[list[dict[str, Any]]], dict[str, Any]]
ListShardsFn = Callable[[], list[ShardRange]]
_monotonic = time.monotonic
_MANY_BLOCK = 2048  # records per lock hold in put_many (the aggregator's routing block)
_CONFIG_FIELDS = {f.name for f in fields(ProducerConfig)}


class KinesisProducer:
    """Aggregating, rate-limited, retrying producer; thread-safe; ``put`` returns a future.

    ``put_records`` (a function taking the PutRecords ``Records`` list and returning the
    response) and ``list_shards`` (returning ``ShardRange``s) replace the network for tests;
    by default both go to ``kinesis`` (a boto3 client, made from ``settings`` if not given).
    Keyword arguments named like ``ProducerConfig`` fields override ``config``.
    """

    def __init__(
        self,
        stream_name: str,
        settings: Settings | None = None,
        kinesis: Any = None,
        registry: SchemaRegistry | None = None,
        *,
        config: ProducerConfig | None = None,
        put_records: PutRecordsFn | None = None,
        list_shards: ListShardsFn | None = None,
        validate_events: bool = True,
        **overrides: Any,
    ) -> None:
        unknown = set(overrides) - _CONFIG_FIELDS
        if unknown:
            raise ConfigError(f"unknown producer option(s) {', '.join(sorted(unknown))}; see ProducerConfig")
        self.config = cfg = replace(config or ProducerConfig(), **overrides)
        self.stream_name = stream_name
        if put_records is None or list_shards is None:
            if kinesis is None:
                from pipeline import aws

                kinesis = aws.client("kinesis", settings)
            client = kinesis
            if put_records is None:

                def put_records(records: list[dict[str, Any]]) -> dict[str, Any]:
                    return dict(client.put_records(StreamName=stream_name, Records=records))

            if list_shards is None:

                def list_shards() -> list[ShardRange]:
                    return list_open_shards(client, stream_name)

        self._put_records: PutRecordsFn = put_records
        self._list_shards: ListShardsFn = list_shards
        self._registry = registry
        self.validate_events = validate_events
        self._checker: EventChecker | None = None

        now = _monotonic()
        self.shard_map = ShardMap(self._list_shards())
        self.aggregator = Aggregator(
            cfg.aggregate_bytes,
            cfg.aggregation_max_count if cfg.aggregation_enabled else 1,
            cfg.record_max_buffered_time,
        )
        bytes_per_sec = cfg.shard_bytes_per_sec * cfg.rate_limit
        # The buckets' burst: one second of quota, or one aggregate if that is smaller, so that the
        # shard's own bucket (one second) keeps the difference as room for jitter.
        burst = min(bytes_per_sec, cfg.aggregate_bytes) if cfg.aggregation_enabled else bytes_per_sec
        self.limiter: Limiter[KinesisRecord] = Limiter(
            bytes_per_sec, cfg.shard_records_per_sec * cfg.rate_limit, burst
        )
        self.collector: Collector[KinesisRecord] = Collector(
            cfg.collection_max_count, cfg.collection_max_bytes
        )
        self.retrier = Retrier(cfg.retry_base_delay, cfg.retry_max_delay)

        self.stats: dict[str, Any] = {
            "user_records": 0,  # accepted by put
            "user_bytes": 0,  # their data + partition keys
            "kinesis_records": 0,  # stored Kinesis records (aggregates count once)
            "bytes": 0,  # stored Kinesis bytes: data + partition key, as Kinesis counts them
            "requests": 0,  # PutRecords calls
            "retries": 0,  # Kinesis records sent again
            "throttles": 0,  # Kinesis records answered ProvisionedThroughputExceededException
            "stored": 0,  # user records stored
            "failed": 0,  # user records failed (expired included)
            "expired": 0,  # user records failed after record_ttl
            "mispredicted": 0,  # Kinesis records stored on another shard than predicted
            "shard_map_refreshes": 0,
            "buffered_ms": 0.0,  # put → the PutRecords call that stored it, summed over records
            "buffered_ms_max": 0.0,
        }
        # Shard id -> (digits, sequence number, sub-sequence) of the last stored user record, the
        # sequence number's length first so that tuples order as the numbers do.
        self._last: dict[str, tuple[int, str, int]] = {}
        self.first_error: str | None = None  # the first failed user record's error, if any
        # A plain Lock (entered without Python-level __enter__) under the Condition: put is hot.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._sealed: list[KinesisRecord] = []
        # (due, tie-breaker, a Kinesis record to send again as it is, or user records to re-route)
        self._retry_heap: list[tuple[float, int, KinesisRecord | list[UserRecord]]] = []
        self._retry_seq = itertools.count()
        self._inflight_bytes = 0
        self._outstanding = 0
        self._active = 0
        self._flushing = 0
        self._closed = False
        self._stopping = False
        self._wake_at = float("inf")
        self._limiter_wait: float | None = None
        self._refresh_lock = threading.Lock()
        self._last_refresh = now
        self._next_refresh = now + cfg.shard_map_refresh_interval
        self._refresh_wanted = False
        self._refreshing = False
        self._pool = ThreadPoolExecutor(cfg.max_connections + 1, thread_name_prefix="kinesis-producer")
        self._thread = threading.Thread(target=self._run, name="kinesis-producer-pipeline", daemon=True)
        self._thread.start()

    # -- public API ---------------------------------------------------------------------------
    def __enter__(self) -> KinesisProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def last_positions(self) -> dict[str, tuple[int, int]]:
        """Shard id -> (sequence number, sub-sequence) of the last user record stored in it so far:
        where a reader has seen everything this producer stored once it has read that far."""
        with self._cond:
            return {shard: (int(seq), sub) for shard, (_, seq, sub) in self._last.items()}

    @property
    def registry(self) -> SchemaRegistry:
        """The schema registry ``put_event`` encodes with (loaded on first use)."""
        if self._registry is None:
            self._registry = SchemaRegistry.load()
        return self._registry

    def put(self, data: bytes, partition_key: str, explicit_hash_key: str | None = None) -> RecordFuture:
        """Queue one user record; the future resolves to a ``PutResult`` once it is stored.

        Raises ``InvalidInput`` at once for a record Kinesis would refuse, ``BackpressureTimeout``
        when the buffer stays full for ``put_timeout`` s, ``ProducerClosed`` after ``close``.
        """
        data, size = self._checked(data, partition_key)
        cfg = self.config
        if explicit_hash_key is not None:
            check_explicit_hash_key(explicit_hash_key)
        future = RecordFuture()
        now = _monotonic()
        record = new_user_record(partition_key, data, explicit_hash_key, size, now, future)
        cond = self._cond
        with self._lock:
            if self._admit(size, 1):
                now = _monotonic()
            smap = self.shard_map
            shard = (
                smap.route(partition_key) if explicit_hash_key is None else smap.route_hash(explicit_hash_key)
            )
            opened = shard.shard_id not in self.aggregator.open
            sealed = self.aggregator.add(
                shard.shard_id,
                smap.start_keys[shard.shard_id],
                partition_key,
                data,
                explicit_hash_key,
                record,
                now,
            )
            if sealed is not None:
                self._sealed.append(sealed)
                if len(self._sealed) == 1:
                    cond.notify_all()
            elif opened and now + cfg.record_max_buffered_time < self._wake_at:
                cond.notify_all()
        return future

    def _checked(self, data: Any, partition_key: Any) -> tuple[bytes, int]:
        """``(data as bytes, record size)``, or ``InvalidInput`` for a record Kinesis would refuse."""
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise InvalidInput(
                    f"data must be bytes, not {type(data).__name__}; encode text first (text.encode())"
                )
            data = bytes(data)
        if type(partition_key) is not str or not 0 < len(partition_key) <= 256:
            from producers.validation import check_partition_key

            check_partition_key(partition_key)
        size = len(data) + (len(partition_key) if partition_key.isascii() else len(partition_key.encode()))
        limit = self.config.max_record_bytes
        if size > limit:
            raise InvalidInput(
                f"record of {len(data):,} bytes of data + partition key is {size:,} bytes, over the "
                f"stream's {limit:,}-byte record limit; split it or store it elsewhere (S3)"
            )
        return data, size

    def put_many(self, records: Sequence[tuple[bytes, str]], *, results: bool = True) -> list[RecordFuture]:
        """Queue many ``(data, partition_key)`` user records at once; a future per record.

        The same records, aggregates and results as calling ``put`` for each in order, for a
        fraction of the CPU: one lock and one routing and aggregation pass per block of records
        (``Aggregator.route_and_add``). Every record is checked first: if one would be refused,
        ``InvalidInput`` names its index and nothing is queued. Explicit hash keys take ``put``.
        If the buffer stays full, ``BackpressureTimeout`` is raised with ``queued``: the futures of
        the records already queued by this call (the earlier blocks).

        ``results=False`` makes no futures (the list returned is empty): for a caller that learns
        the outcome from ``stats``, ``first_error`` and ``last_positions()`` alone, as ``pipeline
        produce`` does. A future and its settling cost about as much as aggregating the record,
        and a record without one holds nothing the cyclic collector has to scan while it waits.
        """
        cfg = self.config
        datas: list[bytes] = []
        keys: list[str] = []
        sizes: list[int] = []
        limit = cfg.max_record_bytes
        for i, (data, key) in enumerate(records):
            # The common record (bytes, an ASCII key of 1-256 characters, within the limit) is
            # checked inline; anything else goes through ``_checked``, which names the problem.
            if type(data) is bytes and type(key) is str and 0 < len(key) <= 256 and key.isascii():
                size = len(data) + len(key)
                if size <= limit:
                    datas.append(data)
                    keys.append(key)
                    sizes.append(size)
                    continue
            try:
                self._add_checked(datas, keys, sizes, data, key)
            except InvalidInput as exc:
                raise InvalidInput(f"record {i}: {exc}") from None
        return self._queue(keys, datas, sizes, results)

    def _add_checked(
        self, datas: list[bytes], keys: list[str], sizes: list[int], data: Any, key: Any
    ) -> None:
        """Add a record the inline check did not take to the columns, through ``_checked``, which
        raises ``InvalidInput`` naming the problem."""
        checked, size = self._checked(data, key)
        datas.append(checked)
        keys.append(key)
        sizes.append(size)

    def _queue(
        self, keys: list[str], datas: list[bytes], sizes: list[int], results: bool
    ) -> list[RecordFuture]:
        """Queue checked records, in blocks; a future per record unless not ``results``."""
        futures: list[RecordFuture | None] = (
            [RecordFuture() for _ in datas] if results else [None] * len(datas)
        )
        # Blocks small enough to fit the buffer, so back-pressure works as it does for ``put``.
        step = max(1, min(_MANY_BLOCK, self.config.max_buffered_bytes // (2 * max(max(sizes, default=1), 1))))
        for lo in range(0, len(datas), step):
            hi = lo + step
            try:
                self._put_block(keys[lo:hi], datas[lo:hi], sizes[lo:hi], futures[lo:hi])
            except BackpressureTimeout as exc:
                # The blocks before this one are queued: hand their futures over with the error.
                exc.queued = futures[:lo] if results else []  # type: ignore[attr-defined]
                raise
        return futures if results else []  # type: ignore[return-value]

    def _put_block(
        self, keys: list[str], datas: list[bytes], sizes: list[int], futures: list[RecordFuture | None]
    ) -> None:
        cfg = self.config
        cond = self._cond
        with self._lock:
            self._admit(sum(sizes), len(keys))
            now = _monotonic()
            # The user records, made from the columns in one pass (``new_user_record`` each);
            # ``repeat`` is endless, the columns are of one length.
            rows = zip(keys, datas, repeat(None), sizes, repeat(now), futures, strict=False)
            handles = list(map(_new_tuple, repeat(UserRecord), rows))
            before = len(self.aggregator.open)
            sealed = self.aggregator.route_and_add(self.shard_map, keys, datas, now, handles)
            if sealed:
                self._sealed.extend(sealed)
                cond.notify_all()
            elif len(self.aggregator.open) > before and now + cfg.record_max_buffered_time < self._wake_at:
                cond.notify_all()

    def put_events(self, events: Sequence[Mapping[str, Any]], *, results: bool = True) -> list[RecordFuture]:
        """``put_event`` for many events: each checked and encoded, then queued as ``put_many``
        queues records (``results`` as there). If one does not match the schema or would be
        refused, ``InvalidInput`` names its index and nothing is queued."""
        datas: list[bytes] = []
        keys: list[str] = []
        sizes: list[int] = []
        encode = self.registry.encode
        fast = not self.validate_events
        limit = self.config.max_record_bytes
        for i, event in enumerate(events):
            # The common event (a dict with an ASCII customer id of 1-256 characters, encoded
            # without complaint, within the record limit) takes no further checks; anything else
            # goes through ``_encode_event`` and ``_checked``, which name the problem.
            if fast and type(event) is dict:
                key = event.get("customer_id")
                if type(key) is str and 0 < len(key) <= 256 and key.isascii():
                    try:
                        data = encode(event)
                    except Exception:  # noqa: BLE001 - _encode_event below says what is wrong
                        pass
                    else:
                        size = len(data) + len(key)
                        if size <= limit:
                            datas.append(data)
                            keys.append(key)
                            sizes.append(size)
                            continue
            try:
                self._add_checked(datas, keys, sizes, self._encode_event(event), event["customer_id"])
            except InvalidInput as exc:
                raise InvalidInput(f"event {i}: {exc}") from None
        return self._queue(keys, datas, sizes, results)

    def _encode_event(self, event: Mapping[str, Any]) -> bytes:
        registry = self.registry
        if self.validate_events:
            if self._checker is None:
                self._checker = EventChecker(registry.reader)
            errors = self._checker.check(event)
            if errors:
                raise InvalidInput(f"event does not match schema {registry.reader_name}: {'; '.join(errors)}")
        key = event.get("customer_id") if type(event) is dict or isinstance(event, Mapping) else None
        if not isinstance(key, str) or not key:
            raise InvalidInput("event has no customer_id, its partition key")
        try:
            return registry.encode(event)
        except Exception as exc:  # fastavro raises TypeError/ValueError naming the field
            why = "; ".join(schema_errors(event, registry.reader)) or str(exc)
            raise InvalidInput(f"event does not match schema {registry.reader_name}: {why}") from None

    def put_event(self, event: Mapping[str, Any]) -> RecordFuture:
        """Encode an event (Avro single-object encoding) and put it under its ``customer_id``."""
        return self.put(self._encode_event(event), event["customer_id"])

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything buffered now and wait until every record put so far is settled.

        Returns False if ``timeout`` seconds passed first.
        """
        deadline = None if timeout is None else _monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._outstanding:
                    remaining = None if deadline is None else deadline - _monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._flushing -= 1

    def close(self) -> None:
        """Flush, then stop the background threads; later ``put`` calls raise ``ProducerClosed``.

        Returns within about ``record_ttl`` seconds: records that cannot be stored by then fail.
        """
        with self._cond:
            if self._stopping:
                return
            self._closed = True
        self.flush()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def outstanding(self) -> int:
        """User records put but not yet settled."""
        return self._outstanding

    # -- back-pressure --------------------------------------------------------------------------
    def _admit(self, size: int, count: int) -> bool:
        """Take ``count`` records of ``size`` bytes into the buffer (lock held by the caller),
        waiting for room first if it is full; True if it waited."""
        if self._closed:
            raise ProducerClosed("put after close(): make a new KinesisProducer")
        waited = self._inflight_bytes + size > self.config.max_buffered_bytes and self._inflight_bytes > 0
        if waited:
            self._wait_for_room(size)
        self._inflight_bytes += size
        self._outstanding += count
        self.stats["user_records"] += count
        self.stats["user_bytes"] += size
        return waited

    def _wait_for_room(self, size: int) -> None:
        """Block (lock held by the caller) until ``size`` more bytes fit, or time out."""
        cfg = self.config
        deadline = None if cfg.put_timeout is None else _monotonic() + cfg.put_timeout
        while self._inflight_bytes + size > cfg.max_buffered_bytes and self._inflight_bytes:
            if self._closed:
                raise ProducerClosed("put after close(): make a new KinesisProducer")
            remaining = None if deadline is None else deadline - _monotonic()
            if remaining is not None and remaining <= 0:
                raise BackpressureTimeout(
                    f"put waited {cfg.put_timeout} s for room: {self._inflight_bytes:,} bytes are buffered "
                    f"(max_buffered_bytes={cfg.max_buffered_bytes:,}); the stream takes less than you put, "
                    f"so add shards, slow down, or raise put_timeout"
                )
            self._cond.wait(remaining)

    # -- the pipeline thread ------------------------------------------------------------------
    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                now = _monotonic()
                settles = self._step(now)
                if self._stopping and not self._outstanding and not settles:
                    return
                if not settles:
                    wake = self._next_wake(now)
                    self._wake_at = wake
                    cond.wait(None if wake == float("inf") else max(wake - now, 0.0005))
                    self._wake_at = 0.0  # awake: puts need not notify
            if settles:
                self._finish(settles)

    def _step(self, now: float) -> list[tuple[UserRecord, Settlement]]:
        """Move records between stages (lock held); return the futures to settle."""
        cfg = self.config
        settles: list[tuple[UserRecord, Settlement]] = []
        heap = self._retry_heap
        while heap and heap[0][0] <= now:
            _, _, retry = heapq.heappop(heap)
            if isinstance(retry, KinesisRecord):
                if retry.shard_id in self.shard_map.by_id:
                    # Ahead of the shard's queue: a retry has waited longest, and sending it at
                    # the back could make it miss its TTL behind a full buffer.
                    self.limiter.add_front(retry, now)
                else:
                    self._reaggregate(list(retry.records), now)
            else:
                self._reaggregate(retry, now)
        flushing = self._flushing > 0 or self._closed
        sealed = self._sealed
        self._sealed = []
        if flushing:
            sealed.extend(self.aggregator.seal_all())
        else:
            sealed.extend(
                self.aggregator.seal_due(now, self.limiter.backlogged(), cfg.record_max_buffered_time / 2)
            )
        for kr in sealed:
            self.limiter.add(kr, now)
        released, self._limiter_wait = self.limiter.release(now)
        ttl = cfg.record_ttl
        for kr in released:
            if kr.oldest_arrival + ttl <= now:
                self._expire(kr.records, now, settles)
            else:
                self.collector.add(kr)
        free = cfg.max_connections - self._active
        if free > 0:
            for request in self.collector.take(now, force=flushing, limit=free):
                self._active += 1
                self._pool.submit(self._send, request)
        if not self._refreshing and (self._refresh_wanted or now >= self._next_refresh):
            self._refreshing = True
            self._refresh_wanted = False
            self._next_refresh = now + cfg.shard_map_refresh_interval
            self._pool.submit(self._refresh_in_background)
        return settles

    def _next_wake(self, now: float) -> float:
        """When the pipeline thread has work next (lock held)."""
        wake = self._next_refresh
        if self._retry_heap:
            wake = min(wake, self._retry_heap[0][0])
        if self._limiter_wait is not None:
            wake = min(wake, now + self._limiter_wait)
        held = set(self.limiter.backlogged())
        for shard_id, agg in self.aggregator.open.items():
            if shard_id not in held:
                wake = min(wake, agg.first_arrival + self.config.record_max_buffered_time)
        if self._active < self.config.max_connections:
            if self.collector.waiting():
                wake = now
            deadline = self.collector.next_deadline()
            if deadline is not None:
                wake = min(wake, deadline)
        return wake

    def _reaggregate(self, records: list[UserRecord], now: float) -> None:
        """Put user records back into the aggregator under the current shard map (lock held)."""
        smap = self.shard_map
        for rec in records:
            if rec.explicit_hash_key is None:
                shard = smap.route(rec.partition_key)
            else:
                shard = smap.route_hash(rec.explicit_hash_key)
            sealed = self.aggregator.add(
                shard.shard_id,
                smap.start_keys[shard.shard_id],
                rec.partition_key,
                rec.data,
                rec.explicit_hash_key,
                rec,
                now,
                rec.arrival,
            )
            if sealed is not None:
                self._sealed.append(sealed)

    def _expire(
        self,
        records: tuple[UserRecord, ...],
        now: float,
        settles: list[tuple[UserRecord, Settlement]],
    ) -> None:
        """Fail the records past their TTL; put the others back (lock held)."""
        ttl = self.config.record_ttl
        keep = []
        for rec in records:
            if rec.arrival + ttl <= now:
                settles.append((rec, _expired(rec, ttl, now)))
            else:
                keep.append(rec)
        if keep:
            self._reaggregate(keep, now)

    # -- connection threads -------------------------------------------------------------------
    def _send(self, request: list[KinesisRecord]) -> None:
        started = _monotonic()
        try:
            try:
                response = self._put_records([kr.entry() for kr in request])
                outcome = self.retrier.outcome(request, response)
            except Exception as exc:  # any failure of the call: the retrier decides
                log.debug("PutRecords failed: %s", exc)
                outcome = self.retrier.call_failed(request, exc)
            self._handle(request, outcome, started)
        except BaseException:  # never leave futures hanging because of a bug here
            log.exception("producer connection thread failed")
            with self._cond:
                self._active -= 1
                self._cond.notify_all()
            raise

    def _handle(self, request: list[KinesisRecord], outcome: Outcome, started: float) -> None:
        """Apply one PutRecords outcome: settle, schedule retries, count (not under the lock)."""
        now = _monotonic()
        settles: list[tuple[UserRecord, Settlement]] = []
        retry_groups: list[tuple[float, KinesisRecord | list[UserRecord]]] = []
        stored_bytes = 0
        stored_records = 0
        buffered_total = 0.0
        buffered_max = 0.0

        last: dict[str, tuple[int, str, int]] = {}

        def seen(shard: str, seq: str, top: int) -> None:
            if top >= 0:
                pos = (len(seq), seq, top)
                if pos > last.get(shard, (0, "", -1)):
                    last[shard] = pos

        # Records stored whole (the common outcome) are settled in one pass after the counts;
        # the oldest arrival of each is known without a look at its user records.
        for kr, shard, seq in outcome.stored:
            seen(shard, seq, len(kr.records) - 1)
            waited = started - kr.oldest_arrival
            if waited > buffered_max:
                buffered_max = waited
            stored_bytes += kr.size
            stored_records += 1
        if outcome.moved:
            # The shard map is stale (resharding): learn the new one, then keep the sub-records
            # that belong to the shard the aggregate landed on and send the others again, so
            # that readers which filter sub-records by hash key range (the KCL) see every record.
            self._refresh_shard_map(since=started)
            smap = self.shard_map
            for kr, shard, seq in outcome.moved:
                stored_bytes += kr.size
                stored_records += 1
                if len(kr.records) == 1:
                    keep = {0}  # a plain record: Kinesis itself put it where it belongs
                else:
                    keep = {i for i, rec in enumerate(kr.records) if smap.owns(shard, rec.hash_key())}
                seen(shard, seq, max(keep, default=-1))
                for sub, rec in enumerate(kr.records):
                    if sub in keep:
                        settles.append((rec, (shard, seq, sub, _attempts(rec) + 1)))
                        waited = started - rec.arrival
                        buffered_total += waited
                        if waited > buffered_max:
                            buffered_max = waited
                again = [rec for i, rec in enumerate(kr.records) if i not in keep]
                if again:
                    retry_groups.append((now, again))
        for kr, why in outcome.failed:
            for rec in kr.records:
                settles.append((rec, PutFailed(f"record with partition key {rec.partition_key!r}: {why}")))
        ttl = self.config.record_ttl
        for kr in outcome.retry:
            if any(rec.future is None for rec in kr.records):
                kr = _with_futures(kr)  # attempts are counted on futures from now on
            attempts = 0
            for rec in kr.records:
                fut = rec.future
                assert fut is not None  # every record has one now
                fut.attempts += 1
                attempts = max(attempts, fut.attempts)
            due = now + self.retrier.delay(attempts)
            if kr.oldest_arrival + ttl > due:
                retry_groups.append((due, kr))
                continue
            keep_list = []
            for rec in kr.records:
                if rec.arrival + ttl <= due:
                    settles.append((rec, _expired(rec, ttl, now)))
                else:
                    keep_list.append(rec)
            if keep_list:
                retry_groups.append((due, keep_list))
        with self._cond:
            stats = self.stats
            stats["requests"] += 1
            stats["kinesis_records"] += stored_records
            stats["bytes"] += stored_bytes
            stats["retries"] += len(outcome.retry)
            stats["throttles"] += len(outcome.throttled)
            stats["mispredicted"] += len(outcome.moved)
            stats["buffered_ms_max"] = max(stats["buffered_ms_max"], buffered_max * 1000)
            for kr in outcome.throttled:
                self.limiter.throttled(kr.shard_id, kr.size, now)
            for due, retry in retry_groups:
                heapq.heappush(self._retry_heap, (due, next(self._retry_seq), retry))
            for shard, pos in last.items():
                if pos > self._last.get(shard, (0, "", -1)):
                    self._last[shard] = pos
            self._active -= 1
            self._cond.notify_all()
        whole = (0, 0)
        if outcome.stored:
            count, size, arrivals = settle_stored(outcome.stored)
            whole = (count, size)
            buffered_total += count * started - arrivals
        self._finish(settles, whole, buffered_total)

    def _finish(
        self,
        settles: list[tuple[UserRecord, Settlement]],
        whole: tuple[int, int] = (0, 0),
        buffered: float = 0.0,
    ) -> None:
        """Settle futures (outside the lock, callbacks may put), then release their buffer room.

        ``whole`` is ``(user records, bytes)`` settled already by ``settle_stored``; ``buffered``
        the seconds the stored ones waited between put and the call that stored them, summed."""
        if settles:
            settle([rec.future for rec, _ in settles], [outcome for _, outcome in settles])
        elif not whole[0]:
            return
        freed = whole[1] + sum(rec.size for rec, _ in settles)
        errors = [outcome for _, outcome in settles if isinstance(outcome, BaseException)]
        failed = len(errors)
        expired = sum(1 for e in errors if isinstance(e, RecordExpired))
        with self._cond:
            if errors and self.first_error is None:
                self.first_error = str(errors[0])
            self._inflight_bytes -= freed
            self._outstanding -= len(settles) + whole[0]
            self.stats["stored"] += len(settles) + whole[0] - failed
            self.stats["failed"] += failed
            self.stats["expired"] += expired
            self.stats["buffered_ms"] += buffered * 1000
            self._cond.notify_all()

    # -- shard map ------------------------------------------------------------------------------
    def _refresh_in_background(self) -> None:
        try:
            self._refresh_shard_map()
        finally:
            with self._cond:
                self._refreshing = False

    def _refresh_shard_map(self, since: float | None = None) -> None:
        """Read the shards again; re-route what waited for shards that are gone.

        With ``since``, skip the call if another thread refreshed after that time: a burst of
        mispredicted answers to requests sent at the same moment needs one ListShards, not many.
        """
        with self._refresh_lock:
            if since is not None and self._last_refresh >= since:
                return
            try:
                new = ShardMap(self._list_shards())
            except Exception as exc:  # keep the old map; the next refresh may work
                log.warning("shard map refresh failed, keeping the old map: %s", exc)
                return
            self._last_refresh = _monotonic()
        with self._cond:
            old = self.shard_map
            self.shard_map = new
            self.stats["shard_map_refreshes"] += 1
            gone = set(old.by_id) - set(new.by_id)
            if gone:
                records: list[UserRecord] = list(self.aggregator.remove_shards(gone))
                for kr in self.limiter.remove_shards(gone):
                    records.extend(kr.records)
                self._reaggregate(records, _monotonic())
            self._cond.notify_all()


def _expired(rec: UserRecord, ttl: float, now: float) -> RecordExpired:
    return RecordExpired(
        f"record with partition key {rec.partition_key!r} not stored within record_ttl={ttl:g} s "
        f"({_attempts(rec)} failed attempts, {now - rec.arrival:.1f} s after put); "
        f"the stream may be throttled or unreachable: add shards, slow down, or raise record_ttl"
    )


def _attempts(rec: UserRecord) -> int:
    """Failed PutRecords attempts of a record (counted on its future; none made without one)."""
    return 0 if rec.future is None else rec.future.attempts


def _with_futures(kr: KinesisRecord) -> KinesisRecord:
    """``kr`` with a future for each of its records that has none, to count its attempts."""
    records = tuple(
        rec if rec.future is not None else rec._replace(future=RecordFuture()) for rec in kr.records
    )
    return replace(kr, records=records)
