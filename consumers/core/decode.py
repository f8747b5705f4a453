"""Lambda Kinesis event → user records: base64 → deaggregate (MD5 checked) → Avro or JSON event."""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from collections.abc import Mapping, Sequence
from typing import Any

from consumers.core.records import Poison, UserRecord
from pipeline.codecs import kpl
from pipeline.codecs.avro import HEADER as AVRO_HEADER
from pipeline.codecs.avro import SchemaRegistry
from pipeline.codecs.positions import encode_position
from pipeline.errors import PoisonRecord, UndecodablePayload


def shard_of(record: Mapping[str, Any]) -> str:
    """Shard id of one Lambda Kinesis record (``eventID`` is ``shardId-…:sequence``)."""
    return str(record["eventID"]).rsplit(":", 1)[0]


class Decoder:
    """Turns the ``Records`` of a Lambda Kinesis event into user records and poison."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry

    def payload(self, data: bytes) -> dict[str, Any]:
        """Decode one user-record payload: Avro single-object, or a JSON object of the schema."""
        if data[:2] == AVRO_HEADER:
            event = self.registry.decode(data)
        elif data[:1] == b"{":
            try:
                event = json.loads(data)
            except ValueError as exc:
                raise UndecodablePayload("bad_json", f"JSON payload does not parse: {exc}") from None
            if not isinstance(event, dict):
                raise UndecodablePayload("bad_json", "JSON payload is not an object")
            self.registry.validate(event)
        else:
            raise UndecodablePayload(
                "unknown_payload", f"payload starts with {data[:4].hex()}: neither Avro nor JSON"
            )
        if not event.get("event_id"):
            raise UndecodablePayload("missing_event_id", "event has no event_id")
        return event

    def decode(self, records: Sequence[Mapping[str, Any]]) -> tuple[list[UserRecord], list[Poison]]:
        """All user records of a batch in position order, and the poison among them."""
        out: list[UserRecord] = []
        poison: list[Poison] = []
        for rec in records:
            k = rec["kinesis"]
            seq = k["sequenceNumber"]
            pk = k.get("partitionKey", "")
            arrival = float(k.get("approximateArrivalTimestamp") or 0.0)
            try:
                raw = b64decode(k["data"], validate=True)
            except (binascii.Error, ValueError, TypeError) as exc:
                raw_text = str(k.get("data", "")).encode("utf-8", "replace")
                poison.append(
                    Poison(
                        encode_position(seq, 0),
                        seq,
                        0,
                        pk,
                        raw_text,
                        "bad_base64",
                        type(exc).__name__,
                        f"record data is not base64: {exc}",
                    )
                )
                continue
            try:
                subs = kpl.deaggregate(raw, pk)
            except PoisonRecord as exc:
                poison.append(
                    Poison(encode_position(seq, 0), seq, 0, pk, raw, exc.reason, type(exc).__name__, str(exc))
                )
                continue
            for sub, user in enumerate(subs):
                position = encode_position(seq, sub)
                try:
                    event = self.payload(user.data)
                except PoisonRecord as exc:
                    poison.append(
                        Poison(
                            position,
                            seq,
                            sub,
                            user.partition_key,
                            user.data,
                            exc.reason,
                            type(exc).__name__,
                            str(exc),
                        )
                    )
                    continue
                out.append(UserRecord(position, seq, sub, user.partition_key, event, arrival))
        return out, poison
