"""The generated Avro readers against fastavro: same values for valid bodies, an error (never a wrong
value) for truncated or damaged ones."""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consumers.core.decode import Decoder, _plain
from pipeline.codecs.avro import HEADER, SchemaRegistry
from pipeline.codecs.avro_reader import Unsupported, compile_reader, read_exactly, reader_source

REG = SchemaRegistry.load()
ORDER = _plain(REG.reader)  # the reader schema as the decoder reads it: logical types as plain types
READERS = {"full": compile_reader(ORDER), "lean": compile_reader(ORDER, lean=True)}

text = st.text(st.characters(codec="utf-8"), max_size=80)
longs = st.integers(-(2**63), 2**63 - 1)


def _symbols(name: str) -> list[str]:
    field = next(f for f in ORDER["fields"] if f["name"] == name)
    return list(field["type"]["symbols"])


order_events = st.fixed_dictionaries(
    {
        "event_id": text,
        "event_time": longs,
        "customer_id": text,
        "order_id": text,
        "event_type": st.sampled_from(_symbols("event_type")),
        "amount_cents": longs,
        "currency": st.sampled_from(_symbols("currency")),
        "channel": st.sampled_from(_symbols("channel")),
        "attributes": st.dictionaries(text, text, max_size=6),
        "coupon_code": st.none() | text,
        "shipping_country": st.none() | text,
    }
)


def _encode(schema: Any, value: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, value)
    return out.getvalue()


def _fastavro(schema: Any, body: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(body), schema, None)


@pytest.mark.parametrize("kind", ["full", "lean"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=order_events)
def test_order_events_read_as_fastavro_reads_them(kind: str, event: dict[str, Any]) -> None:
    body = _encode(ORDER, event)
    expected = _fastavro(ORDER, body)
    if kind == "lean":
        try:
            value, end = READERS["lean"](body, 0)
        except Exception:  # beyond the lean reader's scope (long strings): the caller rereads
            return
        if end != len(body):
            assert end > len(body)
            return
    else:
        value, end = READERS["full"](body, 0)
    assert end == len(body)
    assert value == expected == event
    assert list(value) == list(expected)  # same field order


@settings(max_examples=300, deadline=None)
@given(event=order_events, data=st.data())
def test_a_truncated_body_is_an_error_never_a_value(event: dict[str, Any], data: st.DataObject) -> None:
    body = _encode(ORDER, event)
    cut = data.draw(st.integers(0, len(body) - 1))
    for read in READERS.values():
        try:
            value, end = read(body[:cut], 0)
        except Exception:
            continue
        assert end > cut, f"read {value!r} from a truncated body"
    with pytest.raises(Exception):  # noqa: B017 - any exception: the decoder maps all to one reason
        read_exactly(READERS["full"], body[:cut])


@settings(max_examples=200, deadline=None)
@given(event=order_events, data=st.data())
def test_a_truncated_payload_is_truncated_avro_poison(event: dict[str, Any], data: st.DataObject) -> None:
    payload = REG.encode(event)
    cut = data.draw(st.integers(len(HEADER) + 8, len(payload) - 1))
    with pytest.raises(Exception) as info:
        Decoder(REG).payload(payload[:cut])
    assert getattr(info.value, "reason", None) == "truncated_avro"


@settings(max_examples=300, deadline=None)
@given(event=order_events, data=st.data())
def test_damaged_bodies_give_what_fastavro_gives_or_an_error(
    event: dict[str, Any], data: st.DataObject
) -> None:
    """Any byte changed: the full reader returns fastavro's value (and end) or both raise; the lean
    reader returns the same value at the same end, or stops (error or an end past the body). One
    deliberate difference: a varint longer than 10 bytes is an error here, where fastavro shifts
    the extra bytes out of its 64-bit integer and returns what is left."""
    body = bytearray(_encode(ORDER, event))
    for _ in range(data.draw(st.integers(1, 3))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    damaged = bytes(body)
    try:
        buf = io.BytesIO(damaged)
        expected: Any = fastavro.schemaless_reader(buf, ORDER, None)
        expected_end = buf.tell()
    except Exception:
        expected = expected_end = None
    for kind, read in READERS.items():
        try:
            value, end = read(damaged, 0)
        except ValueError as exc:
            if "longer than 10 bytes" in str(exc):
                continue
            value = end = None
        except Exception:
            value = end = None
        if end is not None and end > len(damaged):  # ran past the body: the caller's check rejects it
            value = end = None
        if kind == "full" or value is not None:
            assert (value, end) == (expected, expected_end), kind


# A schema with every type the generator handles, nested and named.
WIDE = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Wide",
        "namespace": "t",
        "fields": [
            {"name": "n", "type": "null"},
            {"name": "flag", "type": "boolean"},
            {"name": "i", "type": "int"},
            {"name": "l", "type": "long"},
            {"name": "f", "type": "float"},
            {"name": "d", "type": "double"},
            {"name": "raw", "type": "bytes"},
            {"name": "s", "type": "string"},
            {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
            {"name": "arr", "type": {"type": "array", "items": "long"}},
            {"name": "nested", "type": {"type": "array", "items": {"type": "map", "values": ["null", "E"]}}},
            {
                "name": "inner",
                "type": {
                    "type": "record",
                    "name": "Inner",
                    "fields": [{"name": "x", "type": ["null", "string", "long", "Four"]}],
                },
            },
            {"name": "again", "type": ["null", "Inner"]},
            {"name": "many", "type": {"type": "array", "items": "Inner"}},
        ],
    }
)

WIDE_READERS = {lean: compile_reader(WIDE, lean=lean) for lean in (False, True)}
inner = st.fixed_dictionaries({"x": st.none() | text | longs | st.binary(min_size=4, max_size=4)})
wide_values = st.fixed_dictionaries(
    {
        "n": st.none(),
        "flag": st.booleans(),
        "i": st.integers(-(2**31), 2**31 - 1),
        "l": longs,
        "f": st.floats(width=32, allow_nan=False),
        "d": st.floats(allow_nan=False),
        "raw": st.binary(max_size=200),
        "s": st.text(max_size=200),
        "fx": st.binary(min_size=4, max_size=4),
        "e": st.sampled_from(["A", "B", "C"]),
        "arr": st.lists(longs, max_size=5),
        "nested": st.lists(
            st.dictionaries(text, st.none() | st.sampled_from(["A", "C"]), max_size=3), max_size=3
        ),
        "inner": inner,
        "again": st.none() | inner,
        "many": st.lists(inner, max_size=3),
    }
)


@pytest.mark.parametrize("lean", [False, True])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=wide_values)
def test_every_type_reads_as_fastavro_reads_it(lean: bool, value: dict[str, Any]) -> None:
    body = _encode(WIDE, value)
    try:
        got, end = WIDE_READERS[lean](body, 0)
    except Exception:
        if lean:
            return  # long strings or bytes: outside the lean reader's scope, the caller rereads
        raise
    if lean and end != len(body):
        assert end > len(body)
        return
    assert end == len(body)
    expected = _fastavro(WIDE, body)
    assert got == expected


def test_nan_floats_keep_their_bits() -> None:
    schema = {
        "type": "record",
        "name": "F",
        "fields": [{"name": "f", "type": "float"}, {"name": "d", "type": "double"}],
    }
    body = struct.pack("<f", math.nan) + struct.pack("<d", -math.nan)
    got, _ = compile_reader(schema)(body, 0)
    expected = _fastavro(fastavro.parse_schema(schema), body)
    assert struct.pack("<fd", got["f"], got["d"]) == struct.pack("<fd", expected["f"], expected["d"])


def _zz(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _str(s: str) -> bytes:
    raw = s.encode()
    return _zz(len(raw)) + raw


@pytest.mark.parametrize("lean", [False, True])
def test_blocks_with_negative_counts_and_byte_sizes(lean: bool) -> None:
    """Writers may prefix a block with a negative count and its byte size; fastavro's writer never
    does, so the bytes are made by hand."""
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "B",
            "fields": [
                {"name": "m", "type": {"type": "map", "values": "string"}},
                {"name": "a", "type": {"type": "array", "items": "long"}},
            ],
        }
    )
    entries = _str("k1") + _str("v1") + _str("k2") + _str("v2")
    items = _zz(7) + _zz(-300)
    body = (
        _zz(-2) + _zz(len(entries)) + entries + _zz(1) + _str("k3") + _str("v3") + _zz(0)
        + _zz(-2) + _zz(len(items)) + items + _zz(0)
    )  # fmt: skip
    got, end = compile_reader(schema, lean=lean)(body, 0)
    assert end == len(body)
    assert got == _fastavro(schema, body) == {"m": {"k1": "v1", "k2": "v2", "k3": "v3"}, "a": [7, -300]}


def test_negative_and_multibyte_indexes_follow_fastavro() -> None:
    """An enum or union index written as -1 or in two bytes is still read as fastavro reads it
    (Python indexing); the lean reader declines it instead."""
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "I",
            "fields": [
                {"name": "e", "type": {"type": "enum", "name": "E3", "symbols": ["A", "B", "C"]}},
                {"name": "u", "type": ["null", "string"]},
            ],
        }
    )
    body = _zz(-1) + b"\x82\x00" + _str("x")  # enum index -1; union index 1 in two bytes
    assert (
        compile_reader(schema)(body, 0) == (_fastavro(schema, body), len(body)) == ({"e": "C", "u": "x"}, 5)
    )
    with pytest.raises((KeyError, IndexError)):
        compile_reader(schema, lean=True)(body, 0)


@given(st.text(min_size=64, max_size=300))
@settings(max_examples=50, deadline=None)
def test_the_lean_reader_declines_long_strings(s: str) -> None:
    schema = {"type": "record", "name": "S", "fields": [{"name": "s", "type": "string"}]}
    body = _encode(schema, {"s": s})
    assume(len(s.encode()) >= 64)
    try:
        _, end = compile_reader(schema, lean=True)(body, 0)
    except Exception:
        return
    assert end > len(body)


def test_logical_types_are_left_to_fastavro() -> None:
    with pytest.raises(Unsupported):
        reader_source(REG.reader)


def test_decoder_output_equals_the_reference_decoder_for_the_benchmark_workload() -> None:
    from bench.consumer import build_event

    event, n, _ = build_event(600)
    fast, slow = Decoder(REG).decode(event["Records"]), Decoder(REG, fast=False).decode(event["Records"])
    assert not fast[1] and not slow[1] and len(fast[0]) == n
    assert fast[0] == slow[0]


# -- projections: some fields read, the others stepped over ------------------------------------
PROJECTIONS = [
    frozenset({"event_id", "event_time"}),
    frozenset({"event_id", "event_time", "customer_id", "event_type", "amount_cents"}),
    frozenset({"shipping_country"}),
    frozenset(),
]
PROJECTED = [compile_reader(ORDER, fields=f) for f in PROJECTIONS]


def _ascii(value: Any) -> bool:
    if isinstance(value, str):
        return value.isascii()
    if isinstance(value, dict):
        return all(_ascii(k) and _ascii(v) for k, v in value.items())
    return True


def _outcome(read: Any, body: bytes) -> tuple[Any, Any]:
    """(value, end) of a read the caller accepts, or (None, None) for an error or an end past it."""
    try:
        value, end = read(body, 0)
    except Exception:
        return None, None
    return (value, end) if end <= len(body) else (None, None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=order_events)
def test_a_projection_returns_the_lean_readers_fields_or_declines_non_ascii(event: dict[str, Any]) -> None:
    body = _encode(ORDER, event)
    lean = _outcome(READERS["lean"], body)
    for fields, read in zip(PROJECTIONS, PROJECTED, strict=True):
        value, end = _outcome(read, body)
        if lean[0] is None or not _ascii(event):
            assert value is None  # the lean reader's scope, in ASCII only: the caller rereads
        else:
            assert end == lean[1] == len(body)
            assert value == {k: v for k, v in lean[0].items() if k in fields}
            assert list(value) == [k for k in lean[0] if k in fields]


@settings(max_examples=400, deadline=None)
@given(event=order_events, data=st.data())
def test_a_projection_accepts_a_damaged_body_only_where_the_full_reader_does(
    event: dict[str, Any], data: st.DataObject
) -> None:
    """Whatever the damage (bytes changed, cut), a projection that returns a value at the body's
    end agrees with the full reader on that value and end: it never passes invalid UTF-8 or an
    out-of-range index in a field it skips."""
    body = bytearray(_encode(ORDER, event))
    for _ in range(data.draw(st.integers(1, 3))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    damaged = bytes(body[: data.draw(st.integers(0, len(body)))])
    full = _outcome(READERS["full"], damaged)
    for fields, read in zip(PROJECTIONS, PROJECTED, strict=True):
        value, end = _outcome(read, damaged)
        if value is not None and end == len(damaged):
            assert full[1] == end
            assert value == {k: v for k, v in full[0].items() if k in fields}


def test_a_skipped_string_with_invalid_utf8_is_declined() -> None:
    event = {
        "event_id": "e", "event_time": 1, "customer_id": "c", "order_id": "o", "event_type": "PAID",
        "amount_cents": 5, "currency": "EUR", "channel": "WEB", "attributes": {}, "coupon_code": None,
        "shipping_country": "xx",
    }  # fmt: skip
    body = _encode(ORDER, event)
    bad = body[:-2] + b"\xc3\x28"  # the last string's two bytes: not UTF-8
    assert _outcome(PROJECTED[0], body) == ({"event_id": "e", "event_time": 1}, len(body))
    assert _outcome(PROJECTED[0], bad) == (None, None)
    with pytest.raises(UnicodeDecodeError):
        READERS["full"](bad, 0)


WIDE_PROJECTIONS = [frozenset({"l", "e"}), frozenset({"raw", "f", "fx"}), frozenset({"s", "d", "i", "flag"})]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=wide_values)
def test_projections_step_over_every_type(value: dict[str, Any]) -> None:
    body = _encode(WIDE, value)
    lean = _outcome(WIDE_READERS[True], body)
    for fields in WIDE_PROJECTIONS:
        got, end = _outcome(compile_reader(WIDE, fields=fields), body)
        if got is None:
            continue  # outside the lean scope, or a string not in ASCII: the caller rereads
        assert lean[0] is not None and end == lean[1] == len(body)
        assert got == {k: v for k, v in lean[0].items() if k in fields}


def test_projections_of_nested_fields_or_unknown_fields_are_unsupported() -> None:
    for fields in (frozenset({"inner"}), frozenset({"arr"}), frozenset({"missing"})):
        with pytest.raises(Unsupported):
            compile_reader(WIDE, fields=fields)
