"""Lambda Kinesis event → user records: base64 → deaggregate (MD5 checked) → Avro or JSON event.

The hot path decodes Avro with schemas whose logical types are stripped: the bytes read are the
same, but ``event_id`` stays a string and ``event_time`` an int of epoch milliseconds, which spares
a ``uuid.UUID`` and a ``datetime`` per event (about a quarter of the decode time) and matches
what a JSON payload carries. Each record keeps its Avro body in the reader schema, so the lake
writer copies bytes into container files instead of re-encoding events.

Bodies written with the reader schema are read by readers generated for it
(``pipeline.codecs.avro_reader``): a lean one on the single-pass aggregate path, the full one for
single payloads and whatever the lean one declines; other writer schemas go through fastavro's
schema resolution. Results are the same as fastavro's (tests compare them record for record).
"""

from __future__ import annotations

import binascii
import hashlib
import io
import json
import uuid
from binascii import a2b_base64
from collections.abc import Mapping, Sequence
from typing import Any

import fastavro
import fastavro.validation

from consumers.core.records import Poison, UserRecord, user_record
from pipeline.codecs import kpl
from pipeline.codecs.avro import HEADER as AVRO_HEADER
from pipeline.codecs.avro import HEADER_SIZE, SchemaRegistry
from pipeline.codecs.avro_reader import Reader, Unsupported, compile_reader, read_exactly
from pipeline.codecs.positions import SEQ_WIDTH, SUB_WIDTH
from pipeline.coldstart import no_collection
from pipeline.errors import PoisonRecord, UndecodablePayload

_MAGIC = kpl.MAGIC
_SUBS = [f"{i:0{SUB_WIDTH}d}" for i in range(1024)]  # sub-sequence parts of positions, made once


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A protobuf varint at ``pos``: (value, position after it); IndexError past ``end``."""
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise IndexError("varint runs past its field")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _record_fields(raw: bytes, pos: int, stop: int, max_ehi: int) -> tuple[int, int, int, int]:
    """The fields of a KPL ``Record`` message in ``raw[pos:stop]``, walked one by one: (partition key
    index, data start, data end, highest explicit hash key index so far); a partition key index of
    -1 when the message is anything but index fields and one data field (tags, unknown fields)."""
    pki = ds = de = -1
    while pos < stop:
        k = raw[pos]
        if k == 0x08:
            pki, pos = _varint(raw, pos + 1, stop)
        elif k == 0x10:
            ehi, pos = _varint(raw, pos + 1, stop)
            if ehi > max_ehi:
                max_ehi = ehi  # checked once the tables are known
        elif k == 0x1A:
            dl, pos = _varint(raw, pos + 1, stop)
            ds = pos
            pos = de = pos + dl
        else:
            return -1, -1, -1, max_ehi  # the reference parser handles tags and unknown fields
    if pos != stop or ds < 0:
        return -1, -1, -1, max_ehi
    return pki, ds, de, max_ehi


def shard_of(record: Mapping[str, Any]) -> str:
    """Shard id of one Lambda Kinesis record (``eventID`` is ``shardId-…:sequence``).

    Example:
        >>> shard_of({"eventID": "shardId-000000000006:4959"})
        'shardId-000000000006'
    """
    return str(record["eventID"]).rsplit(":", 1)[0]


def _strip_logical(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical(v) for v in schema]
    return schema


def _plain(schema: Any) -> Any:
    """A parsed copy of ``schema`` that reads logical types as their underlying Avro types."""
    clean = {k: v for k, v in schema.items() if not k.startswith("__")}
    return fastavro.parse_schema(_strip_logical(clean))


class Decoder:
    """Turns the ``Records`` of a Lambda Kinesis event into user records and poison.

    Payloads: Avro single-object encoding (writer schema by fingerprint, read into the reader
    schema) or a JSON object checked against the reader schema. Anything else is poison with a
    reason: ``bad_base64``, ``md5_mismatch``, ``truncated_protobuf``, ``index_out_of_range``,
    ``bad_magic``, ``unknown_fingerprint``, ``truncated_avro``, ``trailing_bytes``, ``bad_json``,
    ``invalid_event``, ``missing_event_id``.

    ``fields`` names the event fields the caller reads (the event id is always one): events from
    KPL aggregates then hold those fields only, and the others are checked but not built. Events
    from other paths hold every field. Which events are poison, and why, does not change.

    Example:
        >>> from pipeline.codecs.avro import SchemaRegistry
        >>> reg = SchemaRegistry.load()
        >>> Decoder(reg).payload(reg.encode(reg.example()))[0]["customer_id"]
        'c-0001'
    """

    def __init__(
        self, registry: SchemaRegistry, fast: bool = True, fields: Sequence[str] | None = None
    ) -> None:
        self.registry = registry
        self.reader = _plain(registry.reader)
        self.reader_fingerprint = registry.reader_fingerprint
        self.writers = {fp: _plain(s) for fp, s in registry.by_fingerprint.items()}
        self.fields = [f for f in registry.reader["fields"]]
        self._header = AVRO_HEADER + self.reader_fingerprint
        # Bodies written with the reader schema are read by a reader generated for it; other writer
        # schemas go through fastavro's schema resolution. ``fast=False`` keeps fastavro for all and
        # turns off the single-pass aggregate path: the reference the tests compare against.
        self._read: Reader | None = None
        self._lean: Reader | None = None
        self._single_pass = fast
        if fast:
            try:
                self._read = compile_reader(self.reader)
                self._lean = self._aggregate_reader(fields)
            except Unsupported:
                self._read = self._lean = None

    def _aggregate_reader(self, fields: Sequence[str] | None) -> Reader:
        """The reader of the single-pass aggregate path: of the fields the sink uses (and the
        event id) when it names them, declining events with a string not in ASCII, which the full
        reader then reads whole; otherwise the lean reader of every field."""
        if fields is not None:
            try:
                return compile_reader(self.reader, fields=frozenset(fields) | {"event_id"})
            except Unsupported:
                pass
        return compile_reader(self.reader, lean=True)

    def _avro(self, data: bytes) -> tuple[dict[str, Any], bytes]:
        fp = data[2:HEADER_SIZE]
        writer = self.writers.get(fp)
        if writer is None:
            raise UndecodablePayload("unknown_fingerprint", f"no schema with fingerprint {fp.hex()}")
        same = fp == self.reader_fingerprint
        try:
            if same and self._read is not None:
                event, end = read_exactly(self._read, data, HEADER_SIZE)
            else:
                buf = io.BytesIO(data)
                buf.seek(HEADER_SIZE)
                event = fastavro.schemaless_reader(buf, writer, None if same else self.reader)
                end = buf.tell()
        except Exception as exc:  # EOFError, IndexError, StopIteration, ValueError from bad bodies
            raise UndecodablePayload(
                "truncated_avro", f"Avro body does not decode: {type(exc).__name__}: {exc}"
            ) from None
        if end != len(data):
            raise UndecodablePayload("trailing_bytes", f"{len(data) - end} bytes after the Avro body")
        if same:
            return event, data[HEADER_SIZE:]
        return event, self._encode(event)

    def _encode(self, event: Mapping[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, self.reader, event)
        return out.getvalue()

    def _json(self, data: bytes) -> tuple[dict[str, Any], bytes]:
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise UndecodablePayload("bad_json", f"JSON payload does not parse: {exc}") from None
        if not isinstance(event, dict):
            raise UndecodablePayload("bad_json", "JSON payload is not an object")
        if not event.get("event_id"):
            raise UndecodablePayload("missing_event_id", "JSON event has no event_id")
        for f in self.fields:  # fields the producer may omit take their schema default
            if f["name"] not in event and "default" in f:
                event[f["name"]] = f["default"]
        unknown = sorted(set(event) - {f["name"] for f in self.fields})
        if unknown:
            raise UndecodablePayload("invalid_event", f"JSON event has fields outside the schema: {unknown}")
        try:
            event["event_id"] = str(uuid.UUID(str(event["event_id"])))
        except ValueError:
            raise UndecodablePayload(
                "invalid_event", f"event_id {event['event_id']!r} is not a UUID"
            ) from None
        try:
            fastavro.validation.validate(event, self.reader, raise_errors=True)
        except Exception as exc:  # fastavro raises ValidationError with a list of messages
            raise UndecodablePayload(
                "invalid_event", f"JSON event does not match the schema: {exc}"
            ) from None
        return event, self._encode(event)

    def _aggregate(
        self, raw: bytes, seq: str, head: str, arrival: float, out: list[UserRecord], poison: list[Poison]
    ) -> bool:
        """One KPL record in a single pass over its bytes: the protobuf walked in place and each Avro
        body read from the same buffer by the generated reader, at an offset, without copies. Returns
        False when anything is unusual (bad digest, unknown field, a key table after the records,
        index out of range); what it appended is then dropped by the caller, which takes the
        reference path (``pipeline.codecs.kpl``) that names the problem. A user record that does not
        decode here is re-decoded by ``payload`` for its exact poison reason, so results are the same."""
        end = len(raw) - 16
        if end < 4 or hashlib.md5(memoryview(raw)[4:end]).digest() != raw[end:]:
            return False
        read = self._lean
        header = self._header
        starts = raw.startswith
        append = out.append
        new = tuple.__new__
        pks: list[str] = []
        n_pk = n_ehk = 0
        max_ehi = -1
        sub = 0
        subs = _SUBS
        n_subs = len(subs)
        pos = 4
        try:
            while pos < end:
                tag = raw[pos]
                ln = raw[pos + 1]
                pos += 2
                if ln >= 0x80:  # records of 128 B-16 KiB: two bytes, read inline
                    b2 = raw[pos]
                    if b2 < 0x80:
                        ln = (ln & 0x7F) | (b2 << 7)
                        pos += 1
                    else:
                        ln, pos = _varint(raw, pos - 1, end)
                stop = pos + ln
                if stop > end:
                    return False
                if tag == 0x1A:  # Record: partition_key_index=1, explicit_hash_key_index=2, data=3
                    # The layout every KPL writes: 08 <key index> 1A <data length> <data>, indexes
                    # and lengths in one or two bytes; anything else is walked field by field.
                    pki = raw[pos + 1]
                    ds = pos + 2
                    if pki >= 0x80:
                        pki = (pki & 0x7F) | (raw[ds] << 7)
                        ds += 1
                    dl = raw[ds + 1]
                    if dl >= 0x80:
                        dl = (dl & 0x7F) | (raw[ds + 2] << 7)
                        ds += 3
                    else:
                        ds += 2
                    de = ds + dl
                    if de != stop or raw[pos] != 0x08 or raw[ds - 2 - (dl >= 0x80)] != 0x1A or pki >= 0x4000:
                        pki, ds, de, max_ehi = _record_fields(raw, pos, stop, max_ehi)
                    pos = stop
                    if pki < 0 or pki >= n_pk:
                        return False
                    position = head + (subs[sub] if sub < n_subs else f"{sub:0{SUB_WIDTH}d}")
                    # The body is read from its own copy (kept as the record's ``body``): offsets
                    # in a ~200 B buffer are small ints, which Python does not allocate. A body read
                    # past its end (or one shorter than its header) does not end at ``len(body)``.
                    if read is not None and starts(header, ds):
                        body = raw[ds + HEADER_SIZE : de]
                        try:
                            event, p = read(body, 0)
                        except Exception:  # the reference path below names the problem
                            p = -1
                        if p == len(body) and event["event_id"]:
                            append(new(UserRecord, (position, seq, sub, pks[pki], event, arrival, body)))
                            sub += 1
                            continue
                    data = raw[ds:de]
                    try:
                        event, avro = self.payload(data)
                        append(user_record(position, seq, sub, pks[pki], event, arrival, avro))
                    except PoisonRecord as exc:
                        poison.append(
                            Poison(
                                position, seq, sub, pks[pki], data, exc.reason, type(exc).__name__, str(exc)
                            )
                        )
                    sub += 1
                elif tag == 0x0A:
                    pks.append(raw[pos:stop].decode("utf-8"))
                    n_pk += 1
                    pos = stop
                elif tag == 0x12:
                    raw[pos:stop].decode("utf-8")  # validated like the reference parser does
                    n_ehk += 1
                    pos = stop
                else:
                    return False
        except (IndexError, UnicodeDecodeError):
            return False
        return max_ehi < n_ehk

    def payload(self, data: bytes) -> tuple[dict[str, Any], bytes]:
        """Decode one user-record payload into (event, Avro body in the reader schema)."""
        if data[:2] == AVRO_HEADER:
            event, body = self._avro(data)
        elif data[:1] == b"{":
            event, body = self._json(data)
        else:
            raise UndecodablePayload(
                "bad_magic",
                f"payload starts with {data[:4].hex() or 'nothing'}: not KPL, Avro single-object or JSON",
            )
        if not event.get("event_id"):
            raise UndecodablePayload("missing_event_id", "event has an empty event_id")
        return event, body

    def decode(self, records: Sequence[Mapping[str, Any]]) -> tuple[list[UserRecord], list[Poison]]:
        """All user records of a batch in position order, and the poison among them.

        The cyclic garbage collector is paused while the batch decodes: decoding makes ~3 container
        objects per event and keeps them all, which sets off repeated full collections over a growing
        heap (about a seventh of the decode time) that cannot find garbage, as decoding makes no
        reference cycles. It is resumed afterwards, unless it was off already."""
        with no_collection():
            return self._decode(records)

    def _decode(self, records: Sequence[Mapping[str, Any]]) -> tuple[list[UserRecord], list[Poison]]:
        out: list[UserRecord] = []
        poison: list[Poison] = []
        payload = self.payload
        for rec in records:
            k = rec["kinesis"]
            seq = k["sequenceNumber"]
            # encode_position, inlined: it runs once per user record.
            head = f"{int(seq):0{SEQ_WIDTH}d}."
            pk = k.get("partitionKey", "")
            arrival = float(k.get("approximateArrivalTimestamp") or 0.0)
            try:
                # What b64decode(validate=True) checks, without its regular expression run over
                # the whole text first.
                raw = a2b_base64(k["data"], strict_mode=True)
            except (binascii.Error, ValueError, TypeError) as exc:
                raw_text = str(k.get("data", "")).encode("utf-8", "replace")
                poison.append(
                    Poison(
                        f"{head}{0:0{SUB_WIDTH}d}",
                        seq,
                        0,
                        pk,
                        raw_text,
                        "bad_base64",
                        type(exc).__name__,
                        f"record data is not base64: {exc}",
                    )  # fmt: skip
                )
                continue
            if self._single_pass and raw[:4] == _MAGIC:
                mark = len(out), len(poison)
                if self._aggregate(raw, seq, head, arrival, out, poison):
                    continue
                del out[mark[0] :], poison[mark[1] :]
            try:
                subs = kpl.deaggregate(raw, pk)
            except PoisonRecord as exc:
                position = f"{head}{0:0{SUB_WIDTH}d}"
                poison.append(Poison(position, seq, 0, pk, raw, exc.reason, type(exc).__name__, str(exc)))
                continue
            for sub, user in enumerate(subs):
                position = f"{head}{sub:0{SUB_WIDTH}d}"
                try:
                    event, body = payload(user.data)
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
                        )  # fmt: skip
                    )
                    continue
                out.append(user_record(position, seq, sub, user.partition_key, event, arrival, body))
        return out, poison
