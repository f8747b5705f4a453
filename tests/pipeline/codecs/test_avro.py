"""Avro single-object encoding: round trips, fingerprints, schema evolution and poison."""

from __future__ import annotations

import json
import struct

import fastavro
import pytest

from pipeline.codecs.avro import HEADER, SchemaRegistry, crc64_avro, fingerprint
from pipeline.errors import UndecodablePayload
from pipeline.events import generate


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry.load()


def test_generated_events_round_trip(registry: SchemaRegistry) -> None:
    for event in generate(200, seed=3):
        decoded = registry.decode(registry.encode(event))
        assert str(decoded["event_id"]) == event["event_id"]
        assert int(decoded["event_time"].timestamp() * 1000) == event["event_time"]
        for field in (
            "customer_id",
            "order_id",
            "event_type",
            "amount_cents",
            "currency",
            "channel",
            "attributes",
            "coupon_code",
            "shipping_country",
        ):
            assert decoded[field] == event[field]


def test_header_is_c301_and_little_endian_crc64_of_canonical_form(registry: SchemaRegistry) -> None:
    """Avro spec, single-object encoding: 0xC3 0x01, then the 8-byte little-endian CRC-64-AVRO
    fingerprint of the schema's parsing canonical form, then the binary body."""
    payload = registry.encode(registry.example())
    assert payload[:2] == HEADER
    canonical = fastavro.schema.to_parsing_canonical_form(registry.reader)
    # fastavro prints the fingerprint as the hex of its little-endian bytes.
    assert payload[2:10].hex() == fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
    assert struct.unpack("<Q", payload[2:10])[0] == crc64_avro(canonical.encode())


def test_crc64_of_empty_input_is_the_spec_constant() -> None:
    assert crc64_avro(b"") == 0xC15D213AA4D7A795


def test_evolved_writer_schema_reads_into_reader_schema(tmp_path, registry: SchemaRegistry) -> None:
    """A writer schema with a field the reader lacks, and lacking a defaulted reader field."""
    schema = json.loads((registry_path := _schema_path()).read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "channel"]
    schema["fields"].append({"name": "loyalty_tier", "type": "string", "default": "none"})
    (tmp_path / "order_event.avsc").write_text(registry_path.read_text())
    (tmp_path / "order_event_v2.avsc").write_text(json.dumps(schema))
    reg = SchemaRegistry.load(tmp_path)
    event = {k: v for k, v in reg.example().items() if k != "channel"}
    event["loyalty_tier"] = "gold"
    decoded = reg.decode(reg.encode(event, schema="order_event_v2"))
    assert decoded["channel"] == "WEB"  # the reader's default
    assert "loyalty_tier" not in decoded


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b"\x00\x01" + b[2:], "bad_avro_header"),
        (lambda b: b[:2] + b"\xff" * 8 + b[10:], "unknown_fingerprint"),
        (lambda b: b[:20], "truncated_avro"),
        (lambda b: b + b"\x00\x00", "trailing_bytes"),
    ],
)
def test_bad_payloads_raise_with_their_reason(registry: SchemaRegistry, mutate, reason) -> None:
    payload = registry.encode(registry.example())
    with pytest.raises(UndecodablePayload) as info:
        registry.decode(mutate(payload))
    assert info.value.reason == reason


def test_fingerprint_differs_between_schema_versions(registry: SchemaRegistry) -> None:
    other = dict(registry.reader)
    other["fields"] = registry.reader["fields"][:-1]
    assert fingerprint(other) != registry.reader_fingerprint


def _schema_path():
    from pipeline.codecs.avro import SCHEMA_DIR

    return SCHEMA_DIR / "order_event.avsc"
