"""Records as the consumer sees them: decoded user records, poison, and the batch a sink applies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


class UserRecord(NamedTuple):
    """One decoded event and where it sits in the stream: an immutable named tuple.

    ``event`` holds plain values: ``event_id`` as a string and ``event_time`` as epoch milliseconds
    (the Avro logical types are not materialised on the hot path; the bytes are the same). A named
    tuple rather than a frozen dataclass: the decoder makes one per event (~19,000 a batch), and a
    tuple is built by one C call where a slotted dataclass needs one descriptor call per field.

    Example:
        >>> r = UserRecord("0" * 130 + ".0000000000", "1", 0, "c-1", {"event_id": "e"}, 0.0)
        >>> r.sequence_number
        '1'
    """

    position: str  # fixed-width, sortable (pipeline.codecs.positions)
    sequence_number: str  # of the Kinesis record that carried it
    sub_sequence: int
    partition_key: str
    event: dict[str, Any]
    arrival: float  # approximate arrival timestamp of the Kinesis record, seconds
    body: bytes | None = None  # the event's Avro body in the reader schema, when already at hand


_tuple_new = tuple.__new__


def user_record(
    position: str,
    sequence_number: str,
    sub_sequence: int,
    partition_key: str,
    event: dict[str, Any],
    arrival: float,
    body: bytes | None = None,
) -> UserRecord:
    """``UserRecord(...)`` with every field given, without the keyword handling of its ``__new__``.

    Example:
        >>> user_record("p", "1", 0, "k", {}, 0.0) == UserRecord("p", "1", 0, "k", {}, 0.0)
        True
    """
    return _tuple_new(
        UserRecord, (position, sequence_number, sub_sequence, partition_key, event, arrival, body)
    )


@dataclass(frozen=True, slots=True)
class Poison:
    """A record that can never decode: quarantined with its raw bytes and reason.

    Example:
        >>> Poison("p", "1", 0, "k", b"x", "bad_magic", "UndecodablePayload", "…").reason
        'bad_magic'
    """

    position: str
    sequence_number: str
    sub_sequence: int
    partition_key: str
    raw: bytes
    reason: str
    error_class: str
    message: str


@dataclass(frozen=True, slots=True)
class Batch:
    """What one invocation hands its sink: everything above the shard's checkpoint.

    Attributes:
        shard_id: the shard all records come from.
        records: decoded user records to apply, in position order, after both dedupe steps.
        raw: the Lambda Kinesis records (exactly as received) holding at least one position above the
            checkpoint, in sequence order; the lake writer archives them for replay.
        last_position: the highest position of the whole delivered batch (duplicates and poison
            included); once the sink's effects are complete, the checkpoint may move here.

    Example:
        >>> Batch("shardId-000000000000", (), (), None).records
        ()
    """

    shard_id: str
    records: tuple[UserRecord, ...]
    raw: tuple[Mapping[str, Any], ...]
    last_position: str | None
