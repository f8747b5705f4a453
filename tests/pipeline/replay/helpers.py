"""What the replay tests read and write through the stack: shard records, lake, state, archive."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from consumers.core.decode import Decoder
from pipeline import aws
from pipeline.cli import main
from pipeline.codecs.avro import SchemaRegistry
from pipeline.esm.events import lambda_record
from pipeline.settings import Settings
from pipeline.stack import inspect


def replay(settings: Settings, *args: str) -> int:
    """``pipeline replay`` against the test's stack, as a user runs it."""
    return main(
        [
            "replay",
            "--port",
            str(settings.port),
            "--state-dir",
            str(settings.state_dir),
            "--no-progress",
            *args,
        ]
    )


def stream_arn(settings: Settings) -> str:
    kinesis = aws.client("kinesis", settings)
    return str(
        kinesis.describe_stream_summary(StreamName=settings.stream_name)["StreamDescriptionSummary"][
            "StreamARN"
        ]
    )


def create_stream(settings: Settings, shards: int) -> None:
    kinesis = aws.client("kinesis", settings)
    kinesis.create_stream(StreamName=settings.stream_name, ShardCount=shards)
    while (
        kinesis.describe_stream_summary(StreamName=settings.stream_name)["StreamDescriptionSummary"][
            "StreamStatus"
        ]
        != "ACTIVE"
    ):
        time.sleep(0.1)


def shard_records(settings: Settings, shard_id: str) -> list[dict[str, Any]]:
    """Every record of a shard, as GetRecords returns them."""
    kinesis = aws.client("kinesis", settings)
    it = kinesis.get_shard_iterator(
        StreamName=settings.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    out: list[dict[str, Any]] = []
    while it:
        try:
            resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
        except kinesis.exceptions.ProvisionedThroughputExceededException:
            time.sleep(0.3)
            continue
        out.extend(resp["Records"])
        it = resp.get("NextShardIterator")
        if not resp["Records"] and not resp.get("MillisBehindLatest"):
            break
    return out


def as_lambda(
    settings: Settings, shard_id: str, records: Sequence[dict[str, Any]], arn: str = ""
) -> list[dict[str, Any]]:
    return [
        lambda_record(
            r, shard_id, arn or "arn:aws:kinesis:us-east-1:000000000000:stream/x", settings.region, ""
        )
        for r in records
    ]


def events_of(lambda_records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events a consumer decodes from these Lambda records (none of them poison)."""
    decoded, poison = Decoder(SchemaRegistry.load()).decode(lambda_records)
    assert not poison
    return [r.event for r in decoded]


def all_events(settings: Settings) -> list[dict[str, Any]]:
    kinesis = aws.client("kinesis", settings)
    out = []
    for s in kinesis.list_shards(StreamName=settings.stream_name)["Shards"]:
        out += events_of(as_lambda(settings, s["ShardId"], shard_records(settings, s["ShardId"])))
    return out


def lake_snapshot(settings: Settings, prefix: str | None = None) -> dict[str, str]:
    """Lake key → MD5 of its bytes."""
    s3 = aws.client("s3", settings)
    return {
        k: hashlib.md5(s3.get_object(Bucket=settings.bucket, Key=k)["Body"].read()).hexdigest()
        for k in inspect.lake_keys(settings, prefix)
    }


def lake_ids(settings: Settings, prefix: str | None = None) -> Counter[str]:
    return Counter(str(e["event_id"]) for e in inspect.lake_events(settings, prefix))


def state(settings: Settings, table: str | None = None) -> dict[str, dict[str, Any]]:
    return inspect.state_items(replace(settings, state_table=table or settings.state_table))


def totals(items: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The fields ``expected_state`` computes, per customer."""
    keys = ("events", "orders_created", "orders_cancelled", "paid_cents")
    return {c: {k: v.get(k, 0) for k in keys} for c, v in items.items()}


def checkpoint_positions(settings: Settings) -> dict[str, Any]:
    return {k: v.get("position") for k, v in inspect.checkpoints(settings).items()}


def write_archive(settings: Settings, shard_id: str, lambda_records: Sequence[dict[str, Any]]) -> str:
    """One raw archive object exactly as the lake writer's contract says."""
    first = lambda_records[0]["kinesis"]["sequenceNumber"]
    last = lambda_records[-1]["kinesis"]["sequenceNumber"]
    key = f"{settings.raw_prefix}/shard={shard_id}/{first}-{last}.jsonl.gz"
    lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lambda_records)
    aws.client("s3", settings).put_object(
        Bucket=settings.bucket, Key=key, Body=gzip.compress(lines.encode(), mtime=0)
    )
    return key


def cursor_files(settings: Settings) -> list[Path]:
    return sorted((settings.state_dir / "replay").glob("*.json"))
