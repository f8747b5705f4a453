"""The raw archive contract the replay CLI reads: key, bytes, order and deduplication."""

from __future__ import annotations

import gzip
import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from consumers.lake_writer.archive import archive_key, decode_archive, encode_archive, read_archive
from pipeline import json_text
from pipeline.settings import Settings
from tests.consumers.helpers import client


def _record(seq: int, shard: str = "shardId-000000000000") -> dict[str, Any]:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": f"k{seq}",
            "sequenceNumber": str(seq),
            "data": "AAE=",
            "approximateArrivalTimestamp": 1.5,
        },
        "eventSource": "aws:kinesis",
        "eventID": f"{shard}:{seq}",
    }


def test_archive_bytes_are_gzip_json_lines_and_identical_for_the_same_records() -> None:
    records = [_record(7), _record(9)]
    body = encode_archive(records)
    assert body == encode_archive([dict(r) for r in records])
    assert body[4:8] == b"\x00\x00\x00\x00", "gzip mtime must be 0 for deterministic bytes"
    lines = gzip.decompress(body).decode().splitlines()
    assert [json.loads(line) for line in lines] == records
    assert list(decode_archive(body)) == records


def _dumped(records: list[Any]) -> bytes:
    """The archive's bytes as its contract words them: gzip level 1, mtime 0, of ``json.dumps`` lines."""
    lines = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in records)
    return gzip.compress(lines.encode("utf-8"), compresslevel=1, mtime=0)


_MARK = json_text.MARK  # the text the archive writes in place of the data first
_texts = st.one_of(
    st.text(),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="),
    st.sampled_from(["", "AA==", _MARK, 'A"B', "A\\B", "A\nB", "é", "\x7f"]),
)
_values = st.one_of(_texts, st.integers(), st.floats(allow_nan=False), st.none(), st.booleans())


@given(
    data=st.one_of(_texts, _values),
    kinesis_extra=st.dictionaries(_texts, _values, max_size=3),
    extra=st.dictionaries(
        _texts, st.one_of(_values, st.dictionaries(_texts, _values, max_size=2)), max_size=3
    ),
    kinesis_is_a_dict=st.booleans(),
)
@example(data="AA==", kinesis_extra={}, extra={_MARK: 1}, kinesis_is_a_dict=True)
@example(data="AA==", kinesis_extra={"x": _MARK}, extra={}, kinesis_is_a_dict=True)
@example(data='A"==', kinesis_extra={}, extra={}, kinesis_is_a_dict=True)
def test_archive_bytes_equal_json_dumps_lines_whatever_the_records_hold(
    data: Any, kinesis_extra: dict[str, Any], extra: dict[str, Any], kinesis_is_a_dict: bool
) -> None:
    # The data is copied into the line rather than dumped when it is base64 text: the bytes must
    # be those of json.dumps for any data, and for records whose other text holds the mark.
    kinesis = {"sequenceNumber": "7", "data": data, **kinesis_extra} if kinesis_is_a_dict else data
    record = {**extra, "kinesis": kinesis}
    records = [record, _record(9)]
    assert encode_archive(records) == _dumped(records)


def test_archive_key_names_shard_and_first_and_last_sequence_numbers() -> None:
    assert (
        archive_key("raw/v1", "shardId-000000000003", "12", "345")
        == "raw/v1/shard=shardId-000000000003/12-345.jsonl.gz"
    )


def test_read_archive_yields_sequence_order_once_per_sequence_number_across_overlapping_objects(
    world: Settings,
) -> None:
    s3 = client("s3", world)
    prefix = "raw/test-read-archive"
    shard = "shardId-000000000001"
    # Numeric, not lexical, order (9 < 10 < 100), and overlaps left by retries with other boundaries.
    runs = [(9, 12), (10, 11), (13, 100), (12, 14)]
    for first, last in runs:
        seqs = [s for s in range(first, last + 1) if s <= 14 or s == 100]
        s3.put_object(
            Bucket=world.bucket,
            Key=archive_key(prefix, shard, str(first), str(last)),
            Body=encode_archive([_record(s, shard) for s in seqs]),
        )
    s3.put_object(
        Bucket=world.bucket,
        Key=archive_key(prefix, "shardId-000000000002", "1", "1"),
        Body=encode_archive([_record(1)]),
    )

    got = [int(r["kinesis"]["sequenceNumber"]) for r in read_archive(s3, world.bucket, prefix, shard)]
    assert got == [9, 10, 11, 12, 13, 14, 100]
    ranged = read_archive(s3, world.bucket, prefix, shard, start_sequence="11", end_sequence=13)
    assert [int(r["kinesis"]["sequenceNumber"]) for r in ranged] == [11, 12, 13]
