"""The lake sink: one Avro container file per (batch, event hour), at a key fixed by its positions.

Keys are deterministic (``<first>-<last>.avro``) and written with ``If-None-Match: *``, so the same
records never make two objects; the intent on the checkpoint covers retries with other boundaries.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import fastavro
from botocore.exceptions import ClientError

from consumers.core.checkpoint import Intent
from consumers.core.records import UserRecord
from consumers.core.sink import IntentHook
from pipeline.codecs.positions import short


def _hour(event_time: Any) -> tuple[str, str]:
    if not isinstance(event_time, datetime):
        event_time = datetime.fromtimestamp(int(event_time) / 1000, tz=UTC)
    return event_time.strftime("%Y-%m-%d"), event_time.strftime("%H")


class LakeSink:
    """Writes decoded events to S3 as compressed Avro object container files."""

    def __init__(self, s3: Any, bucket: str, prefix: str, schema: Any, codec: str = "deflate"):
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self.schema = schema
        self.codec = codec

    def plan(self, shard_id: str, records: Sequence[UserRecord]) -> dict[str, list[UserRecord]]:
        """Object key → the records it will hold, one object per event hour."""
        groups: dict[tuple[str, str], list[UserRecord]] = {}
        for r in records:
            groups.setdefault(_hour(r.event["event_time"]), []).append(r)
        out = {}
        for (day, hour), recs in sorted(groups.items()):
            key = (
                f"{self.prefix}/dt={day}/hour={hour}/shard={shard_id}/"
                f"{short(recs[0].position)}-{short(recs[-1].position)}.avro"
            )
            out[key] = recs
        return out

    def encode(self, key: str, records: Sequence[UserRecord]) -> bytes:
        """The container file for ``records``; byte-identical for the same key and records."""
        buf = io.BytesIO()
        fastavro.writer(
            buf,
            self.schema,
            [r.event for r in records],
            codec=self.codec,
            sync_marker=hashlib.md5(key.encode()).digest(),
            metadata={
                "pipeline.first_position": records[0].position,
                "pipeline.last_position": records[-1].position,
            },
        )
        return buf.getvalue()

    def exists(self, key: str) -> bool:
        """True when the object is in the bucket."""
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def resolve_intent(self, shard_id: str, intent: Intent) -> bool:
        """All announced objects exist: complete. Some: delete them so the retry rewrites cleanly."""
        present = [k for k in intent.keys if self.exists(k)]
        if len(present) == len(intent.keys):
            return True
        for key in present:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        return False

    def write(self, shard_id: str, records: Sequence[UserRecord], announce: IntentHook) -> int:
        """Announce, then put each object with ``If-None-Match: *``; return the records written."""
        if not records:
            return 0
        plan = self.plan(shard_id, records)
        announce(list(plan), records[-1].position)
        for key, recs in plan.items():
            body = self.encode(key, recs)
            try:
                self.s3.put_object(
                    Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", ContentType="application/avro"
                )
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code not in ("PreconditionFailed", "412"):
                    raise
                # Same key = same positions = same bytes: already written by an earlier attempt.
        return len(records)
