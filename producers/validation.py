"""Checks of user input that turn into one readable line each: events against the Avro schema,
partition keys and explicit hash keys against the Kinesis rules."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastavro.validation import validate

from pipeline.errors import InvalidInput

MAX_PARTITION_KEY_CHARS = 256
MAX_HASH_KEY = 2**128 - 1


def schema_errors(event: Any, schema: Any) -> list[str]:
    """What is wrong with ``event`` against a parsed Avro record schema (empty when it matches)."""
    if not isinstance(event, Mapping):
        return [f"an event must be a JSON object, not {type(event).__name__}"]
    try:
        validate(event, schema, raise_errors=True)
    except Exception as exc:  # fastavro's ValidationError carries a JSON list of messages
        raw = str(exc)
        try:
            messages = json.loads(raw)
        except ValueError:
            messages = [raw]
        return [_tidy(m, schema) for m in messages] or [raw]
    return []


def _tidy(message: str, schema: Any) -> str:
    # fastavro names fields with their full namespace; users know them by their short names.
    name = schema.get("name", "") if isinstance(schema, Mapping) else ""
    message = message.replace(f"{name}.", "")
    if message.startswith("Field(") and ") is None expected" in message:
        field = message[len("Field(") : message.index(")")].rsplit(".", 1)[-1]
        return f"field {field!r} is missing"
    return message


def check_partition_key(partition_key: object) -> str:
    """Return ``partition_key`` if Kinesis accepts it, else raise ``InvalidInput`` saying why."""
    if not isinstance(partition_key, str):
        raise InvalidInput(f"partition key must be a str, not {type(partition_key).__name__}")
    if not 1 <= len(partition_key) <= MAX_PARTITION_KEY_CHARS:
        raise InvalidInput(
            f"partition key must have 1 to {MAX_PARTITION_KEY_CHARS} characters, not {len(partition_key)}"
        )
    return partition_key


def check_explicit_hash_key(explicit_hash_key: object) -> str:
    """Return the key if it is a decimal string in [0, 2**128 - 1], else raise ``InvalidInput``."""
    # The API's pattern is 0|([1-9]\d{0,38}): digits only, no sign, no leading zeros.
    if (
        not isinstance(explicit_hash_key, str)
        or not explicit_hash_key.isascii()
        or not explicit_hash_key.isdigit()
        or (explicit_hash_key[0] == "0" and explicit_hash_key != "0")
    ):
        raise InvalidInput(
            f"explicit hash key must be a decimal string of an integer in [0, 2**128 - 1], "
            f"not {explicit_hash_key!r}"
        )
    if int(explicit_hash_key) > MAX_HASH_KEY:
        raise InvalidInput(f"explicit hash key {explicit_hash_key} is above 2**128 - 1")
    return explicit_hash_key


_INTEGRAL = {"int", "long"}


def _integral_fields(schema: Any) -> list[tuple[str, bool]]:
    """(name, nullable) of the record's top-level int/long fields (logical types included)."""
    out = []
    for f in schema.get("fields", []) if isinstance(schema, Mapping) else []:
        t = f["type"]
        branches = t if isinstance(t, list) else [t]
        kinds = [b.get("type") if isinstance(b, Mapping) else b for b in branches]
        if any(k in _INTEGRAL for k in kinds):
            out.append((f["name"], "null" in kinds))
    return out


class EventChecker:
    """The checks Avro encoding does not make, for the put hot path.

    fastavro's writer refuses wrong strings, enums, maps and missing fields itself, but writes a
    float or a bool into a long field without a word (12.7 becomes 12). This catches that at the
    cost of a few dict lookups; ``schema_errors`` explains any failure in full.
    """

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.integral = _integral_fields(schema)

    def check(self, event: Any) -> list[str]:
        """Problems fastavro would not report (empty when there are none)."""
        if not isinstance(event, Mapping):
            return [f"an event must be a mapping, not {type(event).__name__}"]
        for name, nullable in self.integral:
            v = event.get(name)
            if type(v) is not int and not (v is None and (nullable or name not in event)):
                return schema_errors(event, self.schema) or [f"field {name!r} must be an integer"]
        return []
