"""Consumer benchmark: decode path against the usual Python consumer, memory, full batch with sinks
on the embedded stack, DynamoDB requests per batch for dedupe, and cold start.

Run: ``.venv/bin/python -m bench consumer``. Workload: one Lambda event of ~6 MB holding KPL
aggregated records of ~19,000 Avro events of ~200 B. Baseline (same run, same event):
``aws_kinesis_agg.deaggregate_records`` + base64 + ``fastavro.schemaless_reader`` per record.
"""

from __future__ import annotations

import base64
import gc
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.stack.processes import ServerProcess

TARGET_RATE = 100_000  # user records/s on one core
TARGET_RATIO = 2.5
TARGET_MEMORY_MB = 40
TARGET_DEDUPE_REQUESTS = 3
TARGET_COLD_MS = 300
EVENTS = 19_000
AGGREGATE_BYTES = 50 * 1024  # the KPL's default AggregationMaxSize is 51,200 bytes


def _events(n: int) -> list[dict[str, Any]]:
    from pipeline.events import generate

    out = []
    for i, e in enumerate(generate(n, customers=1000, seed=42)):
        # Pad to ~215 B of Avro, as the workload says (the generator's events are ~110 B).
        e["attributes"] = {
            "campaign": "newsletter-2026-11",
            "source": f"app-{i % 7}",
            "ab": "variant-b",
            "referrer": f"https://shop.example.com/c/{i % 97}/p/{i:08d}?utm=mail",
        }
        e["shipping_country"] = "DE"
        e["coupon_code"] = e["coupon_code"] or "NONE"
        out.append(e)
    return out


def build_event(n: int = EVENTS) -> tuple[dict[str, Any], int, int]:
    """(Lambda event, user records, bytes of Avro payload)."""
    from pipeline.codecs import kpl
    from pipeline.codecs.avro import SchemaRegistry
    from pipeline.esm.events import lambda_record

    reg = SchemaRegistry.load()
    events = _events(n)
    payloads = [(e["customer_id"], reg.encode(e)) for e in events]
    shard = "shardId-000000000000"
    arn = "arn:aws:kinesis:us-east-1:123456789012:stream/pipeline-events"
    role = "arn:aws:iam::123456789012:role/pipeline-consumer"
    records, batch, size, seq = [], [], 0, 49_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000
    for pk, data in payloads:
        if batch and size + len(data) + len(pk) + 8 > AGGREGATE_BYTES:
            seq += 1
            records.append(lambda_record(_get_records(batch, seq, kpl), shard, arn, "us-east-1", role))
            batch, size = [], 0
        batch.append(kpl.SubRecord(pk, data))
        size += len(data) + len(pk) + 8
    seq += 1
    records.append(lambda_record(_get_records(batch, seq, kpl), shard, arn, "us-east-1", role))
    return {"Records": records}, n, sum(len(p) for _, p in payloads)


def _get_records(batch: list[Any], seq: int, kpl: Any) -> dict[str, Any]:
    return {
        "SequenceNumber": str(seq),
        "PartitionKey": batch[0].partition_key,
        "Data": kpl.encode(batch),
        "ApproximateArrivalTimestamp": 1_795_000_000.0,
    }


def baseline(event: dict[str, Any], reader: Any) -> int:
    """The usual Python consumer: deaggregate, base64 per user record, schemaless_reader per record."""
    import fastavro
    from aws_kinesis_agg.deaggregator import deaggregate_records

    n = 0
    for rec in deaggregate_records(event["Records"]):
        data = base64.b64decode(rec["kinesis"]["data"])
        buf = io.BytesIO(data)
        buf.seek(10)  # single-object header (magic + fingerprint)
        fastavro.schemaless_reader(buf, reader, None)
        n += 1
    return n


def _best(fn: Any, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


class _Counting:
    """Counts a client's calls by operation."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if not callable(attr) or name.startswith("_") or name in ("meta", "exceptions", "get_paginator"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return call


def _resources(settings: Any) -> None:
    from pipeline import aws

    aws.client("s3", settings).create_bucket(Bucket=settings.bucket)
    ddb = aws.client("dynamodb", settings)
    for table, key in (
        (settings.checkpoint_table, "pk"),
        (settings.state_table, "customer_id"),
        (settings.state_table + "-tx", "customer_id"),
        (settings.event_id_table, "event_id"),
    ):
        ddb.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )


def full_batch(event: dict[str, Any], n: int) -> dict[str, Any]:
    """Both consumers on the embedded stack: ms per batch, DynamoDB requests, state write modes."""
    from consumers.core.checkpoint import CheckpointStore
    from consumers.core.decode import Decoder
    from consumers.core.event_ids import BatchDedupe, EventIdStore
    from consumers.core.processor import BatchProcessor
    from consumers.core.quarantine import Quarantine
    from consumers.lake_writer.sink import LakeSink
    from consumers.state_writer.sink import StateSink
    from pipeline import aws
    from pipeline.codecs.avro import SchemaRegistry
    from pipeline.settings import Settings

    out: dict[str, Any] = {}
    stack = ServerProcess(Path(tempfile.mkdtemp(prefix="bench-consumer-")) / "server.log")
    try:
        settings = replace(Settings(), endpoint_url=stack.url)
        _resources(settings)
        reg = SchemaRegistry.load()
        s3 = aws.client("s3", settings)
        ddb = aws.client("dynamodb", settings)

        def processor(consumer: str, sink: Any, event_ids: Any, cp_client: Any) -> BatchProcessor:
            return BatchProcessor(
                consumer,
                Decoder(reg),
                CheckpointStore(cp_client, settings.checkpoint_table, consumer),
                sink,
                Quarantine(s3, settings.bucket, settings.quarantine_prefix, consumer),
                event_ids,
            )

        for codec in ("deflate", "zstandard"):
            cp = _Counting(ddb)
            lake = processor(
                f"lake-{codec}",
                LakeSink(s3, settings.bucket, f"events/{codec}", reg.reader, codec, f"raw/{codec}"),
                BatchDedupe(),
                cp,
            )
            t = time.perf_counter()
            lake.process(event)
            out[f"lake_{codec}_ms"] = (time.perf_counter() - t) * 1000
            out["lake_checkpoint_requests"] = sum(cp.calls.values())

        for mode, table in (("update", settings.state_table), ("transact", settings.state_table + "-tx")):
            cp = _Counting(ddb)
            sink = StateSink(ddb, table, workers=16, mode=mode)
            st = processor(f"state-{mode}", sink, BatchDedupe(), cp)
            t = time.perf_counter()
            st.process(event)
            out[f"state_{mode}_ms"] = (time.perf_counter() - t) * 1000
            out[f"state_{mode}_requests"] = sink.requests
            out[f"state_{mode}_wcu"] = sink.write_units
            out["state_checkpoint_requests"] = sum(cp.calls.values())

        store = EventIdStore(ddb, settings.event_id_table, "lake-table", settings.event_id_ttl_seconds)
        lake = processor(
            "lake-table",
            LakeSink(s3, settings.bucket, "events/table", reg.reader, "deflate", "raw/table"),
            store,
            ddb,
        )
        t = time.perf_counter()
        lake.process(event)
        out["lake_table_ms"] = (time.perf_counter() - t) * 1000
        out["event_id_requests"] = store.requests
        out["cold_ms"] = cold_start(stack.url)
    finally:
        stack.stop()
    return out


def cold_start(endpoint: str, runs: int = 3) -> list[float]:
    """Import the handler module (which builds its clients) in fresh interpreters; ms each."""
    code = (
        "import time; t = time.perf_counter(); import consumers.lake_writer.handler; "
        "print((time.perf_counter() - t) * 1000)"
    )
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    out = []
    for _ in range(runs):
        res = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        out.append(float(res.stdout.strip().splitlines()[-1]))
    return out


def main() -> int:
    """Run the benchmark; 0 when every target is met."""
    # The handlers' EMF lines would interleave with the figures; metrics are measured elsewhere.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from consumers.core.decode import Decoder
    from consumers.lake_writer.sink import LakeSink
    from consumers.state_writer.sink import StateSink
    from pipeline.codecs.avro import SchemaRegistry

    event, n, avro_bytes = build_event()
    payload_mb = len(json.dumps(event)) / 1e6
    print(
        f"workload: Lambda event of {payload_mb:.2f} MB, {len(event['Records'])} aggregated records, "
        f"{n:,} Avro events of {avro_bytes / n:.0f} B"
    )
    reg = SchemaRegistry.load()
    decoder = Decoder(reg)
    assert baseline(event, reg.reader) == n
    decoded, poison = decoder.decode(event["Records"])
    assert len(decoded) == n and not poison
    # The handlers' decoders build only the fields their sink reads (``Sink.fields``), after the
    # same checks of every byte as a whole-event decode (the same poison, for the same reasons).
    # That is the consumers' decode path, so the targets are judged on the slower of the two; the
    # whole-event decode is printed beside it.
    projected = {
        "lake writer's fields": Decoder(reg, fields=LakeSink.fields),
        "state writer's fields": Decoder(reg, fields=StateSink.fields),
    }
    # Interleaved rounds, best of each: the machine's other load shifts both sides alike.
    rounds: dict[str, list[float]] = {"base": [], "ours": [], **{k: [] for k in projected}}
    for _ in range(5):
        rounds["base"].append(_best(lambda: baseline(event, reg.reader), 1))
        rounds["ours"].append(_best(lambda: decoder.decode(event["Records"]), 1))
        for name, d in projected.items():
            rounds[name].append(_best(lambda d=d: d.decode(event["Records"]), 1))
    t_base, t_whole = min(rounds["base"]), min(rounds["ours"])
    print(f"decode  baseline: {n / t_base:>10,.0f} user records/s ({t_base * 1000:.0f} ms)")
    for name, t in [("whole events", t_whole)] + [(name, min(rounds[name])) for name in projected]:
        speed = f"{n / t:>10,.0f} user records/s ({t * 1000:.0f} ms), {t_base / t:.2f}x baseline"
        print(f"decode  {name}: {speed}")
    t_ours = max(min(rounds[name]) for name in projected)
    rate = n / t_ours
    ratio = t_base / t_ours

    del decoded
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    kept = decoder.decode(event["Records"])
    peak = (tracemalloc.get_traced_memory()[1] - start) / 2**20
    tracemalloc.stop()
    del kept
    print(f"memory  peak growth decoding the batch: {peak:.1f} MB (tracemalloc)")

    full = full_batch(event, n)
    print(
        f"batch   lake writer (decode + Avro files + raw archive + checkpoint): deflate "
        f"{full['lake_deflate_ms']:.0f} ms, zstd {full['lake_zstandard_ms']:.0f} ms; with the event-id table "
        f"{full['lake_table_ms']:.0f} ms"
    )
    for mode in ("update", "transact"):
        print(
            f"batch   state writer, {mode:<8}: {full[f'state_{mode}_ms']:>6.0f} ms, "
            f"{full[f'state_{mode}_requests']:,} write requests, {full[f'state_{mode}_wcu']:,} WCU"
        )
    dedupe = full["lake_checkpoint_requests"]
    print(
        f"dedupe  DynamoDB requests per batch: checkpoint {dedupe} (lake), "
        f"{full['state_checkpoint_requests']} (state), whatever the size; "
        f"per-record idempotency (2 writes per record) would be {2 * n:,}; "
        f"event-id table adds {full['event_id_requests']} = ceil({n}/100) reads + ceil({n}/25) writes "
        f"({math.ceil(n / 100) + math.ceil(n / 25)})"
    )
    cold = full["cold_ms"]
    print(f"cold    import handler + build clients: {statistics.median(cold):.0f} ms median of {cold}")

    met = {
        f"decode (the handlers' path) >= {TARGET_RATE:,} records/s": rate >= TARGET_RATE,
        f"decode (the handlers' path) >= {TARGET_RATIO}x baseline": ratio >= TARGET_RATIO,
        f"memory <= {TARGET_MEMORY_MB} MB": peak <= TARGET_MEMORY_MB,
        f"dedupe <= {TARGET_DEDUPE_REQUESTS} requests/batch": dedupe <= TARGET_DEDUPE_REQUESTS,
        f"cold start <= {TARGET_COLD_MS} ms": statistics.median(cold) <= TARGET_COLD_MS,
    }
    for name, ok in met.items():
        print(f"target  {name}: {'met' if ok else 'NOT met'}")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
