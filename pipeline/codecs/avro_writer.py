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
    """Zig-zag varint of a 64-bit signed integer (Avro int and long).

    Non-negative values below 2**27 (four bytes) and millisecond timestamps (six bytes) are written
    out from small integers: arithmetic on Python integers of 2**30 and more allocates, on smaller
    ones it does not."""
    if 0 <= n < 0x8000000:
        z = n << 1
        if z < 0x80:
            return _ONE[z]
        if z < 0x4000:
            return bytes((z & 0x7F | 0x80, z >> 7))
        if z < 0x200000:
            return bytes((z & 0x7F | 0x80, z >> 7 & 0x7F | 0x80, z >> 14))
        return bytes((z & 0x7F | 0x80, z >> 7 & 0x7F | 0x80, z >> 14 & 0x7F | 0x80, z >> 21))
    if 0x400000000 <= n < 0x20000000000:  # 2**34 <= n < 2**41: six bytes
        lo = (n & 0x7FFFFFF) << 1  # the zig-zag value's low 28 bits
        hi = n >> 27  # and the rest
        return bytes(
            (
                lo & 0x7F | 0x80,
                lo >> 7 & 0x7F | 0x80,
                lo >> 14 & 0x7F | 0x80,
                lo >> 21 | 0x80,
                hi & 0x7F | 0x80,
                hi >> 7,
            )
        )
    if not -(2**63) <= n < 2**63:
        raise Fallback
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_ONE = [bytes((i,)) for i in range(0x80)]
_SMALL = [_varint(i) for i in range(-64, 64)]  # one byte each, by value + 64
# Lengths of strings, bytes, maps and arrays; a longer one is an IndexError, and fastavro writes it.
_LENGTHS = [_varint(i) for i in range(1024)]


_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack
_INT32 = range(-(2**31), 2**31)


class _Gen:
    """Writes one function per record, map and array type, with every primitive, enum and nullable
    union inlined as statements: a 200 B event is then one call and a handful of bytes joins
    instead of a call per field."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {
            "Fallback": Fallback,
            "_varint": _varint,
            "_LENGTHS": _LENGTHS,
            "_SMALL": _SMALL,
            "_DOUBLE": _DOUBLE,
            "_FLOAT": _FLOAT,
            "_INT32": _INT32,
        }
        self.functions: list[str] = []
        self.count = 0

    def var(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, prefix: str, value: Any) -> str:
        name = self.var(f"_{prefix}")
        self.names[name] = value
        return name

    def inline(self, schema: Any, src: str, out: list[str], ind: str) -> list[str] | None:
        """Statements appended to ``out`` that check the value of expression ``src`` and encode it;
        returns the expressions of its pieces of bytes, in order (None: not in the subset)."""
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            logical = schema.get("logicalType")
            if logical not in (None, "uuid", "timestamp-millis", "timestamp-micros", "date", "time-millis"):
                return None  # decimal and friends: fastavro's conversions
            schema = schema["type"]
        if isinstance(schema, list):
            return self.union(schema, src, out, ind)
        if isinstance(schema, str):
            return self.primitive(schema, src, out, ind) if schema in _PRIMITIVES else None
        kind = schema.get("type")
        if kind == "enum":
            table = self.const("enum", {s: _varint(i) for i, s in enumerate(schema["symbols"])})
            x = self.var("x")
            out.append(f"{ind}{x} = {table}[{src}]")  # KeyError, TypeError: the caller's Fallback
            return [x]
        if kind in ("map", "array", "record"):
            fn = self.function(schema)
            if fn is None:
                return None
            x = self.var("x")
            out.append(f"{ind}{x} = {fn}({src})")
            return [x]
        return None

    def primitive(self, kind: str, src: str, out: list[str], ind: str) -> list[str]:
        x = self.var("x")
        if kind == "null":
            out.append(f"{ind}if {src} is not None:\n{ind}    raise Fallback")
            return []
        out.append(f"{ind}{x} = {src}")
        check = {
            "string": "str",
            "bytes": "bytes",
            "long": "int",
            "int": "int",
            "boolean": "bool",
            "double": "float",
            "float": "float",
        }[kind]
        condition = f"type({x}) is not {check}"
        if kind == "int":
            condition += f" or {x} not in _INT32"
        out.append(f"{ind}if {condition}:\n{ind}    raise Fallback")
        if kind in ("string", "bytes"):
            if kind == "string":
                out.append(f"{ind}{x} = {x}.encode()")
            return [f"_LENGTHS[len({x})]", x]
        if kind in ("long", "int"):
            return [f"(_SMALL[{x} + 64] if -64 <= {x} < 64 else _varint({x}))"]
        if kind == "boolean":
            return [f"(b'\\x01' if {x} else b'\\x00')"]
        return [f"{'_DOUBLE' if kind == 'double' else '_FLOAT'}({x})"]

    def union(self, branches: list[Any], src: str, out: list[str], ind: str) -> list[str] | None:
        if len(branches) != 2 or "null" not in branches:
            return None
        null_index = branches.index("null")
        other = branches[1 - null_index]
        if other == "null":
            return None
        x, u = self.var("x"), self.var("u")
        body: list[str] = []
        pieces = self.inline(other, x, body, ind + "    ")
        if pieces is None:
            return None
        none_tag, some_tag = _varint(null_index), _varint(1 - null_index)
        out += [f"{ind}{x} = {src}", f"{ind}if {x} is None:", f"{ind}    {u} = {none_tag!r}", f"{ind}else:"]
        out += body
        out.append(f"{ind}    {u} = b''.join(({some_tag!r}, {', '.join(pieces)}))")
        return [u]

    def function(self, schema: dict[str, Any], head: str | None = None) -> str | None:
        """The name of a generated function that encodes a map, array or record; None if unsupported.
        ``head`` names a constant a record's bytes start with."""
        kind = schema.get("type")
        name = self.var("_f")
        lines = [f"def {name}(v):"]
        if kind in ("map", "array"):
            lines += [
                f"    if type(v) is not {'dict' if kind == 'map' else 'list'}:",
                "        raise Fallback",
            ]
            lines += ["    if not v:", "        return b'\\x00'", "    parts = [_LENGTHS[len(v)]]"]
            inner: list[str] = []
            if kind == "map":
                loop = "    for k, x in v.items():"
                key = self.primitive("string", "k", inner, "        ")
                values = self.inline(schema["values"], "x", inner, "        ")
                pieces = None if values is None else key + values
            else:
                loop = "    for x in v:"
                pieces = self.inline(schema["items"], "x", inner, "        ")
            if pieces is None:
                return None
            lines += [loop, *inner, f"        parts += ({', '.join(pieces)},)"]
            lines += ["    parts.append(b'\\x00')", "    return b''.join(parts)"]
        elif kind == "record":
            body: list[str] = []
            pieces = []
            for field in schema["fields"]:
                got = self.inline(field["type"], f"v[{self.const('k', field['name'])}]", body, "        ")
                if got is None:
                    return None
                pieces += got
            lines += [
                "    try:",
                *body,
                f"        return b''.join(({head + ', ' if head else ''}{', '.join(pieces)},))",
            ]
            lines += ["    except (KeyError, TypeError, IndexError):", "        raise Fallback from None"]
        else:
            return None
        self.functions.append("\n".join(lines) + "\n")
        return name


def compile_writer(schema: Any, prefix: bytes = b"") -> Writer | None:
    """A function ``event -> prefix + Avro body bytes`` for a parsed record schema, or None.

    ``prefix`` (a single-object header, say) is joined with the body in the same pass.

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
    top = gen.function(schema, gen.const("head", prefix) if prefix else None)
    if top is None:
        return None
    namespace = dict(gen.names)
    exec("\n".join(gen.functions), namespace)  # noqa: S102 - code generated from the schema above
    return namespace[top]  # type: ignore[no-any-return]
