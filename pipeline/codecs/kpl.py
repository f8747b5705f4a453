"""The KPL aggregated-record wire format.

Layout: magic ``F3 89 9A C2`` + protobuf ``AggregatedRecord`` + MD5 of the protobuf bytes.
``AggregatedRecord``: partition_key_table=1, explicit_hash_key_table=2, records=3.
``Record``: partition_key_index=1, explicit_hash_key_index=2, data=3, tags=4.
(https://github.com/awslabs/amazon-kinesis-producer/blob/master/aggregation-format.md)

The protobuf is written and read by hand: the message is small and fixed, and a hand parser is
several times faster than generated Python protobuf code on the consumer's hot path. Fields are
written in field-number order, as protobuf serializers do, so that for the same input our bytes
equal those of ``aws-kinesis-agg`` and the KPL.

The encoder is split into pieces (``key_entry``, ``record_header``, ``assemble``) so that the
producer's aggregator can account for the exact size of a record before it commits to adding it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain

from pipeline.errors import CorruptAggregate

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_SIZE = 16
OVERHEAD = len(MAGIC) + DIGEST_SIZE

_PK_TABLE = 0x0A  # field 1, length-delimited
_EHK_TABLE = 0x12  # field 2, length-delimited
_RECORD = 0x1A  # field 3, length-delimited (and Record.data, also field 3)
_PK_INDEX = 0x08  # Record field 1, varint
_EHK_INDEX = 0x10  # Record field 2, varint


@dataclass(frozen=True, slots=True)
class SubRecord:
    """One user record as carried inside (or instead of) an aggregated record."""

    partition_key: str
    data: bytes
    explicit_hash_key: str | None = None


# Decoding builds one SubRecord per user record; setting the slots directly skips the frozen
# dataclass's generated __init__, which is the largest cost left on the consumer's hot path.
_new = object.__new__
_set_pk = SubRecord.__dict__["partition_key"].__set__
_set_data = SubRecord.__dict__["data"].__set__
_set_ehk = SubRecord.__dict__["explicit_hash_key"].__set__


def _sub(pk: str, data: bytes, ehk: str | None) -> SubRecord:
    rec = _new(SubRecord)
    _set_pk(rec, pk)
    _set_data(rec, data)
    _set_ehk(rec, ehk)
    return rec


# -- encoding -------------------------------------------------------------------------------
def varint(value: int) -> bytes:
    """Encode a non-negative integer as a protobuf varint."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_size(value: int) -> int:
    """Number of bytes ``varint(value)`` takes."""
    if value < 0x80:
        return 1
    if value < 0x4000:
        return 2
    return (value.bit_length() + 6) // 7


def key_entry(key: bytes, explicit_hash_key: bool = False) -> bytes:
    """One entry of the partition key table (or, with the flag, of the explicit hash key table)."""
    n = len(key)
    tag = _EHK_TABLE if explicit_hash_key else _PK_TABLE
    if n < 0x80:
        return bytes((tag, n)) + key
    return bytes((tag,)) + varint(n) + key


def record_header(pk_index: int, ehk_index: int | None, data_len: int) -> bytes:
    """The bytes of one ``records`` entry that precede its data: tag, length and the indexes.

    The entry is ``record_header(...) + data``; its size is ``len(header) + data_len``.
    """
    if ehk_index is None and pk_index < 0x80 and data_len < 0x80:
        body = 4 + data_len
        if body < 0x80:
            return bytes((_RECORD, body, _PK_INDEX, pk_index, _RECORD, data_len))
    head = b"\x08" + varint(pk_index)
    if ehk_index is not None:
        head += b"\x10" + varint(ehk_index)
    head += b"\x1a" + varint(data_len)
    return b"\x1a" + varint(len(head) + data_len) + head


def assemble(
    pk_entries: Sequence[bytes], ehk_entries: Sequence[bytes], record_parts: Sequence[bytes]
) -> bytes:
    """Magic + the protobuf made of the given table entries and record parts + its MD5.

    The pieces are joined once, magic included, and the MD5 is taken over a view of the
    protobuf: two copies of the bytes instead of four (an aggregate is up to 1 MiB).
    """
    out = b"".join(chain((MAGIC,), pk_entries, ehk_entries, record_parts))
    with memoryview(out) as view:
        digest = hashlib.md5(view[4:]).digest()
    return out + digest


def encode(records: Sequence[SubRecord]) -> bytes:
    """Aggregate user records into one KPL record (magic + protobuf + MD5).

    >>> decode(encode([SubRecord("k", b"v")]))[0].data
    b'v'
    """
    pk_index: dict[str, int] = {}
    ehk_index: dict[str, int] = {}
    pk_entries: list[bytes] = []
    ehk_entries: list[bytes] = []
    parts: list[bytes] = []
    for rec in records:
        pki = pk_index.get(rec.partition_key)
        if pki is None:
            pki = pk_index[rec.partition_key] = len(pk_index)
            pk_entries.append(key_entry(rec.partition_key.encode("utf-8")))
        ehi = None
        if rec.explicit_hash_key is not None:
            ehi = ehk_index.get(rec.explicit_hash_key)
            if ehi is None:
                ehi = ehk_index[rec.explicit_hash_key] = len(ehk_index)
                ehk_entries.append(key_entry(rec.explicit_hash_key.encode("utf-8"), True))
        parts.append(record_header(pki, ehi, len(rec.data)))
        parts.append(rec.data)
    return assemble(pk_entries, ehk_entries, parts)


# -- decoding -------------------------------------------------------------------------------
def is_aggregated(data: bytes) -> bool:
    """True when ``data`` starts with the KPL magic bytes."""
    return data[:4] == MAGIC


def _truncated(what: str) -> CorruptAggregate:
    return CorruptAggregate("truncated_protobuf", f"aggregated record is malformed: {what}")


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _truncated("a varint runs past the end of its message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _truncated("a varint is longer than 10 bytes")


def _skip(buf: bytes, pos: int, end: int) -> int:
    """Skip one unknown field starting at its tag; return where the next field starts."""
    tag, pos = _read_varint(buf, pos, end)
    wire_type = tag & 7
    if wire_type == 0:
        pos = _read_varint(buf, pos, end)[1]
    elif wire_type == 2:
        length, pos = _read_varint(buf, pos, end)
        pos += length
    elif wire_type == 1:
        pos += 8
    elif wire_type == 5:
        pos += 4
    else:
        raise _truncated(f"unsupported protobuf wire type {wire_type}")
    if pos > end:
        raise _truncated("a field runs past the end of its message")
    return pos


def _decode(data: bytes) -> list[SubRecord]:
    n = len(data)
    if n < OVERHEAD:
        raise _truncated(f"only {n} bytes, less than magic + digest")
    view = memoryview(data)
    end = n - DIGEST_SIZE
    if hashlib.md5(view[4:end]).digest() != data[end:]:
        raise CorruptAggregate("md5_mismatch", "aggregated record fails its MD5 check (damaged in transit?)")
    pks: list[str] = []
    ehks: list[str] = []
    raw: list[tuple[int, int, bytes]] = []  # (pk index, ehk index or -1, data)
    append = raw.append
    read = _read_varint
    pos = 4
    try:
        while pos < end:
            key = data[pos]
            if key == _RECORD:
                length = data[pos + 1]
                if length < 0x80:
                    pos += 2
                else:
                    length, pos = read(data, pos + 1, end)
                stop = pos + length
                if stop > end:
                    raise _truncated("a record runs past the end of the message")
                pki = -1
                ehi = -1
                payload = b""
                while pos < stop:
                    k = data[pos]
                    if k == _RECORD:
                        dl = data[pos + 1]
                        if dl < 0x80 and pos + 1 < stop:
                            pos += 2
                        else:
                            dl, pos = read(data, pos + 1, stop)
                        nxt = pos + dl
                        if nxt > stop:
                            raise _truncated("record data runs past its record")
                        payload = data[pos:nxt]
                        pos = nxt
                    elif k == _PK_INDEX:
                        pki = data[pos + 1]
                        if pki < 0x80 and pos + 1 < stop:
                            pos += 2
                        else:
                            pki, pos = read(data, pos + 1, stop)
                    elif k == _EHK_INDEX:
                        ehi, pos = read(data, pos + 1, stop)
                    else:
                        pos = _skip(data, pos, stop)
                if pki < 0:
                    raise _truncated("a record has no partition_key_index")
                append((pki, ehi, payload))
            elif key == _PK_TABLE or key == _EHK_TABLE:
                length, pos = read(data, pos + 1, end)
                stop = pos + length
                if stop > end:
                    raise _truncated("a key runs past the end of the message")
                (pks if key == _PK_TABLE else ehks).append(str(view[pos:stop], "utf-8"))
                pos = stop
            else:
                pos = _skip(data, pos, end)
    except UnicodeDecodeError as exc:
        raise _truncated(f"a key is not UTF-8 ({exc.reason})") from None
    except IndexError:
        raise _truncated("the message ends inside a field") from None
    npk = len(pks)
    nehk = len(ehks)
    out: list[SubRecord] = []
    for pki, ehi, payload in raw:
        if pki >= npk:
            raise CorruptAggregate(
                "index_out_of_range", f"partition_key_index {pki} outside a table of {npk} keys"
            )
        if ehi < 0:
            out.append(_sub(pks[pki], payload, None))
        elif ehi < nehk:
            out.append(_sub(pks[pki], payload, ehks[ehi]))
        else:
            raise CorruptAggregate(
                "index_out_of_range", f"explicit_hash_key_index {ehi} outside a table of {nehk} keys"
            )
    return out


def iter_decode(data: bytes) -> Iterator[SubRecord]:
    """Yield the user records of one KPL aggregated record, verifying its MD5 first.

    Raises ``CorruptAggregate`` (with a ``reason``: ``md5_mismatch``, ``truncated_protobuf`` or
    ``index_out_of_range``) before yielding anything, so a corrupt record is never half-read.
    """
    return iter(_decode(data))


def decode(data: bytes) -> list[SubRecord]:
    """All user records of one KPL aggregated record (see ``iter_decode``)."""
    return _decode(data)


def deaggregate(data: bytes, partition_key: str) -> list[SubRecord]:
    """User records of one Kinesis record: its sub-records if aggregated, else itself."""
    if data[:4] != MAGIC:
        return [_sub(partition_key, data, None)]
    return _decode(data)
