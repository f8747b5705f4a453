"""The decoder on its own (no server): payload kinds, poison reasons, positions, schema evolution."""

from __future__ import annotations

import base64
import hashlib
import json

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.core.decode import Decoder
from pipeline.codecs import kpl
from pipeline.codecs.avro import SCHEMA_DIR, SchemaRegistry
from pipeline.codecs.positions import encode_position
from pipeline.events import generate

REG = SchemaRegistry.load()


def _lambda(seq: str, data: bytes) -> dict:
    return {
        "kinesis": {"partitionKey": "k", "sequenceNumber": seq, "data": base64.b64encode(data).decode()},
        "eventID": f"shardId-000000000000:{seq}",
    }


def test_avro_json_and_aggregated_payloads_decode_to_the_same_plain_event() -> None:
    event = REG.example()
    agg = kpl.encode([kpl.SubRecord("a", REG.encode(event)), kpl.SubRecord("a", json.dumps(event).encode())])
    decoded, poison = Decoder(REG).decode([_lambda("5", REG.encode(event)), _lambda("6", agg)])
    assert poison == []
    assert [r.position for r in decoded] == [encode_position(5), encode_position(6, 0), encode_position(6, 1)]
    assert all(r.event == event for r in decoded)
    assert {r.body for r in decoded} == {REG.encode(event)[10:]}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"Hello, this is a test.", "bad_magic"),
        (b"", "bad_magic"),
        (b"{not json", "bad_json"),
        (b'{"event_id": "not-a-uuid"}', "invalid_event"),
        (b'{"customer_id": "c-1"}', "missing_event_id"),
        (REG.encode(REG.example())[:-3], "truncated_avro"),
        (REG.encode(REG.example()) + b"\x00", "trailing_bytes"),
    ],
)
def test_each_bad_payload_is_poison_with_its_reason(payload: bytes, reason: str) -> None:
    decoded, poison = Decoder(REG).decode([_lambda("1", payload)])
    assert decoded == []
    assert [p.reason for p in poison] == [reason]
    assert poison[0].raw == payload


def test_an_older_writer_schema_decodes_into_the_reader_schema_with_defaults() -> None:
    schema = json.loads((SCHEMA_DIR / "order_event.avsc").read_text())
    old = dict(schema, fields=[f for f in schema["fields"] if f["name"] != "shipping_country"])
    registry = SchemaRegistry({"v1": fastavro.parse_schema(old), "order_event": REG.reader}, "order_event")
    event = {k: v for k, v in REG.example().items() if k != "shipping_country"}
    decoded, poison = Decoder(registry).decode([_lambda("3", registry.encode(event, "v1"))])
    assert poison == []
    assert decoded[0].event["shipping_country"] is None
    assert decoded[0].body == REG.encode({**event, "shipping_country": None})[10:]


def _reference() -> Decoder:
    """The reference decoder: ``pipeline.codecs.kpl`` + ``payload`` with fastavro, no generated reader."""
    return Decoder(REG, fast=False)


_EVENTS = list(generate(6, customers=2, seed=8))
_AGG = kpl.encode(
    [
        kpl.SubRecord(e["customer_id"], REG.encode(e), "170141183460469231731687303715884105728")
        for e in _EVENTS
    ]
    + [kpl.SubRecord("j", json.dumps(_EVENTS[0]).encode()), kpl.SubRecord("x", b"\x00junk")]
)


# The layout the KPL writes without explicit hash keys, with partition key indexes past 127 and
# bodies past 127 bytes (two-byte varints), which the single-pass walk reads without its loop.
_WIDE = [dict(e, attributes={"k": "v" * 60}) for e in generate(140, customers=140, seed=9)]
_PLAIN_AGG = kpl.encode(
    [kpl.SubRecord(e["customer_id"], REG.encode(e)) for e in _WIDE]
    + [kpl.SubRecord("j", json.dumps(_EVENTS[0]).encode()), kpl.SubRecord("x", b"\x00junk")]
)


_LAKE_FIELDS = ("event_id", "event_time")
_STATE_FIELDS = ("event_id", "event_time", "customer_id", "event_type", "amount_cents")


def _projected(event: dict, fields: tuple[str, ...] | None) -> list[dict]:
    """What a decoder reading ``fields`` may return for ``event``: those fields, or (for an event
    it read whole) every field."""
    return [event] if fields is None else [{k: v for k, v in event.items() if k in fields}, event]


@pytest.mark.parametrize("fields", [None, _LAKE_FIELDS, _STATE_FIELDS], ids=["all", "lake", "state"])
@pytest.mark.parametrize("aggregate", [_AGG, _PLAIN_AGG], ids=["explicit-hash-keys", "plain"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_single_pass_aggregate_path_gives_what_the_reference_path_gives(
    aggregate: bytes, fields: tuple[str, ...] | None, data: st.DataObject
) -> None:
    """Byte-compatible by construction: damaged aggregates (any byte, MD5 fixed up or not) decode to
    the same user records and the same poison reasons either way; a decoder that reads some fields
    returns those fields of the same events."""
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(min_value=0, max_value=len(aggregate) - 1), st.integers(0, 255)), max_size=3
        )
    )
    damaged = bytearray(aggregate)
    for i, v in flips:
        damaged[i] = v
    body = bytes(damaged[4:-16])
    for blob in (bytes(damaged), kpl.MAGIC + body + hashlib.md5(body).digest()):
        record = _lambda("77", blob)
        fast, slow = Decoder(REG, fields=fields).decode([record]), _reference().decode([record])
        assert [(r.position, r.partition_key, r.body) for r in fast[0]] == [
            (r.position, r.partition_key, r.body) for r in slow[0]
        ]
        assert all(f.event in _projected(s.event, fields) for f, s in zip(fast[0], slow[0], strict=True))
        assert [(p.position, p.reason) for p in fast[1]] == [(p.position, p.reason) for p in slow[1]]


def test_a_decoder_reading_some_fields_builds_only_those_from_aggregates() -> None:
    decoded, poison = Decoder(REG, fields=_LAKE_FIELDS).decode([_lambda("9", _PLAIN_AGG)])
    assert [p.reason for p in poison] == ["bad_magic"]
    full, _ = Decoder(REG).decode([_lambda("9", _PLAIN_AGG)])
    assert [r.event for r in decoded[:-1]] == [_projected(r.event, _LAKE_FIELDS)[0] for r in full[:-1]]
    assert decoded[-1].event == full[-1].event  # the JSON payload: read whole
    assert [r.body for r in decoded] == [r.body for r in full]


@pytest.mark.parametrize(
    "text", ["", "QQ==", "QQ", "QQ=", "Q===", "=QQ=", "QQ==QQ==", "Q Q=", "QQ\n", "Qé==", "QUJD", "QUJD="]
)
def test_base64_is_checked_as_b64decode_with_validate_checks_it(text: str) -> None:
    record = {"kinesis": {"partitionKey": "k", "sequenceNumber": "1", "data": text}, "eventID": "s:1"}
    try:
        base64.b64decode(text, validate=True)
        valid = True
    except ValueError:
        valid = False
    _, poison = Decoder(REG).decode([record])
    assert ("bad_base64" not in [p.reason for p in poison]) == valid


def test_the_plain_aggregate_takes_the_single_pass_path() -> None:
    decoded, poison = Decoder(REG).decode([_lambda("9", _PLAIN_AGG)])
    assert len(decoded) == len(_WIDE) + 1 and [p.reason for p in poison] == ["bad_magic"]
    assert max(len(r.body or b"") for r in decoded) >= 128
