"""Reads what the pipeline produced: lake objects, state items, checkpoints and ESM counters."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro

from pipeline import aws
from pipeline.settings import Settings


def lake_keys(settings: Settings, prefix: str | None = None) -> list[str]:
    """Every object key under the lake prefix."""
    s3 = aws.client("s3", settings)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.bucket, Prefix=(prefix or settings.lake_prefix) + "/"
    ):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def lake_events(
    settings: Settings, prefix: str | None = None, keys: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Every event stored in the lake (reads each Avro container file; ``keys`` if already listed)."""
    from consumers.lake_writer.container import register_zstandard_reader

    register_zstandard_reader()  # lake files may be zstd-compressed
    s3 = aws.client("s3", settings)
    for key in lake_keys(settings, prefix) if keys is None else keys:
        body = s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
        yield from fastavro.reader(io.BytesIO(body))  # type: ignore[misc]


def lake_event_ids(settings: Settings, keys: list[str] | None = None) -> Counter[str]:
    """How many times each event id occurs in the lake (``keys``: the lake's objects, if listed)."""
    return Counter(str(e["event_id"]) for e in lake_events(settings, keys=keys))


def state_items(settings: Settings) -> dict[str, dict[str, Any]]:
    """The state table as plain values, keyed by customer id."""
    ddb = aws.client("dynamodb", settings)
    out = {}
    for page in ddb.get_paginator("scan").paginate(TableName=settings.state_table):
        for item in page["Items"]:
            plain = {k: (int(v["N"]) if "N" in v else v.get("S")) for k, v in item.items()}
            out[str(plain.pop("customer_id"))] = plain
    return out


def checkpoints(settings: Settings) -> dict[str, dict[str, Any]]:
    """Checkpoint items keyed by ``consumer#shard``."""
    ddb = aws.client("dynamodb", settings)
    out = {}
    for page in ddb.get_paginator("scan").paginate(TableName=settings.checkpoint_table):
        for item in page["Items"]:
            out[item["pk"]["S"]] = {
                k: (int(v["N"]) if "N" in v else v.get("S")) for k, v in item.items() if k != "pk"
            }
    return out


def quarantined(settings: Settings) -> int:
    """Number of quarantined records."""
    s3 = aws.client("s3", settings)
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.bucket, Prefix=settings.quarantine_prefix + "/"
    ):
        n += len(page.get("Contents", []))
    return n


def esm_stats(state_dir: Path) -> dict[str, Any]:
    """The local ESM runner's counters, by mapping."""
    try:
        return dict(json.loads((state_dir / "esm" / "stats.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}
