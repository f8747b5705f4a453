"""The replay's pure parts: ranges, archive keys and merging, batching, responses, cursor, versions."""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.esm.events import lambda_record
from pipeline.replay.cursor import Cursor
from pipeline.replay.errors import ReplayError
from pipeline.replay.ranges import Range, parse_time
from pipeline.replay.records import RawRecord
from pipeline.replay.runner import batches
from pipeline.replay.sources import ArchiveReader, parse_archive_key, parse_failure
from pipeline.replay.targets import first_failure
from pipeline.replay.versions import output_version
from pipeline.settings import Settings

SHARD = "shardId-000000000000"


def rec(seq: int, arrival: float = 0.0, size: int = 10) -> RawRecord:
    return RawRecord(SHARD, str(seq), f"pk-{seq}", b"x" * size, arrival)


def test_range_bounds_are_inclusive_and_time_bounds_end_the_read() -> None:
    r = Range(from_sequence=10, to_sequence=20, from_time=100.0, to_time=200.0)
    assert r.admits(10, 100.0) and r.admits(20, 200.0)
    assert not r.admits(9, 150.0) and not r.admits(21, 150.0) and not r.admits(15, 99.0)
    assert r.past_end(21, 150.0) and r.past_end(15, 201.0) and not r.past_end(15, 150.0)
    assert r.bounded and not Range(from_sequence=1).bounded


def test_times_parse_as_iso_or_epoch_and_naive_means_utc() -> None:
    assert parse_time("2026-11-26T22:00:00Z") == parse_time("2026-11-26T22:00:00") == 1795730400.0
    assert parse_time("1795730400") == 1795730400.0
    with pytest.raises(ValueError, match="neither ISO 8601"):
        parse_time("yesterday")


def test_archive_keys_name_their_range_and_other_keys_are_ignored() -> None:
    obj = parse_archive_key("raw/v1/shard=shardId-000000000001/49590-49612.jsonl.gz")
    assert obj is not None and (obj.first, obj.last) == (49590, 49612)
    assert parse_archive_key("raw/v1/shard=x/notes.txt") is None
    assert parse_archive_key("raw/v1/shard=x/12.jsonl.gz") is None


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


class _Bucket:
    """An in-memory S3 of one bucket: enough surface for ``ArchiveReader`` (list, get)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_paginator(self, name: str) -> Any:
        bucket = self

        class _P:
            def paginate(self, Bucket: str, Prefix: str, Delimiter: str | None = None) -> Any:
                keys = sorted(k for k in bucket.objects if k.startswith(Prefix))
                return [{"Contents": [{"Key": k} for k in keys]}]

        return _P()

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": _Body(self.objects[Key])}


def archive_object(seqs: list[int], shard: str = SHARD) -> bytes:
    lines = []
    for s in seqs:
        r = rec(s, arrival=1000.0 + s)
        lines.append(json.dumps(lambda_record(r.as_get_records(), shard, "arn:s", "us-east-1", "")))
    return gzip.compress(("\n".join(lines) + "\n").encode())


def test_overlapping_archive_objects_give_each_record_once_in_numeric_order() -> None:
    # Retried batches overlap; 9 < 10 < 100 only as numbers, not as key text.
    objects = {
        f"raw/v1/shard={SHARD}/9-12.jsonl.gz": archive_object([9, 10, 11, 12]),
        f"raw/v1/shard={SHARD}/10-100.jsonl.gz": archive_object([10, 11, 12, 13, 50, 100]),
        f"raw/v1/shard={SHARD}/11-13.jsonl.gz": archive_object([11, 12, 13]),
        f"raw/v1/shard={SHARD}/101-102.jsonl.gz": archive_object([101, 102]),
    }
    reader = ArchiveReader(_Bucket(objects), "b", "raw/v1")
    got = [r.seq for chunk in reader.read(SHARD, Range()) for r in chunk]
    assert got == [9, 10, 11, 12, 13, 50, 100, 101, 102]
    ranged = [r.seq for chunk in reader.read(SHARD, Range(11, 60), after=11, below=100) for r in chunk]
    assert ranged == [12, 13, 50]
    assert all(r.origin == "archive" for chunk in reader.read(SHARD, Range()) for r in chunk)


def test_a_damaged_archive_object_is_one_readable_error() -> None:
    reader = ArchiveReader(_Bucket({f"raw/v1/shard={SHARD}/1-2.jsonl.gz": b"not gzip"}), "b", "raw/v1")
    with pytest.raises(ReplayError, match=r"s3://b/raw/v1/shard=.*1-2.jsonl.gz is not gzip"):
        list(reader.read(SHARD, Range()))


def test_batches_respect_size_and_the_lambda_payload_cap_across_pages() -> None:
    pages = [[rec(i) for i in range(0, 7)], [rec(i) for i in range(7, 12)]]
    assert [len(b) for b in batches(pages, 5)] == [5, 5, 2]
    big = [[rec(i, size=3 * 1024 * 1024) for i in range(3)]]
    assert [len(b) for b in batches(big, 1000)] == [1, 1, 1]


def test_partial_batch_responses_are_read_as_the_esm_reads_them() -> None:
    seqs = ["5", "7", "9"]
    assert first_failure(True, {"batchItemFailures": []}, seqs) is None
    assert first_failure(True, None, seqs) is None
    assert (
        first_failure(True, {"batchItemFailures": [{"itemIdentifier": "9"}, {"itemIdentifier": "7"}]}, seqs)
        == 1
    )
    assert first_failure(True, {"batchItemFailures": [{"itemIdentifier": "8"}]}, seqs) == 0
    assert first_failure(False, None, seqs) == 0


def test_on_failure_messages_name_shard_and_range() -> None:
    body = json.dumps(
        {
            "KinesisBatchInfo": {
                "shardId": SHARD,
                "startSequenceNumber": "49590",
                "endSequenceNumber": "49612",
                "batchSize": 3,
                "streamArn": "arn:aws:kinesis:us-east-1:1:stream/pipeline-events",
            }
        }
    )
    b = parse_failure("m1", "h1", body)
    assert (b.shard_id, b.start, b.end, b.batch_size, b.stream_name) == (
        SHARD,
        49590,
        49612,
        3,
        "pipeline-events",
    )
    with pytest.raises(ReplayError, match="message m2 is not a Kinesis on-failure record"):
        parse_failure("m2", "h2", '{"hello": 1}')


def test_cursor_survives_a_restart_of_the_same_command_only(tmp_path: Path) -> None:
    command = {"range": {"from_sequence": 1}, "consumers": ["lake-writer"]}
    c = Cursor.open(tmp_path, command)
    assert not c.resumed
    c.advance(SHARD, "42")
    again = Cursor.open(tmp_path, dict(command))
    assert again.resumed and again.after(SHARD) == 42
    assert Cursor.open(tmp_path, {**command, "consumers": ["state-writer"]}).after(SHARD) is None
    assert Cursor.open(tmp_path, command, restart=True).after(SHARD) is None


def test_output_versions_never_name_the_current_outputs() -> None:
    s = Settings()
    v = output_version(s, "v2")
    assert (v.lake_prefix, v.state_table, v.namespace("lake-writer")) == (
        "events/v2",
        "pipeline-customer-state-v2",
        "lake-writer-v2",
    )
    assert v.environment("state-writer")["PIPELINE_CONSUMER"] == "state-writer-v2"
    with pytest.raises(ReplayError, match="current version"):
        output_version(s, "v1")
    with pytest.raises(ReplayError, match="current one"):
        output_version(s, "v3", state_table=s.state_table)
    with pytest.raises(ReplayError, match="--output-version"):
        output_version(replace(s), "no/slashes")


def test_progress_line_shows_records_rate_and_eta() -> None:
    from pipeline.replay.progress import Progress

    out = io.StringIO()
    p = Progress(enabled=True, out=out)
    p.update(500, 0.5)
    p.finish()
    line = out.getvalue().strip().split("\r")[-1]
    assert "500 records" in line and "/s" in line and "ETA 0:00:" in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--reprocess"], "--reprocess needs --output-version"),
        (["--output-version", "v2"], "only apply with --reprocess"),
        (["--from-sequence", "9", "--to-sequence", "3"], "--from-sequence 9 is after --to-sequence 3"),
        (["--to-stream", "x", "--reprocess", "--output-version", "v2"], "--to-stream replaces the consumers"),
        (["--source", "dlq", "--shard", "shardId-000000000000"], "--source dlq replays the ranges"),
        (["--reprocess", "--output-version", "v1"], "is (inside) the current version"),
    ],
)
def test_bad_requests_are_one_readable_line(
    args: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    # Refused before any AWS call: nothing listens on this port.
    assert main(["replay", "--port", "9", "--state-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err and err.startswith("error: ")
