"""Schema-specialised Avro binary readers: Python source generated once per schema, compiled once.

``fastavro.schemaless_reader`` walks the schema for every value it reads and pulls bytes through a
file object; for small events most of its time is that overhead. ``compile_reader(schema)`` instead
generates one function per record type that reads its fields straight from a ``bytes`` buffer at an
integer offset, with the field order, union branches, enum symbols and map/array loops written out
in the source. It returns what ``fastavro.schemaless_reader(buf, schema, None)`` returns for the same
bytes, value for value (the property tests in ``tests/pipeline/codecs`` hold it to that).

Scope: plain Avro types (null, boolean, int, long, float, double, bytes, string, fixed, enum, array,
map, union, record, named references). Schemas with a ``logicalType`` or anything else this module
does not know raise ``Unsupported``; callers then use fastavro. Schema resolution (a writer schema
that differs from the reader schema) is not done here: the reader is generated for one schema.

Bounds: reads are not checked against the value's end, only against the buffer's (Python's own
indexing): a value that runs past its end returns a position past it, or raises when it runs past the
buffer. Callers compare the returned position with the end they expect (``read_exactly`` does), so
a reader can read one body in place inside a larger buffer (a KPL aggregate) without a copy.
Malformed bodies raise ``IndexError`` (past the buffer, a union or enum index out of range),
``ValueError`` (a negative length, a varint longer than 10 bytes), ``UnicodeDecodeError`` or
``struct.error``; callers treat any exception as an undecodable body.

Example:
    >>> import io, fastavro
    >>> schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"},
    ...           {"name": "s", "type": ["null", "string"]}]}
    >>> out = io.BytesIO(); fastavro.schemaless_writer(out, schema, {"a": -3, "s": "hi"})
    >>> read = compile_reader(schema)
    >>> read(out.getvalue(), 0)
    ({'a': -3, 's': 'hi'}, 5)
    >>> read_exactly(read, out.getvalue()[:-1])
    Traceback (most recent call last):
    ...
    EOFError: the value needs 5 bytes, the buffer holds 4
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import fastavro

#: ``read(buf, pos) -> (value, position after it)``, ``buf`` a ``bytes``. Reads are not bounded by the
#: value's end: a truncated value either raises or returns a position past its end, so callers
#: compare the returned position with the end they expect (``read_exactly`` does).
Reader = Callable[[bytes, int], tuple[Any, int]]

_MASK64 = (1 << 64) - 1
_PRIMITIVE = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
_PAST = 1 << 62  # added to the position for a negative length: the value then ends past any buffer


class Unsupported(Exception):
    """The schema uses something the generated reader does not implement; use fastavro instead."""


# Each byte's seven value bits, moved to their place for the 1st to the 4th byte of a varint: a
# table lookup is one step where masking and shifting are two.
_SEVEN = tuple(c & 0x7F for c in range(256))
_SEVEN_7 = tuple((c & 0x7F) << 7 for c in range(256))
_SEVEN_14 = tuple((c & 0x7F) << 14 for c in range(256))
_SEVEN_21 = tuple((c & 0x7F) << 21 for c in range(256))


def _long(b: bytes, p: int) -> tuple[int, int]:
    """The zig-zag varint at ``p`` whose first byte is ≥ 0x80: (value, position after it).

    Python allocates every integer result of 2**30 or more, so the low 28 bits are gathered in a
    small integer and the rest (millisecond timestamps take 6 bytes, the common long case) in a
    second one, joined once. Like fastavro's reader, the value is taken modulo 2**64 as a signed
    64-bit integer; a varint longer than 10 bytes is rejected (fastavro returns what is left of it)."""
    x1 = b[p + 1]
    if x1 < 0x80:
        n = _SEVEN[b[p]] | _SEVEN_7[x1]
        return (n >> 1) ^ -(n & 1), p + 2
    x2 = b[p + 2]
    if x2 < 0x80:
        n = _SEVEN[b[p]] | _SEVEN_7[x1] | _SEVEN_14[x2]
        return (n >> 1) ^ -(n & 1), p + 3
    x = b[p + 3]
    n = _SEVEN[b[p]] | _SEVEN_7[x1] | _SEVEN_14[x2] | _SEVEN_21[x]
    if x < 0x80:
        return (n >> 1) ^ -(n & 1), p + 4
    x = b[p + 4]
    high = x & 0x7F
    p += 5
    if x >= 0x80:
        x = b[p]
        high |= _SEVEN_7[x]
        p += 1
        s = 14
        while x >= 0x80:
            if s > 35:
                raise ValueError("varint longer than 10 bytes")
            x = b[p]
            high |= (x & 0x7F) << s
            p += 1
            s += 7
    if high >> 35:  # a 10th byte: bits past 64 are dropped, as fastavro's 64-bit reader does
        n = ((high << 28) | n) & _MASK64
        return (n >> 1) ^ -(n & 1), p
    value = (high << 27) | (n >> 1)  # the zig-zag shift, done on the two parts
    return ~value if n & 1 else value, p


def _sized(b: bytes, p: int) -> tuple[bytes, int]:
    """Bytes whose length varint at ``p`` takes more than one byte: (bytes, position after)."""
    n, p = _long(b, p)
    if n < 0:
        raise ValueError(f"negative length {n}")
    return b[p : p + n], p + n


def _string(b: bytes, p: int) -> tuple[str, int]:
    """A string whose length varint at ``p`` takes more than one byte: (string, position after)."""
    n, p = _long(b, p)
    if n < 0:
        raise ValueError(f"negative length {n}")
    return b[p : p + n].decode(), p + n


def _index(b: bytes, p: int, symbols: tuple[Any, ...]) -> tuple[Any, int]:
    """``symbols[i]`` for the varint ``i`` at ``p`` that is not a plain one-byte index: Python's
    indexing, as fastavro's ``writer_schema["symbols"][index]`` (negative indexes count from the
    end; out of range raises IndexError)."""
    c = b[p]
    if c < 0x80:
        return symbols[(c >> 1) ^ -(c & 1)], p + 1
    i, p = _long(b, p)
    return symbols[i], p


# One-byte varints (< 0x80) by their byte; None for the first byte of a longer one.
_ZIGZAG = tuple((c >> 1) ^ -(c & 1) if c < 0x80 else None for c in range(256))
# One-byte lengths: the step from the length byte to the end of the value (0: a longer varint;
# a negative length steps past any buffer, so the caller's end check fails).
_STEP = tuple((1 + (c >> 1) if not c & 1 else _PAST) if c < 0x80 else 0 for c in range(256))
# The same for the lean reader, with every longer length stepping past any buffer.
_LEAN_STEP = tuple(step or _PAST for step in _STEP)
_FLOAT = struct.Struct("<f").unpack_from
_ASCII = bytes(range(0x80))
_DOUBLE = struct.Struct("<d").unpack_from


def _one_byte(symbols: tuple[Any, ...]) -> tuple[Any, ...]:
    """``symbols[i]`` (Python indexing) for every one-byte varint ``i``; None where that fails."""
    table: list[Any] = []
    for c in range(256):
        i = _ZIGZAG[c]
        table.append(symbols[i] if i is not None and -len(symbols) <= i < len(symbols) else None)
    return tuple(table)


class _Generator:
    def __init__(self, lean: bool) -> None:
        self.lean = lean
        self.count_high = False  # set while writing a projection: see ``projection``
        self.skipping: set[str] = set()
        self.named: dict[str, Any] = {}
        self.functions: dict[str, str] = {}  # record full name -> function name
        self.sources: list[str] = []
        self.consts: dict[str, Any] = {}
        self.counter = 0

    def var(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}{self.counter}"

    def const(self, value: Any, hint: str) -> str:
        name = f"_{hint}{len(self.consts)}"
        self.consts[name] = value
        return name

    # Each ``emit_*`` appends lines to ``out`` that leave the value in ``target`` and advance ``p``.

    def emit(self, schema: Any, out: list[str], ind: str, target: str) -> None:
        if isinstance(schema, str):
            if schema in _PRIMITIVE:
                self.emit_primitive(schema, out, ind, target)
            elif schema in self.named:
                self.emit_named(self.named[schema], out, ind, target)
            else:
                raise Unsupported(f"unknown type {schema!r}")
        elif isinstance(schema, list):
            self.emit_union(schema, out, ind, target)
        elif isinstance(schema, dict):
            if "logicalType" in schema:
                raise Unsupported(f"logical type {schema['logicalType']!r}")
            kind = schema.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                self.define(schema)
                self.emit_named(schema, out, ind, target)
            elif kind == "array":
                self.emit_array(schema, out, ind, target)
            elif kind == "map":
                self.emit_map(schema, out, ind, target)
            elif isinstance(kind, (str, list, dict)):
                self.emit(kind, out, ind, target)
            else:
                raise Unsupported(f"schema {schema!r}")
        else:
            raise Unsupported(f"schema {schema!r}")

    def define(self, schema: dict[str, Any]) -> None:
        name = schema.get("name")
        if not isinstance(name, str):
            raise Unsupported("named type without a name")
        if name not in self.named:
            self.named[name] = schema

    def emit_named(self, schema: dict[str, Any], out: list[str], ind: str, target: str) -> None:
        kind = schema["type"]
        if kind in ("record", "error"):
            fn = self.record_function(schema)
            out.append(f"{ind}{target}, p = {fn}(b, p)")
        elif kind == "enum":
            symbols = tuple(schema["symbols"])
            self.emit_indexed(symbols, out, ind, target)
        elif kind == "fixed":
            size = int(schema["size"])
            out += [f"{ind}{target} = b[p:p + {size}]", f"{ind}p += {size}"]
        else:
            raise Unsupported(f"named type {kind!r}")

    def emit_indexed(self, symbols: tuple[Any, ...], out: list[str], ind: str, target: str) -> None:
        """``symbols[varint]``: enum symbols, or union branch numbers."""
        if self.lean:  # one-byte, in-range, non-negative indexes only: KeyError otherwise
            by_byte = {2 * i: v for i, v in enumerate(symbols) if i < 64}
            out += [f"{ind}{target} = {self.const(by_byte, 'by_byte')}[b[p]]", f"{ind}p += 1"]
            return
        table, full = self.const(_one_byte(symbols), "by_byte"), self.const(symbols, "symbols")
        out += [
            f"{ind}{target} = {table}[b[p]]",
            f"{ind}if {target} is None:",
            f"{ind}    {target}, p = _index(b, p, {full})",
            f"{ind}else:",
            f"{ind}    p += 1",
        ]

    def emit_long(self, out: list[str], ind: str, target: str) -> None:
        long_path = [f"{ind}    {target}, p = _long(b, p)"]
        if self.count_high:  # every byte of a longer varint but its last is >= 0x80
            long_path = [f"{ind}    q = p", *long_path, f"{ind}    hi += p - q - 1"]
        out += [
            f"{ind}{target} = _ZIGZAG[b[p]]",
            f"{ind}if {target} is None:",
            *long_path,
            f"{ind}else:",
            f"{ind}    p += 1",
        ]

    def emit_sized(self, out: list[str], ind: str, target: str, decode: bool) -> None:
        tail = ".decode()" if decode else ""
        if self.lean:  # a longer length steps past any buffer: the caller's end check fails
            out.append(f"{ind}{target} = b[p + 1 : (p := p + _LEAN_STEP[b[p]])]{tail}")
            return
        q = self.var("q")
        out += [
            f"{ind}{q} = p + _STEP[b[p]]",
            f"{ind}if {q} == p:",
            f"{ind}    {target}, {q} = {'_string' if decode else '_sized'}(b, p)",
            f"{ind}else:",
            f"{ind}    {target} = b[p + 1 : {q}]{tail}",
            f"{ind}p = {q}",
        ]

    def emit_primitive(self, kind: str, out: list[str], ind: str, target: str) -> None:
        if kind == "null":
            out.append(f"{ind}{target} = None")
        elif kind == "boolean":
            out += [f"{ind}{target} = b[p] != 0", f"{ind}p += 1"]
        elif kind in ("int", "long"):
            self.emit_long(out, ind, target)
        elif kind in ("float", "double"):
            size, fn = (4, "_FLOAT") if kind == "float" else (8, "_DOUBLE")
            out += [f"{ind}{target} = {fn}(b, p)[0]", f"{ind}p += {size}"]
        elif kind == "bytes":
            self.emit_sized(out, ind, target, decode=False)
        else:  # string
            self.emit_sized(out, ind, target, decode=True)

    def emit_union(self, branches: list[Any], out: list[str], ind: str, target: str) -> None:
        if not branches:
            raise Unsupported("empty union")
        if self.lean:  # one-byte, in-range, non-negative indexes only: IndexError otherwise
            c = self.var("c")
            out += [f"{ind}{c} = b[p]", f"{ind}p += 1"]
            for n, branch in enumerate(branches):
                out.append(f"{ind}{'el' if n else ''}if {c} == {2 * n}:")
                self.emit(branch, out, ind + "    ", target)
            out += [f"{ind}else:", f"{ind}    raise IndexError('union index')"]
            return
        i = self.var("i")
        self.emit_indexed(tuple(range(len(branches))), out, ind, i)
        for n, branch in enumerate(branches):
            if n == len(branches) - 1:  # the index is in range: _index raised otherwise
                out.append(f"{ind}else:" if n else f"{ind}if True:")
            else:
                out.append(f"{ind}{'el' if n else ''}if {i} == {n}:")
            self.emit(branch, out, ind + "    ", target)

    def emit_blocks(self, out: list[str], ind: str, k: str) -> tuple[str, str]:
        """Opening lines of a block loop; returns the indentations of the loop and of its items."""
        out.append(f"{ind}while {k}:")
        out.append(f"{ind}    if {k} < 0:  # a negative count is followed by the block's byte size")
        out.append(f"{ind}        {k} = -{k}")
        self.emit_long(out, ind + "        ", "_")
        return ind + "    ", ind + "        "

    def emit_array(self, schema: dict[str, Any], out: list[str], ind: str, target: str) -> None:
        k, x, append = self.var("k"), self.var("x"), self.var("append")
        out += [f"{ind}{target} = []", f"{ind}{append} = {target}.append"]
        self.emit_long(out, ind, k)
        inner, body = self.emit_blocks(out, ind, k)
        out.append(f"{inner}for _ in range({k}):")
        self.emit(schema["items"], out, body, x)
        out.append(f"{body}{append}({x})")
        self.emit_long(out, inner, k)

    def emit_map(self, schema: dict[str, Any], out: list[str], ind: str, target: str) -> None:
        k, key, x = self.var("k"), self.var("key"), self.var("x")
        out.append(f"{ind}{target} = {{}}")
        self.emit_long(out, ind, k)
        inner, body = self.emit_blocks(out, ind, k)
        out.append(f"{inner}for _ in range({k}):")
        self.emit_sized(out, body, key, decode=True)
        self.emit(schema["values"], out, body, x)
        out.append(f"{body}{target}[{key}] = {x}")
        self.emit_long(out, inner, k)

    def record_function(self, schema: dict[str, Any]) -> str:
        name = schema["name"]
        fn = self.functions.get(name)
        if fn is not None:
            return fn
        fn = self.functions[name] = f"_record{len(self.functions)}"
        out = [f"def {fn}(b, p):"]
        values = []
        for field in schema["fields"]:
            fname = field["name"]
            if not isinstance(fname, str) or not fname.isidentifier():
                raise Unsupported(f"field name {fname!r}")
            v = self.var("v")
            self.emit(field["type"], out, "    ", v)
            values.append(f"{fname!r}: {v}")
        out.append(f"    return {{{', '.join(values)}}}, p")
        self.sources.append("\n".join(out))
        return fn

    # -- projections ---------------------------------------------------------------------------
    # A projection reads some fields of a record and steps over the rest. Skipped strings are not
    # decoded, so their UTF-8 is checked another way: bytes >= 0x80 outside strings occur only in
    # varints longer than a byte (all bytes but the last), floats, doubles, fixed and bytes values.
    # The projection counts those (``hi``) and the entry compares the count with the value's bytes
    # >= 0x80: equal means every string is ASCII, hence valid UTF-8. Otherwise it reports a
    # position past the end, and the caller reads the value again with the full reader.

    def projection(self, schema: dict[str, Any], keep: frozenset[str]) -> str:
        """The entry function of a lean reader of ``keep``'s fields of the record ``schema``."""
        names = {f["name"] for f in schema["fields"]}
        if not keep <= names:
            raise Unsupported(f"fields {sorted(keep - names)} are not in the record")
        self.count_high = True
        out = ["def _projection(b, p):", "    p0 = p", "    hi = 0"]
        values = []
        for field in schema["fields"]:
            fname = field["name"]
            if fname in keep:
                if not self.flat(field["type"]):
                    raise Unsupported(f"field {fname!r} is not a primitive, enum, fixed or union of them")
                if not isinstance(fname, str) or not fname.isidentifier():
                    raise Unsupported(f"field name {fname!r}")
                v = self.var("v")
                if self.raw(field["type"]):  # bytes >= 0x80 outside varints: counted as read
                    start = self.var("s")
                    out.append(f"    {start} = p")
                    self.count_high = False
                    self.emit(field["type"], out, "    ", v)
                    self.count_high = True
                    out.append(f"    hi += len(b[{start}:p].translate(None, _ASCII))")
                else:
                    self.emit(field["type"], out, "    ", v)
                values.append(f"{fname!r}: {v}")
            else:
                self.skip(field["type"], out, "    ")
        out += [
            "    if hi != len((b if p0 == 0 and p == len(b) else b[p0:p]).translate(None, _ASCII)):",
            "        return None, p + _PAST  # a string not in ASCII: the full reader decides",
            f"    return {{{', '.join(values)}}}, p",
        ]
        self.sources.append("\n".join(out))
        return "_projection"

    def flat(self, schema: Any) -> bool:
        if isinstance(schema, str):
            return schema in _PRIMITIVE or self.flat(self.named.get(schema, {"type": "record"}))
        if isinstance(schema, list):
            return all(self.flat(branch) for branch in schema)
        kind = schema.get("type")
        if kind in ("enum", "fixed"):
            self.define(schema)
            return True
        return kind in _PRIMITIVE

    def raw(self, schema: Any) -> bool:
        """Whether a flat ``schema`` may hold bytes >= 0x80 that are not in a varint or a string."""
        if isinstance(schema, str):
            if schema in self.named:
                return self.raw(self.named[schema])
            return schema in ("bytes", "float", "double")
        if isinstance(schema, list):
            return any(self.raw(branch) for branch in schema)
        return schema.get("type") in ("fixed", "bytes", "float", "double")

    def skip(self, schema: Any, out: list[str], ind: str) -> None:
        """Lines that step ``p`` over a value of ``schema`` (lean rules), adding to ``hi``."""
        if isinstance(schema, str):
            if schema in _PRIMITIVE:
                self.skip_primitive(schema, out, ind)
            elif schema in self.named:
                self.skip_named(self.named[schema], out, ind)
            else:
                raise Unsupported(f"unknown type {schema!r}")
        elif isinstance(schema, list):
            if not schema:
                raise Unsupported("empty union")
            c = self.var("c")
            out += [f"{ind}{c} = b[p]", f"{ind}p += 1"]
            for n, branch in enumerate(schema):
                out.append(f"{ind}{'el' if n else ''}if {c} == {2 * n}:")
                lines: list[str] = []
                self.skip(branch, lines, ind + "    ")
                out += lines or [f"{ind}    pass"]
            out += [f"{ind}else:", f"{ind}    raise IndexError('union index')"]
        elif isinstance(schema, dict):
            if "logicalType" in schema:
                raise Unsupported(f"logical type {schema['logicalType']!r}")
            kind = schema.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                self.define(schema)
                self.skip_named(schema, out, ind)
            elif kind in ("array", "map"):
                k = self.var("k")
                self.emit_long(out, ind, k)
                inner, body = self.emit_blocks(out, ind, k)
                out.append(f"{inner}for _ in range({k}):")
                if kind == "map":
                    self.skip_primitive("string", out, body)
                self.skip(schema["items" if kind == "array" else "values"], out, body)
                self.emit_long(out, inner, k)
            elif isinstance(kind, (str, list, dict)):
                self.skip(kind, out, ind)
            else:
                raise Unsupported(f"schema {schema!r}")
        else:
            raise Unsupported(f"schema {schema!r}")

    def skip_named(self, schema: dict[str, Any], out: list[str], ind: str) -> None:
        kind = schema["type"]
        if kind in ("record", "error"):
            name = schema["name"]
            if name in self.skipping:
                raise Unsupported(f"recursive type {name!r}")
            self.skipping.add(name)
            for field in schema["fields"]:
                self.skip(field["type"], out, ind)
            self.skipping.discard(name)
        elif kind == "enum":
            table = {2 * i: True for i in range(min(len(schema["symbols"]), 64))}
            out += [f"{ind}{self.const(table, 'valid')}[b[p]]", f"{ind}p += 1"]  # KeyError otherwise
        elif kind == "fixed":
            size = int(schema["size"])
            out += [f"{ind}hi += len(b[p:p + {size}].translate(None, _ASCII))", f"{ind}p += {size}"]
        else:
            raise Unsupported(f"named type {kind!r}")

    def skip_primitive(self, kind: str, out: list[str], ind: str) -> None:
        if kind == "null":
            return
        if kind == "boolean":
            out.append(f"{ind}p += 1")
        elif kind in ("int", "long"):  # up to three bytes without a call; longer ones by _long
            out += [
                f"{ind}if b[p] < 0x80:",
                f"{ind}    p += 1",
                f"{ind}elif b[p + 1] < 0x80:",
                f"{ind}    p += 2",
                f"{ind}    hi += 1",
                f"{ind}elif b[p + 2] < 0x80:",
                f"{ind}    p += 3",
                f"{ind}    hi += 2",
                f"{ind}else:",
                f"{ind}    q = p",
                f"{ind}    _, p = _long(b, p)",
                f"{ind}    hi += p - q - 1",
            ]
        elif kind in ("float", "double"):
            size = 4 if kind == "float" else 8
            out += [f"{ind}hi += len(b[p:p + {size}].translate(None, _ASCII))", f"{ind}p += {size}"]
        elif kind == "bytes":
            q = self.var("q")
            out += [
                f"{ind}{q} = p + _LEAN_STEP[b[p]]",
                f"{ind}hi += len(b[p + 1:{q}].translate(None, _ASCII))",
                f"{ind}p = {q}",
            ]
        else:  # string: checked by the entry's count
            out.append(f"{ind}p += _LEAN_STEP[b[p]]")


def reader_source(
    schema: Any, lean: bool = False, fields: frozenset[str] | None = None
) -> tuple[str, str, dict[str, Any]]:
    """(source, entry function name, constants) of the reader for ``schema``; ``Unsupported`` if
    the schema uses something this module does not read. See ``compile_reader`` for ``lean`` and
    ``fields``."""
    parsed = fastavro.parse_schema(schema)
    gen = _Generator(lean or fields is not None)
    record = (
        isinstance(parsed, dict) and parsed.get("type") in ("record", "error") and "logicalType" not in parsed
    )
    if fields is not None:
        if not isinstance(parsed, dict) or not record:
            raise Unsupported("a projection needs a record schema")
        gen.define(parsed)
        entry = gen.projection(parsed, fields)
    elif isinstance(parsed, dict) and record:
        gen.define(parsed)
        entry = gen.record_function(parsed)
    else:  # any other top-level type: wrap it in a function of its own
        out = ["def _value(b, p):"]
        gen.emit(parsed, out, "    ", "value")
        out.append("    return value, p")
        gen.sources.append("\n".join(out))
        entry = "_value"
    return "\n\n".join(gen.sources) + "\n", entry, gen.consts


def compile_reader(schema: Any, lean: bool = False, fields: frozenset[str] | None = None) -> Reader:
    """A reader for ``schema``: ``read(buf, pos) -> (value, position after it)``.

    ``lean=True`` makes a quicker reader for the common encoding only: string and bytes lengths
    below 64 and union and enum indexes written as one non-negative byte, as every writer writes
    them for short values. Anything else makes it raise or return a position past the end (never a
    wrong value at the right end); callers then read the body again with the full reader.

    ``fields`` makes a lean reader of a record that returns those fields only and steps over the
    others without building their values. It reads in ASCII only: a value with any other string
    (or a skipped bytes value with a byte >= 0x80) returns a position past the end, so the caller
    reads it with the full reader. The fields it returns must be primitives, enums, fixed or unions
    of them. It accepts and rejects exactly the values the lean reader does.

    Raises ``Unsupported`` for schemas outside this module's scope (see the module docstring)."""
    source, entry, consts = reader_source(schema, lean, fields)
    namespace: dict[str, Any] = {
        "_ZIGZAG": _ZIGZAG,
        "_STEP": _STEP,
        "_LEAN_STEP": _LEAN_STEP,
        "_long": _long,
        "_sized": _sized,
        "_string": _string,
        "_index": _index,
        "_FLOAT": _FLOAT,
        "_DOUBLE": _DOUBLE,
        "_ASCII": _ASCII,
        "_PAST": _PAST,
        **consts,
    }
    exec(compile(source, f"<avro reader {entry}>", "exec"), namespace)
    reader: Reader = namespace[entry]
    return reader


def read_exactly(read: Reader, data: bytes, start: int = 0) -> tuple[Any, int]:
    """``read(data, start)`` with a value that runs past the end of ``data`` raised as ``EOFError``:
    (value, position after it), which is less than ``len(data)`` when bytes follow the value."""
    value, end = read(data, start)
    if end > len(data):
        raise EOFError(f"the value needs {end - start} bytes, the buffer holds {len(data) - start}")
    return value, end
