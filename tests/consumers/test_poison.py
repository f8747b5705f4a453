"""Poison never stops a batch: each class is quarantined with its reason, raw bytes and position,
while the good records around it land in the lake and the state table."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from consumers.state_writer.model import expected_state
from pipeline.codecs import kpl
from pipeline.codecs.positions import encode_position
from pipeline.events import generate
from pipeline.settings import Settings
from tests.consumers.helpers import (
    aggregate,
    avro,
    build_processor,
    checkpoint,
    lake_event_ids,
    lambda_event,
    put_records,
    quarantined,
    shard_id,
    state,
)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (written here so the test does not trust the codec)."""
    return bytes((tag,)) + kpl.varint(len(payload)) + payload


def _aggregate_of(message: bytes) -> bytes:
    """A KPL record around a hand-made protobuf message, with a correct MD5."""
    return kpl.MAGIC + message + hashlib.md5(message).digest()


def _poison(event: dict[str, Any]) -> dict[str, bytes]:
    """One payload per poison class, named by the reason it must be quarantined with."""
    good = aggregate([event])
    message = good[4:-16]
    json_event = {k: v for k, v in event.items()}
    no_id = {k: v for k, v in event.items() if k != "event_id"}
    return {
        "bad_base64": b"placeholder: its base64 is broken in the Lambda event",
        "bad_magic": b"\xf3\x89\x9a\xc3 one byte off the KPL magic",
        "md5_mismatch": good[:-1] + bytes([good[-1] ^ 0xFF]),
        "truncated_protobuf": _aggregate_of(message[:-7]),
        "index_out_of_range": _aggregate_of(
            _field(0x0A, b"k") + _field(0x1A, b"\x08\x03" + _field(0x1A, avro(event)))
        ),
        "unknown_fingerprint": b"\xc3\x01" + b"\xee" * 8 + avro(event)[10:],
        "truncated_avro": avro(event)[:30],
        "invalid_event": json.dumps({**json_event, "amount_cents": "twelve"}).encode(),
        "missing_event_id": json.dumps(no_id).encode(),
    }


def test_each_poison_class_is_quarantined_with_its_reason_while_its_neighbours_land(
    env: Settings, names: tuple[str, str]
) -> None:
    events = list(generate(30, customers=4, seed=21))
    poison = _poison(events[0] | {"event_id": "0badc0de-0000-4000-8000-000000000000"})
    empty_id = avro(events[1] | {"event_id": ""})
    payloads: list[tuple[str, bytes]] = []
    landing: list[dict[str, Any]] = []
    reasons: list[str] = []
    i = 2
    for reason, data in poison.items():
        payloads.append((events[i]["customer_id"], avro(events[i])))  # a good neighbour before …
        landing.append(events[i])
        payloads.append(("poison", data))
        reasons.append(reason)
        i += 1
    # … an aggregate whose middle user record is poison (empty event id): only that one is kept back
    payloads.append(("agg", kpl.encode([kpl.SubRecord("a", avro(events[i])), kpl.SubRecord("a", empty_id)])))
    landing.append(events[i])
    # … a valid JSON event whose optional fields are left to their defaults lands too
    plain = {k: v for k, v in events[i + 1].items() if k not in ("channel", "attributes", "coupon_code")}
    payloads.append((plain["customer_id"], json.dumps(plain).encode()))
    landing.append(events[i + 1] | {"channel": "WEB", "attributes": {}, "coupon_code": None})
    records = put_records(env, payloads)
    shard = shard_id(env)
    event = lambda_event(env, records, shard)
    broken = reasons.index("bad_base64") * 2 + 1
    event["Records"][broken]["kinesis"]["data"] = "this is *not* base64!"
    lake, st = names

    for consumer in (lake, st):
        assert build_processor(env, consumer).process(event) == {"batchItemFailures": []}

    assert lake_event_ids(env, lake) == {e["event_id"]: 1 for e in landing}
    assert state(env) == expected_state(landing)
    for consumer in (lake, st):
        kept = {(q["sequence_number"], q["sub_sequence_number"]): q for q in quarantined(env, consumer)}
        expected = {(records[2 * n + 1]["SequenceNumber"], 0): r for n, r in enumerate(reasons)}
        expected[(records[-2]["SequenceNumber"], 1)] = "missing_event_id"
        assert {k: q["reason"] for k, q in kept.items()} == expected
        assert all(q["error_class"] and q["message"] for q in kept.values())
        md5 = kept[(records[2 * reasons.index("md5_mismatch") + 1]["SequenceNumber"], 0)]
        assert base64.b64decode(md5["raw_base64"]) == poison["md5_mismatch"]
        assert md5["position"] == encode_position(md5["sequence_number"], 0)
        assert checkpoint(env, consumer, shard).counters["quarantined"] == len(expected)


def test_the_sample_kinesis_event_from_the_lambda_docs_is_quarantined_not_a_crash(
    env: Settings, names: tuple[str, str]
) -> None:
    """The example event of "Using Lambda with Kinesis Data Streams"
    (https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html): text data ("Hello, this is a
    test.") and, in the same shape, the JSON data of the event-filtering examples, neither of them
    our schema."""
    sample = {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                    "data": "SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==",
                    "approximateArrivalTimestamp": 1545084650.987,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-2",
                "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
            },
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": "49590338271490256608559692540925702759324208523137515618",
                    "data": base64.b64encode(
                        json.dumps({"RideNumber": 1, "RideStatus": "Completed", "Fare": 20.0}).encode()
                    ).decode(),
                    "approximateArrivalTimestamp": 1545084711.166,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": "shardId-000000000006:49590338271490256608559692540925702759324208523137515618",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-2",
                "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
            },
        ]
    }
    for consumer in names:
        assert build_processor(env, consumer).process(sample) == {"batchItemFailures": []}
        assert sorted(q["reason"] for q in quarantined(env, consumer)) == ["bad_magic", "missing_event_id"]
        cp = checkpoint(env, consumer, "shardId-000000000006")
        assert cp.position == encode_position("49590338271490256608559692540925702759324208523137515618", 0)
    assert lake_event_ids(env, names[0]) == {}
    assert state(env) == {}


def test_an_aggregate_holding_no_user_record_still_moves_the_checkpoint(
    env: Settings, names: tuple[str, str]
) -> None:
    event = generate(1, seed=30).__next__()
    records = put_records(env, [("k", kpl.MAGIC + hashlib.md5(b"").digest()), ("k", avro(event))])
    shard = shard_id(env)
    lake = names[0]
    processor = build_processor(env, lake)
    assert processor.process(lambda_event(env, records[:1], shard)) == {"batchItemFailures": []}
    assert checkpoint(env, lake, shard).position == encode_position(records[0]["SequenceNumber"], 0)
    assert processor.process(lambda_event(env, records, shard)) == {"batchItemFailures": []}
    assert lake_event_ids(env, lake) == {event["event_id"]: 1}
