"""Where replayed history comes from: the stream, the raw archive in S3, the on-failure queue.

The stream is read the way the ESM reads it (GetRecords per shard, throttling respected). The raw
archive (written by the lake writer) holds what the stream no longer has: gzip JSON lines at
``{raw_prefix}/shard={shard_id}/{first}-{last}.jsonl.gz``, one Lambda Kinesis record per line;
objects may overlap (retried batches), so records are deduplicated by sequence number and
ordered numerically. ``History`` joins the two: the archive below the stream's trim horizon, the
stream from there on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from consumers.lake_writer.archive import decode_archive, parse_key
from pipeline.replay.errors import ReplayError
from pipeline.replay.ranges import Range
from pipeline.replay.records import RawRecord, from_get_records, from_lambda


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class StreamReader:
    """One stream's shards, read by sequence or arrival-time range."""

    def __init__(self, kinesis: Any, stream_name: str, limit: int = 10_000) -> None:
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.limit = limit
        self.get_records_calls = 0

    def arn(self) -> str:
        """The stream's ARN (Lambda events carry it as ``eventSourceARN``)."""
        try:
            desc = self.kinesis.describe_stream_summary(StreamName=self.stream_name)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise ReplayError(
                    f"stream {self.stream_name!r} does not exist; name it with --stream "
                    f"(or use --source archive for history that only the archive holds)"
                ) from None
            raise
        return str(desc["StreamDescriptionSummary"]["StreamARN"])

    def shard_ids(self) -> list[str]:
        """Every shard of the stream, open and closed, parents first."""
        shards: list[str] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream_name}
        while True:
            resp = self.kinesis.list_shards(**kwargs)
            shards.extend(s["ShardId"] for s in resp["Shards"])
            if not resp.get("NextToken"):
                return shards
            kwargs = {"NextToken": resp["NextToken"]}

    def _iterator(self, shard_id: str, kind: str, **extra: Any) -> str:
        kwargs = {"StreamName": self.stream_name, "ShardId": shard_id, "ShardIteratorType": kind, **extra}
        return str(self.kinesis.get_shard_iterator(**kwargs)["ShardIterator"])

    def _start(self, shard_id: str, rng: Range, after: int | None) -> str:
        try:
            if after is not None:
                return self._iterator(shard_id, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=str(after))
            if rng.from_sequence is not None:
                return self._iterator(
                    shard_id, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=str(rng.from_sequence)
                )
            if rng.from_time is not None:
                return self._iterator(
                    shard_id, "AT_TIMESTAMP", Timestamp=datetime.fromtimestamp(rng.from_time, tz=UTC)
                )
        except ClientError as exc:
            # A sequence number of another shard, or one already trimmed: read from the trim
            # horizon instead; the range filter drops what comes before the start.
            if _code(exc) != "InvalidArgumentException":
                raise
        return self._iterator(shard_id, "TRIM_HORIZON")

    def _get(self, iterator: str, limit: int) -> dict[str, Any]:
        delay = 0.1
        while True:
            try:
                self.get_records_calls += 1
                return dict(self.kinesis.get_records(ShardIterator=iterator, Limit=limit))
            except ClientError as exc:
                # Five reads per second per shard: the ESM shares them, so wait and try again.
                if _code(exc) != "ProvisionedThroughputExceededException":
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def earliest(self, shard_id: str) -> int | None:
        """Sequence number of the oldest record the shard still holds (None: it holds none)."""
        iterator: str | None = self._iterator(shard_id, "TRIM_HORIZON")
        # An empty page does not prove an empty shard while the reader is still behind.
        for _ in range(20):
            if not iterator:
                return None
            resp = self._get(iterator, 1)
            if resp["Records"]:
                return int(resp["Records"][0]["SequenceNumber"])
            if not resp.get("MillisBehindLatest"):
                return None
            iterator = resp.get("NextShardIterator")
        return None

    def read(self, shard_id: str, rng: Range, after: int | None = None) -> Iterator[list[RawRecord]]:
        """The shard's records in ``rng`` after sequence ``after``, page by page, up to the tip."""
        iterator: str | None = self._start(shard_id, rng, after)
        last = after
        while iterator:
            try:
                resp = self._get(iterator, self.limit)
            except ClientError as exc:
                if _code(exc) != "ExpiredIteratorException":
                    raise
                # The targets took longer than an iterator lives (5 minutes): pick up after
                # the last record seen.
                iterator = (
                    self._iterator(shard_id, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=str(last))
                    if last is not None
                    else self._start(shard_id, rng, None)
                )
                continue
            page = [from_get_records(shard_id, r) for r in resp["Records"]]
            iterator = resp.get("NextShardIterator")
            out: list[RawRecord] = []
            for r in page:
                if last is not None and r.seq <= last:
                    continue
                if rng.past_end(r.seq, r.arrival):
                    if out:
                        yield out
                    return
                last = r.seq
                if rng.admits(r.seq, r.arrival):
                    out.append(r)
            if out:
                yield out
            if not page and not resp.get("MillisBehindLatest"):
                return  # at the tip: the replay covers what the shard held when it got here


@dataclass(frozen=True, slots=True)
class ArchiveObject:
    """One archive object and the sequence range its key names."""

    key: str
    first: int
    last: int


def parse_archive_key(key: str) -> ArchiveObject | None:
    """``…/shard=X/<first>-<last>.jsonl.gz`` → its range; None for keys of another form."""
    parsed = parse_key(key)
    return ArchiveObject(key, parsed[1], parsed[2]) if parsed else None


class ArchiveReader:
    """The raw archive of one bucket and prefix, read shard by shard."""

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.rstrip("/")
        self.objects_read = 0

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` for messages."""
        return f"s3://{self.bucket}/{self.prefix}"

    def shard_ids(self) -> list[str]:
        """Every shard the archive holds records of."""
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/shard=", Delimiter="/"
        ):
            for p in page.get("CommonPrefixes", []):
                out.append(p["Prefix"].rstrip("/").rsplit("shard=", 1)[1])
        return sorted(out)

    def objects(self, shard_id: str, lo: int | None = None, hi: int | None = None) -> list[ArchiveObject]:
        """Objects of the shard that may hold sequence numbers in ``lo..hi``, in key-range order."""
        found = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}/shard={shard_id}/"
            ):
                for o in page.get("Contents", []):
                    obj = parse_archive_key(o["Key"])
                    if obj is None:
                        continue
                    if (lo is not None and obj.last < lo) or (hi is not None and obj.first > hi):
                        continue
                    found.append(obj)
        except ClientError as exc:
            if _code(exc) == "NoSuchBucket":
                raise ReplayError(f"archive bucket {self.bucket!r} does not exist") from None
            raise
        return sorted(found, key=lambda o: (o.first, o.last))

    def lines(self, obj: ArchiveObject) -> list[RawRecord]:
        """Every record of one object."""
        body = self.s3.get_object(Bucket=self.bucket, Key=obj.key)["Body"].read()
        self.objects_read += 1
        where = f"s3://{self.bucket}/{obj.key}"
        try:
            items = list(decode_archive(body))
        except (OSError, EOFError) as exc:
            raise ReplayError(f"{where} is not gzip ({exc}); the archive object is damaged") from None
        except ValueError:
            raise ReplayError(f"{where} is not JSON lines; the archive object is damaged") from None
        return [from_lambda(item, f"{where} record {n}") for n, item in enumerate(items, 1)]

    def read(
        self, shard_id: str, rng: Range, after: int | None = None, below: int | None = None
    ) -> Iterator[list[RawRecord]]:
        """The shard's archived records in ``rng``, after ``after`` and below ``below``, in order."""
        lo = max(x for x in (rng.from_sequence, None if after is None else after + 1, 0) if x is not None)
        hi_bounds = [x for x in (rng.to_sequence, None if below is None else below - 1) if x is not None]
        hi = min(hi_bounds) if hi_bounds else None
        if hi is not None and hi < lo:
            return
        objs = self.objects(shard_id, lo, hi)
        pending: dict[int, RawRecord] = {}
        done = lo - 1
        for i, obj in enumerate(objs):
            for r in self.lines(obj):
                if r.shard_id != shard_id or r.seq <= done or (hi is not None and r.seq > hi):
                    continue
                pending.setdefault(r.seq, r)
            # Later objects start at or after the next key's first sequence number, so everything
            # below it is final: emit it in order and keep only the rest in memory.
            nxt = objs[i + 1].first if i + 1 < len(objs) else None
            ready = sorted(s for s in pending if nxt is None or s < nxt)
            out: list[RawRecord] = []
            for s in ready:
                r = pending.pop(s)
                done = s
                if rng.past_end(r.seq, r.arrival):
                    if out:
                        yield out
                    return
                if rng.admits(r.seq, r.arrival):
                    out.append(r)
            if out:
                yield out


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """How one shard's range will be read."""

    shard_id: str
    in_stream: bool
    stream_start: int | None  # oldest sequence number the stream still holds
    archive_objects: int  # archive objects overlapping the part the stream no longer has
    use_archive: bool
    use_stream: bool
    wanted_from: int | None = None  # first sequence number the range asks for, if it says

    def describe(self) -> str:
        """One line for --dry-run."""
        parts = []
        if self.use_archive:
            below = f" below sequence {self.stream_start}" if self.use_stream and self.stream_start else ""
            parts.append(f"archive ({self.archive_objects} objects{below})")
        if self.use_stream:
            start = f" from sequence {self.stream_start}" if self.stream_start is not None else " (empty)"
            parts.append(f"stream{start}")
        if not parts:
            return f"{self.shard_id}: nothing to read"
        return f"{self.shard_id}: " + ", then ".join(parts)

    @property
    def gap(self) -> bool:
        """True when the range asks for records below the stream's start that the archive lacks."""
        # Without a lower bound nobody can tell whether the shard ever held more than it does.
        return (
            self.use_archive
            and self.archive_objects == 0
            and self.stream_start is not None
            and self.wanted_from is not None
            and self.wanted_from < self.stream_start
        )


class History:
    """A shard's range: from the archive where the stream no longer has it, then from the stream."""

    def __init__(self, stream: StreamReader | None, archive: ArchiveReader | None) -> None:
        if stream is None and archive is None:
            raise ReplayError("nothing to read from: neither a stream nor an archive")
        self.stream = stream
        self.archive = archive
        self._stream_shards: set[str] | None = None

    def stream_shards(self) -> set[str]:
        """Shards of the stream (empty when reading the archive only)."""
        if self._stream_shards is None:
            self._stream_shards = set(self.stream.shard_ids()) if self.stream else set()
        return self._stream_shards

    def shard_ids(self, requested: list[str] | None = None) -> list[str]:
        """The shards to replay: those requested, else every shard of the stream and the archive."""
        if requested:
            return list(dict.fromkeys(requested))
        ids = set(self.stream_shards())
        if self.archive is not None:
            ids.update(self.archive.shard_ids())
        return sorted(ids)

    def plan(self, shard_id: str, rng: Range, after: int | None = None) -> ShardPlan:
        """Decide which store holds which part of the shard's range."""
        in_stream = shard_id in self.stream_shards()
        start = self.stream.earliest(shard_id) if self.stream and in_stream else None
        lo = max(
            (x for x in (rng.from_sequence, None if after is None else after + 1) if x is not None),
            default=None,
        )
        use_stream = in_stream
        use_archive = self.archive is not None and (start is None or lo is None or lo < start)
        objects = 0
        if use_archive and self.archive is not None:
            below = start if use_stream else None
            hi_bounds = [x for x in (rng.to_sequence, None if below is None else below - 1) if x is not None]
            objects = len(self.archive.objects(shard_id, lo, min(hi_bounds) if hi_bounds else None))
        if not in_stream and self.stream is not None and self.archive is None:
            raise ReplayError(
                f"shard {shard_id} is not in stream {self.stream.stream_name}; "
                f"choose one of {', '.join(sorted(self.stream_shards())) or '(none)'}"
            )
        return ShardPlan(shard_id, in_stream, start, objects, use_archive, use_stream, lo)

    def read(self, plan: ShardPlan, rng: Range, after: int | None = None) -> Iterator[list[RawRecord]]:
        """The shard's records in ``rng`` after ``after``, archive part first."""
        if plan.use_archive and self.archive is not None:
            below = plan.stream_start if plan.use_stream else None
            for chunk in self.archive.read(plan.shard_id, rng, after, below):
                after = chunk[-1].seq
                yield chunk
        if plan.use_stream and self.stream is not None:
            yield from self.stream.read(plan.shard_id, rng, after)


# -- the on-failure queue --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FailedBatch:
    """One on-failure message: the batch the ESM gave up on."""

    message_id: str
    receipt_handle: str
    shard_id: str
    start: int
    end: int
    stream_arn: str
    batch_size: int

    @property
    def stream_name(self) -> str:
        """The stream's name, from its ARN."""
        return self.stream_arn.split("/", 1)[1] if "/" in self.stream_arn else self.stream_arn

    @property
    def range(self) -> Range:
        """The batch's sequence range."""
        return Range(from_sequence=self.start, to_sequence=self.end)


def parse_failure(message_id: str, receipt_handle: str, body: str) -> FailedBatch:
    """Read the ``KinesisBatchInfo`` of an on-failure message body."""
    try:
        info = json.loads(body)["KinesisBatchInfo"]
        return FailedBatch(
            message_id,
            receipt_handle,
            str(info["shardId"]),
            int(info["startSequenceNumber"]),
            int(info["endSequenceNumber"]),
            str(info.get("streamArn", "")),
            int(info.get("batchSize") or 0),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ReplayError(
            f"message {message_id} is not a Kinesis on-failure record (no KinesisBatchInfo: {exc})"
        ) from None


class DeadLetters:
    """A consumer's on-failure queue: receive batches, delete each only after it was replayed."""

    def __init__(self, sqs: Any, queue_name: str, visibility_seconds: int = 900) -> None:
        self.sqs = sqs
        self.queue_name = queue_name
        self.visibility = visibility_seconds
        try:
            self.url = str(sqs.get_queue_url(QueueName=queue_name)["QueueUrl"])
        except ClientError as exc:
            if "NonExistentQueue" in _code(exc) or _code(exc) == "QueueDoesNotExist":
                raise ReplayError(f"on-failure queue {queue_name!r} does not exist") from None
            raise

    def count(self) -> int:
        """Messages waiting (approximate, as SQS counts them; reading it changes nothing)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", 0))

    def receive(self) -> list[tuple[str, str, str]]:
        """Up to 10 messages as (message id, receipt handle, body), hidden while being replayed."""
        resp = self.sqs.receive_message(
            QueueUrl=self.url, MaxNumberOfMessages=10, VisibilityTimeout=self.visibility, WaitTimeSeconds=0
        )
        return [(m["MessageId"], m["ReceiptHandle"], m["Body"]) for m in resp.get("Messages", [])]

    def delete(self, receipt_handle: str) -> None:
        """Remove a replayed message."""
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)

    def release(self, receipt_handle: str) -> None:
        """Make a message visible again at once (its replay failed or was interrupted)."""
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=0
            )
        except ClientError:
            pass  # it becomes visible anyway when the timeout runs out
