"""Avro single-object encoding (``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint + body).

Writer schemas are resolved by fingerprint from the ``.avsc`` files of a schema folder; events are
read with the reader schema, so old and new writers both decode (schema evolution both ways).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from pipeline.codecs.avro_writer import Fallback, Writer, compile_writer
from pipeline.errors import UndecodablePayload

HEADER = b"\xc3\x01"
HEADER_SIZE = 10
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

_EMPTY = 0xC15D213AA4D7A795
_TABLE: list[int] = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    """The Rabin CRC-64 fingerprint the Avro specification defines."""
    fp = _EMPTY
    table = _TABLE
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def fingerprint(schema: Any) -> bytes:
    """8-byte little-endian fingerprint of a parsed schema's parsing canonical form."""
    canonical = to_parsing_canonical_form(schema)
    return struct.pack("<Q", crc64_avro(canonical.encode("utf-8")))


class SchemaRegistry:
    """Writer schemas by fingerprint, plus the reader schema this process decodes into.

    >>> reg = SchemaRegistry.load()
    >>> reg.decode(reg.encode(reg.example()))["customer_id"]
    'c-0001'
    """

    def __init__(self, schemas: Mapping[str, Any], reader: str) -> None:
        self.by_name: dict[str, Any] = dict(schemas)
        if reader not in self.by_name:
            raise UndecodablePayload("unknown_schema", f"reader schema {reader!r} not found")
        self.reader_name = reader
        self.reader = self.by_name[reader]
        fingerprints = {name: fingerprint(s) for name, s in self.by_name.items()}
        self.by_fingerprint: dict[bytes, Any] = {fingerprints[n]: s for n, s in self.by_name.items()}
        self.reader_fingerprint = fingerprints[reader]
        self._headers = {name: HEADER + fp for name, fp in fingerprints.items()}  # made once, not per event
        self._header = self._headers[reader]
        # Generated per schema (pipeline.codecs.avro_writer): the same bytes as fastavro's writer
        # for plain values at a fraction of the CPU; anything else is written by fastavro.
        self._writers: dict[str, Writer | None] = {
            n: compile_writer(s, self._headers[n]) for n, s in self.by_name.items()
        }
        self._reader_writer = self._writers[reader]

    @classmethod
    def load(cls, folder: Path = SCHEMA_DIR, reader: str = "order_event") -> SchemaRegistry:
        """Load every ``*.avsc`` in ``folder``; ``reader`` names the file stem to decode into."""
        schemas = {}
        for path in sorted(folder.glob("*.avsc")):
            schemas[path.stem] = fastavro.parse_schema(json.loads(path.read_text()))
        return cls(schemas, reader)

    def encode(self, event: Mapping[str, Any], schema: str | None = None) -> bytes:
        """Single-object encoding of ``event`` with the named (default: reader) schema."""
        write = self._writers[schema] if schema else self._reader_writer
        header = self._headers[schema] if schema else self._header
        if write is not None:
            try:
                return write(event)
            except Fallback:
                pass
        parsed = self.by_name[schema] if schema else self.reader
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed, event)
        return buf.getvalue()

    def validate(self, event: Mapping[str, Any]) -> None:
        """Raise ``UndecodablePayload`` unless ``event`` matches the reader schema."""
        from fastavro.validation import validate

        try:
            validate(event, self.reader, raise_errors=True)
        except Exception as exc:  # fastavro raises ValidationError with a list of messages
            raise UndecodablePayload("invalid_event", f"event does not match schema: {exc}") from None

    def decode(self, payload: bytes) -> dict[str, Any]:
        """Decode one single-object-encoded payload into the reader schema."""
        if payload[:2] != HEADER:
            raise UndecodablePayload("bad_avro_header", "payload lacks the Avro C3 01 header")
        writer = self.by_fingerprint.get(payload[2:HEADER_SIZE])
        if writer is None:
            raise UndecodablePayload(
                "unknown_fingerprint",
                f"no schema with fingerprint {payload[2:HEADER_SIZE].hex()}",
            )
        buf = io.BytesIO(payload)
        buf.seek(HEADER_SIZE)
        try:
            if writer is self.reader:
                event = fastavro.schemaless_reader(buf, writer, None)
            else:
                event = fastavro.schemaless_reader(buf, writer, self.reader)
        except Exception as exc:  # EOFError, StopIteration, ValueError from truncated bodies
            raise UndecodablePayload(
                "truncated_avro", f"Avro body does not decode: {type(exc).__name__}: {exc}"
            ) from None
        if buf.tell() != len(payload):
            raise UndecodablePayload(
                "trailing_bytes", f"{len(payload) - buf.tell()} bytes after the Avro body"
            )
        return event  # type: ignore[return-value]

    def example(self) -> dict[str, Any]:
        """A fixed valid event, for docs and smoke checks."""
        return {
            "event_id": "00000000-0000-4000-8000-000000000001",
            "event_time": 1_795_000_000_000,
            "customer_id": "c-0001",
            "order_id": "o-0001",
            "event_type": "CREATED",
            "amount_cents": 1999,
            "currency": "EUR",
            "channel": "WEB",
            "attributes": {},
            "coupon_code": None,
            "shipping_country": "DE",
        }
