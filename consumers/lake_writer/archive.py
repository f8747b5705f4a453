"""The raw archive: every Lambda Kinesis record the lake writer received, kept for replay.

Contract (the replay CLI reads it; change it only with a new prefix version):

- key: ``{raw_prefix}/shard={shard_id}/{first_sequence_number}-{last_sequence_number}.jsonl.gz``
  with ``raw_prefix`` = ``settings.raw_prefix`` (default ``raw/v1``) and the decimal sequence
  numbers of the first and last record the object holds;
- body: gzip (``mtime=0``, no file name, level 1) of JSON lines, one per Lambda Kinesis record
  exactly as received in ``event["Records"]``, in sequence order, compact separators, UTF-8;
- written once per batch with ``If-None-Match: *`` before the lake writer advances its checkpoint,
  and listed in the checkpoint's intent, so a torn batch leaves no partial archive behind.

Objects of one shard are contiguous runs of the shard; after a retry with other batch boundaries
two objects may overlap, so readers deduplicate by sequence number (``read_archive`` does).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pipeline import json_text

KEY_RE = re.compile(r"/shard=(?P<shard>[^/]+)/(?P<first>\d+)-(?P<last>\d+)\.jsonl\.gz$")


def archive_key(prefix: str, shard_id: str, first_sequence: str, last_sequence: str) -> str:
    """The key of the archive object holding records ``first_sequence``..``last_sequence``.

    Example:
        >>> archive_key("raw/v1", "shardId-000000000000", "49", "51")
        'raw/v1/shard=shardId-000000000000/49-51.jsonl.gz'
    """
    return f"{prefix}/shard={shard_id}/{first_sequence}-{last_sequence}.jsonl.gz"


def encode_archive(records: Sequence[Mapping[str, Any]]) -> bytes:
    """Deterministic archive bytes for ``records`` (same records → same bytes).

    Example:
        >>> rec = {"kinesis": {"sequenceNumber": "7", "data": "AA=="}, "eventID": "shardId-0:7"}
        >>> list(decode_archive(encode_archive([rec]))) == [rec]
        True
    """
    lines = "".join([_line(r) for r in records])
    # Level 1: the archive is mostly base64 of already compact Avro, where higher levels gain
    # little size for several times the CPU (it was the lake writer's largest single cost).
    return gzip.compress(lines.encode("utf-8"), compresslevel=1, mtime=0)


_BASE64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _line(record: Mapping[str, Any]) -> str:
    """``record`` as one compact JSON line (``ensure_ascii=False``), newline included.

    A Lambda record is mostly its base64 ``data``, which holds nothing JSON escapes, yet
    ``json.dumps`` checks every character of it: that check took a fifth of the archive's CPU
    (gzip takes the rest). So the rest of the record is dumped with ``json_text.MARK`` in place of
    the data and the data is joined in after (``json_text.join_marked``). Data that is anything but
    base64 text, or a record whose own text holds the mark, is dumped whole: the line is the same
    either way.

    Example:
        >>> _line({"kinesis": {"data": "AA=="}, "eventID": "s:7"})
        '{"kinesis":{"data":"AA=="},"eventID":"s:7"}\\n'
    """
    kinesis: Any = record.get("kinesis")
    data = kinesis.get("data") if type(kinesis) is dict else None
    if (
        type(record) is dict
        and type(data) is str
        and data.isascii()
        and not data.encode("ascii").translate(None, _BASE64)
    ):
        text = json.dumps(
            {**record, "kinesis": {**kinesis, "data": json_text.MARK}},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        joined = json_text.join_marked(text, [data])
        if joined is not None:
            return joined + "\n"
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


def decode_archive(body: bytes) -> Iterator[dict[str, Any]]:
    """The Lambda records of one archive object, in the order they were written."""
    for line in gzip.decompress(body).decode("utf-8").splitlines():
        if line:
            yield json.loads(line)


def parse_key(key: str) -> tuple[str, int, int] | None:
    """(shard id, first, last sequence number) named by an archive key; None for other keys.

    Example:
        >>> parse_key("raw/v1/shard=shardId-000000000000/49-51.jsonl.gz")
        ('shardId-000000000000', 49, 51)
    """
    m = KEY_RE.search(key)
    return (m["shard"], int(m["first"]), int(m["last"])) if m else None


def _objects(s3: Any, bucket: str, prefix: str, shard_id: str) -> list[tuple[int, int, str]]:
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix.rstrip('/')}/shard={shard_id}/"
    ):
        for obj in page.get("Contents", []):
            parsed = parse_key(obj["Key"])
            if parsed and parsed[0] == shard_id:
                found.append((parsed[1], parsed[2], obj["Key"]))
    # Sequence numbers differ in digit count (small in moto), so order by value, not by key text.
    found.sort()
    return found


def read_archive(
    s3: Any,
    bucket: str,
    prefix: str,
    shard_id: str,
    start_sequence: str | int | None = None,
    end_sequence: str | int | None = None,
) -> Iterator[dict[str, Any]]:
    """Lambda records of one shard from the raw archive, in sequence order, each sequence number once.

    ``start_sequence``/``end_sequence`` (inclusive, optional) bound the range; objects entirely
    outside it are not downloaded. Objects are fetched one at a time, so memory stays at one object.

    Example:
        >>> for record in read_archive(s3, "pipeline-lake", "raw/v1", "shardId-000000000000"):
        ...     replay(record)
    """
    lo = None if start_sequence is None else int(start_sequence)
    hi = None if end_sequence is None else int(end_sequence)
    emitted = -1  # highest sequence number yielded so far
    for first, last, key in _objects(s3, bucket, prefix, shard_id):
        if last <= emitted or (lo is not None and last < lo) or (hi is not None and first > hi):
            continue
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for record in decode_archive(body):
            seq = int(record["kinesis"]["sequenceNumber"])
            if seq <= emitted or (lo is not None and seq < lo):
                continue
            if hi is not None and seq > hi:
                break
            emitted = seq
            yield record
