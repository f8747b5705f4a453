"""Records as the consumer sees them: decoded user records and poison, each with its position."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One decoded event and where it sits in the stream."""

    position: str  # fixed-width, sortable (pipeline.codecs.positions)
    sequence_number: str  # of the Kinesis record that carried it
    sub_sequence: int
    partition_key: str
    event: dict[str, Any]
    arrival: float  # approximate arrival timestamp of the Kinesis record, seconds


@dataclass(frozen=True, slots=True)
class Poison:
    """A record that can never decode: quarantined with its raw bytes and reason."""

    position: str
    sequence_number: str
    sub_sequence: int
    partition_key: str
    raw: bytes
    reason: str
    error_class: str
    message: str
