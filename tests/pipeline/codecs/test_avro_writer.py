"""The generated Avro writer writes exactly fastavro's bytes, or steps aside (Fallback)."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.codecs.avro import SchemaRegistry
from pipeline.codecs.avro_writer import Fallback, compile_writer
from pipeline.events import generate

WIDE = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Wide",
        "fields": [
            {"name": "s", "type": "string"},
            {"name": "b", "type": "bytes"},
            {"name": "l", "type": "long"},
            {"name": "i", "type": "int"},
            {"name": "t", "type": "boolean"},
            {"name": "d", "type": "double"},
            {"name": "f", "type": "float"},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
            {"name": "m", "type": {"type": "map", "values": "long"}},
            {"name": "a", "type": {"type": "array", "items": "string"}},
            {"name": "u", "type": ["string", "null"]},
            {"name": "n", "type": ["null", "long"]},
            {
                "name": "r",
                "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]},
            },
        ],
    }
)

_text = st.text(max_size=80)
_long = st.integers(-(2**63), 2**63 - 1)
_int = st.integers(-(2**31), 2**31 - 1)
_wide = st.fixed_dictionaries(
    {
        "s": _text,
        "b": st.binary(max_size=200),
        "l": _long,
        "i": _int,
        "t": st.booleans(),
        "d": st.floats(allow_nan=False),
        "f": st.floats(allow_nan=False, width=32),
        "e": st.sampled_from(["A", "B", "C"]),
        "m": st.dictionaries(_text, _long, max_size=5),
        "a": st.lists(_text, max_size=5),
        "u": st.one_of(st.none(), _text),
        "n": st.one_of(st.none(), _long),
        "r": st.fixed_dictionaries({"x": _int}),
    }
)


def _fastavro(schema: Any, datum: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, datum)
    return buf.getvalue()


@settings(max_examples=300, deadline=None)
@given(_wide)
def test_every_supported_type_is_written_as_fastavro_writes_it(datum: dict[str, Any]) -> None:
    write = compile_writer(WIDE)
    assert write is not None
    assert write(datum) == _fastavro(WIDE, datum)


def test_order_events_are_written_as_fastavro_writes_them() -> None:
    reg = SchemaRegistry.load()
    write = compile_writer(reg.reader)
    assert write is not None
    for event in generate(2000, customers=50, seed=3):
        assert write(event) == _fastavro(reg.reader, event)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_time", datetime(2026, 11, 27, tzinfo=UTC)),  # fastavro converts datetimes
        ("event_id", uuid.UUID(int=5)),  # and UUID objects
        ("amount_cents", True),  # a bool is not a long here
        ("amount_cents", 2**64),  # out of range: fastavro's error
        ("event_type", "NOT_A_SYMBOL"),
        ("attributes", [("a", "b")]),
        ("coupon_code", 5),
    ],
)
def test_anything_but_the_plain_types_steps_aside(field: str, value: Any) -> None:
    reg = SchemaRegistry.load()
    write = compile_writer(reg.reader)
    assert write is not None
    event = dict(reg.example(), **{field: value})
    with pytest.raises(Fallback):
        write(event)


def test_a_missing_field_steps_aside_for_fastavros_default() -> None:
    reg = SchemaRegistry.load()
    write = compile_writer(reg.reader)
    assert write is not None
    event = reg.example()
    del event["channel"]
    with pytest.raises(Fallback):
        write(event)


def test_schemas_outside_the_subset_get_no_generated_writer() -> None:
    for schema in (
        {
            "type": "record",
            "name": "F",
            "fields": [{"name": "x", "type": {"type": "fixed", "name": "X", "size": 2}}],
        },
        {"type": "record", "name": "U", "fields": [{"name": "x", "type": ["string", "long"]}]},
        {
            "type": "record",
            "name": "D",
            "fields": [{"name": "x", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4}}],
        },
    ):
        assert compile_writer(fastavro.parse_schema(schema)) is None
    assert compile_writer(fastavro.parse_schema("string")) is None


@pytest.mark.parametrize(
    "n",
    [0, -1, 63, -64, 64, -65, 8191, 8192, 2**20 - 1, 2**20, 2**27 - 1, 2**27, 2**30, 2**34 - 1, 2**34]
    + [1_795_000_000_000, 2**41 - 1, 2**41, -(2**34), -(2**27), -(2**27) - 1]
    + [-(2**41), 2**62, 2**63 - 1, -(2**63)],
)
def test_longs_at_every_varint_width_edge_are_written_as_fastavro_writes_them(n: int) -> None:
    schema = fastavro.parse_schema({"type": "record", "name": "L", "fields": [{"name": "x", "type": "long"}]})
    write = compile_writer(schema)
    assert write is not None
    assert write({"x": n}) == _fastavro(schema, {"x": n})


def test_strings_maps_and_arrays_past_the_length_table_are_left_to_fastavro() -> None:
    write = compile_writer(WIDE)
    assert write is not None
    datum = {
        "s": "s", "b": b"b", "l": 1, "i": 2, "t": True, "d": 1.5, "f": 2.5, "e": "A", "m": {},
        "a": [], "u": None, "n": 3, "r": {"x": 4},
    }  # fmt: skip
    for field, n in (("s", 1024), ("m", 1024), ("a", 1024), ("s", 1023), ("m", 1023), ("a", 1023)):
        value = {"s": "x" * n, "m": {str(i): i for i in range(n)}, "a": ["y"] * n}[field]
        if n == 1024:
            with pytest.raises(Fallback):
                write(dict(datum, **{field: value}))
        else:
            assert write(dict(datum, **{field: value})) == _fastavro(WIDE, dict(datum, **{field: value}))


def test_a_prefix_is_written_before_the_body() -> None:
    reg = SchemaRegistry.load()
    write = compile_writer(reg.reader, b"\xc3\x01prefix")
    assert write is not None
    event = reg.example()
    assert write(event) == b"\xc3\x01prefix" + _fastavro(reg.reader, event)
