"""The KPL aggregated-record codec, proven against ``aws-kinesis-agg`` in both directions.

Format: https://github.com/awslabs/amazon-kinesis-producer/blob/master/aggregation-format.md
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from aws_kinesis_agg.aggregator import AggRecord
from aws_kinesis_agg.deaggregator import iter_deaggregate_records
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codecs import kpl
from pipeline.errors import CorruptAggregate

MIB = 1024 * 1024

RECORDS = [
    kpl.SubRecord("customer-1", b"first"),
    kpl.SubRecord("ключ-ü-🚀", b"unicode key", "12345678901234567890"),
    kpl.SubRecord("customer-1", b"", None),  # empty data, repeated key
    kpl.SubRecord("顧客", bytes(range(256)) * 3, "340282366920938463463374607431768211455"),
    kpl.SubRecord("customer-2", b"x" * 200, "12345678901234567890"),  # repeated explicit hash key
]


def theirs_encode(records: list[kpl.SubRecord]) -> bytes:
    """Aggregate with aws-kinesis-agg's own ``AggRecord``."""
    agg = AggRecord()
    for r in records:
        assert agg.add_user_record(r.partition_key, r.data, r.explicit_hash_key)
    return agg.get_contents()[2]


def theirs_decode(data: bytes) -> list[dict]:
    """Deaggregate with aws-kinesis-agg, as a Lambda consumer using it would."""
    event = {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "sequenceNumber": "1",
            "approximateArrivalTimestamp": 0.0,
            "partitionKey": "outer",
            "data": base64.b64encode(data),
        }
    }
    return [r["kinesis"] for r in iter_deaggregate_records([event])]


def test_our_bytes_equal_aws_kinesis_agg_bytes_for_the_same_records():
    """Same records in, same bytes out: fields in field-number order, as protobuf writes them."""
    assert kpl.encode(RECORDS) == theirs_encode(RECORDS)


def test_aws_kinesis_agg_reads_what_we_write():
    """Ours → theirs: keys (unicode too), data (empty too) and sub-record order survive."""
    got = theirs_decode(kpl.encode(RECORDS))
    assert [g["partitionKey"] for g in got] == [r.partition_key for r in RECORDS]
    assert [base64.b64decode(g["data"]) for g in got] == [r.data for r in RECORDS]
    assert [g["subSequenceNumber"] for g in got] == list(range(len(RECORDS)))
    assert all(g["aggregated"] for g in got)
    # aws-kinesis-agg reports table entry 0 for records without an explicit hash key (its own
    # defect), so only the records that carry one are comparable.
    for g, r in zip(got, RECORDS, strict=True):
        if r.explicit_hash_key is not None:
            assert g["explicitHashKey"] == r.explicit_hash_key


def test_we_read_what_aws_kinesis_agg_writes():
    """Theirs → ours, including explicit hash keys on some records only."""
    assert kpl.decode(theirs_encode(RECORDS)) == RECORDS


def test_record_at_the_one_mib_edge_round_trips_both_ways():
    """A record whose data + partition key is exactly 1 MiB, the PutRecords record limit
    (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html: "The record
    size limit applies to the total size of the partition key and data blob")."""
    pk = "edge-key"
    big = kpl.SubRecord(pk, b"\xab" * (MIB - len(pk)))
    ours = kpl.encode([big])
    assert kpl.decode(ours) == [big]
    assert base64.b64decode(theirs_decode(ours)[0]["data"]) == big.data
    agg = AggRecord(max_size=MIB + 64)  # their size check would refuse the aggregate of one 1 MiB record
    agg.add_user_record(pk, big.data)
    assert kpl.decode(agg.get_contents()[2]) == [big]


def test_plain_record_passes_through_deaggregate():
    """A record without the magic bytes is a plain record: one user record, the outer key."""
    assert kpl.deaggregate(b"plain payload", "pk-1") == [kpl.SubRecord("pk-1", b"plain payload")]


def test_pieces_add_up_to_encode():
    """The aggregator's exact size accounting relies on record_header/key_entry/assemble."""
    pk_entries = [kpl.key_entry(b"a"), kpl.key_entry(("é" * 200).encode())]
    parts = [kpl.record_header(0, None, 3), b"abc", kpl.record_header(1, None, 300), b"z" * 300]
    assert kpl.assemble(pk_entries, [], parts) == kpl.encode(
        [kpl.SubRecord("a", b"abc"), kpl.SubRecord("é" * 200, b"z" * 300)]
    )
    assert [kpl.varint_size(v) for v in (0, 127, 128, 16383, 16384, 2**64)] == [
        len(kpl.varint(v)) for v in (0, 127, 128, 16383, 16384, 2**64)
    ]


def test_assemble_takes_table_entries_in_pieces():
    """The batch aggregator keeps each key table entry as two pieces (tag + length, key)."""
    keys = [b"a", ("é" * 200).encode(), b"k" * 127, b"k" * 128]
    whole = [kpl.key_entry(k) for k in keys]
    split = [piece for e, k in zip(whole, keys, strict=True) for piece in (e[: -len(k)], k)]
    parts = [p for i in range(4) for p in (kpl.record_header(i, None, 2), b"%02d" % i)]
    ehk = [kpl.key_entry(b"123", True)]
    assert kpl.assemble(split, [], parts) == kpl.assemble(whole, [], parts)
    assert (
        kpl.assemble(split, ehk, parts)
        == kpl.MAGIC + b"".join(whole + ehk + parts) + hashlib.md5(b"".join(whole + ehk + parts)).digest()
    )
    assert kpl.decode(kpl.assemble(split, [], parts)) == [
        kpl.SubRecord(k.decode(), b"%02d" % i) for i, k in enumerate(keys)
    ]


# -- corrupt input --------------------------------------------------------------------------
def _with_digest(message: bytes) -> bytes:
    return kpl.MAGIC + message + hashlib.md5(message).digest()


def test_flipped_byte_is_md5_mismatch():
    data = bytearray(kpl.encode(RECORDS))
    data[20] ^= 0xFF
    with pytest.raises(CorruptAggregate) as err:
        kpl.decode(bytes(data))
    assert err.value.reason == "md5_mismatch"


@pytest.mark.parametrize(
    "message",
    [
        b"\x1a\x05\x08\x00",  # record claims 5 bytes, has 2
        b"\x0a\x10abc",  # key claims 16 bytes, has 3
        b"\x1a\x02\x1a\x05",  # data claims 5 bytes inside a 2-byte record
        b"\x1a\x01\x08",  # varint cut off at the end of the record
        b"\x1a\x02\x1a\x00",  # record without partition_key_index
        b"\x0a\x02\xff\xfe",  # key that is not UTF-8
    ],
)
def test_malformed_protobuf_is_truncated_protobuf(message):
    with pytest.raises(CorruptAggregate) as err:
        kpl.decode(_with_digest(message))
    assert err.value.reason == "truncated_protobuf"


def test_too_short_to_hold_a_digest_is_truncated_protobuf():
    with pytest.raises(CorruptAggregate) as err:
        kpl.deaggregate(kpl.MAGIC + b"\x00" * 5, "pk")
    assert err.value.reason == "truncated_protobuf"


@pytest.mark.parametrize(
    "message",
    [
        b"\x0a\x01a" + b"\x1a\x04\x08\x01\x1a\x00",  # partition_key_index 1 of a 1-key table
        b"\x0a\x01a" + b"\x1a\x06\x08\x00\x10\x00\x1a\x00",  # explicit hash key index into an empty table
    ],
)
def test_index_outside_its_table_is_index_out_of_range(message):
    with pytest.raises(CorruptAggregate) as err:
        kpl.decode(_with_digest(message))
    assert err.value.reason == "index_out_of_range"


def test_unknown_fields_and_tags_are_skipped():
    """Records may carry tags (field 4) and future fields; readers skip what they do not know."""
    tag = b"\x0a\x01t\x12\x01v"  # Tag{key="t", value="v"}
    record = b"\x08\x00\x1a\x02hi" + b"\x22" + bytes((len(tag),)) + tag
    message = (
        b"\x0a\x01k" + b"\x1a" + bytes((len(record),)) + record + b"\x28\x07"
    )  # + unknown varint field 5
    assert kpl.decode(_with_digest(message)) == [kpl.SubRecord("k", b"hi")]


# -- properties -----------------------------------------------------------------------------
keys = st.text(min_size=1, max_size=40)
hash_keys = st.integers(min_value=0, max_value=2**128 - 1).map(str)
sub_records = st.builds(kpl.SubRecord, keys, st.binary(max_size=300), st.none() | hash_keys)


@settings(max_examples=80, deadline=None)
@given(st.lists(sub_records, min_size=1, max_size=30))
def test_property_round_trip_ours(records):
    assert kpl.decode(kpl.encode(records)) == records


@settings(max_examples=50, deadline=None)
@given(st.lists(sub_records, min_size=1, max_size=20))
def test_property_ours_and_theirs_agree(records):
    ours = kpl.encode(records)
    assert ours == theirs_encode(records)
    got = theirs_decode(ours)
    assert [(g["partitionKey"], base64.b64decode(g["data"])) for g in got] == [
        (r.partition_key, r.data) for r in records
    ]


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_property_garbage_after_magic_is_corrupt_or_decodes(noise):
    """Whatever follows the magic bytes, decoding raises CorruptAggregate or returns records."""
    data = _with_digest(noise)
    try:
        out = kpl.decode(data)
    except CorruptAggregate as exc:
        assert exc.reason in ("truncated_protobuf", "index_out_of_range")
    else:
        assert all(isinstance(r, kpl.SubRecord) for r in out)
