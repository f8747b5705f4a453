"""Schema-specialised Avro binary encoding: one generated Python function per schema.

``fastavro.schemaless_writer`` walks the parsed schema for every datum and writes through a file
object; for the pipeline's small events that walk is most of the producer's CPU. ``compile_writer``
turns a record schema into straight-line code (one statement per field, enum symbols in dicts,
strings encoded once) that returns the body as bytes, byte-identical to fastavro's.

Only values of the exact plain types are taken on the generated path (``str`` for strings,
``int`` within 64 bits for longs, ``dict`` for maps, ``None`` or the branch's type for a nullable
union, ...). Anything else — a ``datetime`` for a timestamp, a ``UUID`` object, a ``bool`` where a
long is due, a missing field with a default — raises ``Fallback``, and the caller encodes that
datum with fastavro, which applies its own conversions and raises its own errors. Schemas with
types outside the generated subset (fixed, arrays of unions, unions of several non-null types,
...) get no generated writer at all (``compile_writer`` returns None).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

Writer = Callable[[Mapping[str, Any]], bytes]

_PRIMITIVES = {"string", "bytes", "long", "int", "boolean", "double", "float", "null"}


class Fallback(Exception):
    """The datum is not of the plain types the generated writer takes; use fastavro."""


def _varint(n: int) -> bytes:
    """Zig-zag varint of a 64-bit signed integer (Avro int and long)."""
    if not -(2**63) <= n < 2**63:
        raise Fallback
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [_varint(i) for i in range(-64, 64)]  # one byte each


def _long(n: Any) -> bytes:
    if type(n) is not int:
        raise Fallback
    if -64 <= n < 64:
        return _SMALL[n + 64]
    return _varint(n)


def _int(n: Any) -> bytes:
    if type(n) is not int or not -(2**31) <= n < 2**31:
        raise Fallback
    return _long(n)


def _string(s: Any) -> bytes:
    if type(s) is not str:
        raise Fallback
    raw = s.encode("utf-8")
    n = len(raw)
    return (_SMALL[n + 64] if n < 64 else _varint(n)) + raw


def _bytes(b: Any) -> bytes:
    if type(b) is not bytes:
        raise Fallback
    n = len(b)
    return (_SMALL[n + 64] if n < 64 else _varint(n)) + b


def _boolean(b: Any) -> bytes:
    if type(b) is not bool:
        raise Fallback
    return b"\x01" if b else b"\x00"


_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack


def _double(x: Any) -> bytes:
    if type(x) is not float:
        raise Fallback
    return _DOUBLE(x)


def _float(x: Any) -> bytes:
    if type(x) is not float:
        raise Fallback
    return _FLOAT(x)


def _null(x: Any) -> bytes:
    if x is not None:
        raise Fallback
    return b""


_HELPERS: dict[str, Any] = {
    "string": _string,
    "bytes": _bytes,
    "long": _long,
    "int": _int,
    "boolean": _boolean,
    "double": _double,
    "float": _float,
    "null": _null,
}


class _Gen:
    def __init__(self) -> None:
        self.names: dict[str, Any] = {"Fallback": Fallback, "_long": _long, "_string": _string}
        self.functions: list[str] = []
        self.count = 0

    def const(self, prefix: str, value: Any) -> str:
        self.count += 1
        name = f"_{prefix}{self.count}"
        self.names[name] = value
        return name

    def function(self, schema: Any) -> str | None:
        """The name of a generated function that encodes ``schema``; None if unsupported."""
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return self.const("p", _HELPERS[schema])
            return None  # a named reference: not generated
        if isinstance(schema, list):
            return self._union(schema)
        kind = schema.get("type")
        if kind in _PRIMITIVES:
            logical = schema.get("logicalType")
            if logical not in (None, "uuid", "timestamp-millis", "timestamp-micros", "date", "time-millis"):
                return None  # decimal and friends: fastavro's conversions
            return self.const("p", _HELPERS[kind])
        if kind == "enum":
            index = {s: _long(i) for i, s in enumerate(schema["symbols"])}
            table = self.const("enum", index)
            lookup = f"    try:\n        return {table}[v]\n"
            return self._define(lookup + "    except (KeyError, TypeError):\n        raise Fallback\n")
        if kind == "map":
            values = self.function(schema["values"])
            if values is None:
                return None
            body = (
                "    if type(v) is not dict:\n        raise Fallback\n"
                "    if not v:\n        return b'\\x00'\n"
                f"    parts = [_long(len(v))]\n"
                "    for k, x in v.items():\n"
                f"        parts.append(_string(k))\n        parts.append({values}(x))\n"
                "    parts.append(b'\\x00')\n    return b''.join(parts)\n"
            )
            return self._define(body)
        if kind == "array":
            items = self.function(schema["items"])
            if items is None:
                return None
            body = (
                "    if type(v) is not list:\n        raise Fallback\n"
                "    if not v:\n        return b'\\x00'\n"
                f"    parts = [_long(len(v))]\n"
                f"    parts += [{items}(x) for x in v]\n"
                "    parts.append(b'\\x00')\n    return b''.join(parts)\n"
            )
            return self._define(body)
        if kind == "record":
            lines = ["    try:"]
            parts = []
            for field in schema["fields"]:
                fn = self.function(field["type"])
                if fn is None:
                    return None
                key = self.const("k", field["name"])
                parts.append(f"{fn}(v[{key}])")
            lines.append("        return b''.join((" + ", ".join(parts) + ",))")
            lines.append("    except (KeyError, TypeError):\n        raise Fallback")
            return self._define("\n".join(lines) + "\n")
        return None

    def _union(self, branches: list[Any]) -> str | None:
        if len(branches) != 2 or "null" not in branches:
            return None
        null_index = branches.index("null")
        other = branches[1 - null_index]
        fn = self.function(other)
        if fn is None or other in ("null",):
            return None
        none_tag = _long(null_index)
        some_tag = _long(1 - null_index)
        n, s = self.const("tag", none_tag), self.const("tag", some_tag)
        return self._define(f"    if v is None:\n        return {n}\n    return {s} + {fn}(v)\n")

    def _define(self, body: str) -> str:
        self.count += 1
        name = f"_f{self.count}"
        self.functions.append(f"def {name}(v):\n{body}")
        return name


def compile_writer(schema: Any) -> Writer | None:
    """A function ``event -> Avro body bytes`` for a parsed record schema, or None.

    The function raises ``Fallback`` for data outside the plain types (see the module docstring).

    Example:
        >>> import fastavro, io
        >>> s = fastavro.parse_schema({"type": "record", "name": "R", "fields": [
        ...     {"name": "a", "type": "long"}, {"name": "b", "type": ["null", "string"]}]})
        >>> write = compile_writer(s)
        >>> buf = io.BytesIO(); fastavro.schemaless_writer(buf, s, {"a": 300, "b": "x"})
        >>> write({"a": 300, "b": "x"}) == buf.getvalue()
        True
    """
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    gen = _Gen()
    top = gen.function(schema)
    if top is None:
        return None
    namespace = dict(gen.names)
    exec("\n".join(gen.functions), namespace)  # noqa: S102 - code generated from the schema above
    return namespace[top]  # type: ignore[no-any-return]
