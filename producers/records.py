"""What flows between the producer's stages: user records, Kinesis records, results and futures."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True)
class PutResult:
    """Where one user record landed: its position and how many PutRecords attempts it took."""

    shard_id: str
    sequence_number: str
    sub_sequence: int
    attempts: int


class UserRecord(NamedTuple):
    """One record as the user put it, with what the stages need to route and expire it.

    A named tuple: a put makes one per record, and a tuple is made in one step (``new_user_record``)
    where a slotted dataclass sets its fields one descriptor call at a time."""

    partition_key: str
    data: bytes
    explicit_hash_key: str | None
    size: int  # data + UTF-8 partition key: what Kinesis counts against its limits
    arrival: float  # time.monotonic() when put
    future: RecordFuture | None  # None when put without results (``put_many(results=False)``)

    def hash_key(self) -> int:
        """The 128-bit value that picks this record's shard."""
        if self.explicit_hash_key is not None:
            return int(self.explicit_hash_key)
        return int.from_bytes(hashlib.md5(self.partition_key.encode("utf-8")).digest(), "big")


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    """One entry of a PutRecords request: an aggregate of user records of one shard, or one raw."""

    shard_id: str  # the predicted shard
    partition_key: str
    explicit_hash_key: str | None
    data: bytes
    size: int  # data + UTF-8 partition key
    records: tuple[UserRecord, ...]  # index = sub-sequence number
    deadline: float  # when the collector must send it at the latest
    oldest_arrival: float

    def entry(self) -> dict[str, Any]:
        """The PutRecords request entry (boto3 shape)."""
        if self.explicit_hash_key is None:
            return {"Data": self.data, "PartitionKey": self.partition_key}
        return {
            "Data": self.data,
            "PartitionKey": self.partition_key,
            "ExplicitHashKey": self.explicit_hash_key,
        }


_tuple_new = tuple.__new__


def new_user_record(
    partition_key: str,
    data: bytes,
    explicit_hash_key: str | None,
    size: int,
    arrival: float,
    future: RecordFuture | None,
) -> UserRecord:
    """``UserRecord(...)`` for the put hot path, without the named tuple's keyword handling."""
    return _tuple_new(UserRecord, (partition_key, data, explicit_hash_key, size, arrival, future))


# One lock guards the rare hand-over between a waiter and a settler; settling takes it once per
# Kinesis record, not per user record, and waiters only when the result is not there yet.
_WAIT_LOCK = threading.Lock()


class RecordFuture:
    """The pending result of one ``put``: ``result(timeout)`` returns a ``PutResult`` or raises.

    A lighter cousin of ``concurrent.futures.Future`` (which costs several microseconds to create,
    more than aggregating the record): ``result``, ``exception``, ``done``, ``add_done_callback``.
    """

    __slots__ = ("_result", "_where", "_exception", "_done", "_event", "_callbacks", "attempts")

    def __init__(self) -> None:
        self._result: PutResult | None = None
        # (shard id, sequence number, sub-sequence, attempts) until ``result`` makes the PutResult:
        # most callers of put_many never ask, and a tuple costs a fraction of the object.
        self._where: tuple[str, str, int, int] | None = None
        self._exception: BaseException | None = None
        self._done = False
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[RecordFuture], Any]] | None = None
        self.attempts = 0  # failed PutRecords attempts so far

    def done(self) -> bool:
        """True once the record is stored or has failed."""
        return self._done

    def cancelled(self) -> bool:
        """Always False: a put cannot be taken back once accepted."""
        return False

    def cancel(self) -> bool:
        """Always False (see ``cancelled``)."""
        return False

    def _wait(self, timeout: float | None) -> None:
        if self._done:
            return
        with _WAIT_LOCK:
            if self._done:
                return
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if not event.wait(timeout):
            raise TimeoutError(f"record not settled within {timeout} s; call flush() or raise the timeout")

    def result(self, timeout: float | None = None) -> PutResult:
        """The ``PutResult``; raises the record's error, or ``TimeoutError`` after ``timeout`` s."""
        self._wait(timeout)
        if self._exception is not None:
            raise self._exception
        if self._result is None:
            assert self._where is not None
            self._result = PutResult(*self._where)
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The record's error, or None if it was stored."""
        self._wait(timeout)
        return self._exception

    def add_done_callback(self, fn: Callable[[RecordFuture], Any]) -> None:
        """Call ``fn(future)`` once settled (at once if it already is), in the settling thread."""
        with _WAIT_LOCK:
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(self)


#: What settles a future: its result, its error, or where it was stored as
#: ``(shard id, sequence number, sub-sequence, attempts)``, the result's fields.
Settlement = PutResult | BaseException | tuple[str, str, int, int]


def settle(futures: Sequence[RecordFuture | None], outcomes: Sequence[Settlement]) -> None:
    """Settle many futures at once (one lock round trip), then wake waiters and run callbacks.
    A record put without results has None for its future: there is nothing to settle."""
    events = []
    callbacks = []
    with _WAIT_LOCK:
        for fut, outcome in zip(futures, outcomes, strict=True):
            if fut is None or fut._done:
                continue
            if isinstance(outcome, PutResult):
                fut._result = outcome
            elif isinstance(outcome, BaseException):
                fut._exception = outcome
            else:
                fut._where = outcome
            fut._done = True
            if fut._event is not None:
                events.append(fut._event)
            if fut._callbacks:
                callbacks.append(fut)
    for event in events:
        event.set()
    _run_callbacks(callbacks)


def _run_callbacks(settled: list[RecordFuture]) -> None:
    for fut in settled:
        for fn in fut._callbacks or ():
            try:
                fn(fut)
            except Exception:  # noqa: BLE001 - a user's callback must not break the producer
                pass


def settle_stored(landed: Sequence[tuple[KinesisRecord, str, str]]) -> tuple[int, int, float]:
    """Settle every user record of Kinesis records stored whole, given as ``(record, shard id,
    sequence number)``: the common outcome, in one pass and one lock round trip, without the
    per-record outcome list ``settle`` takes. Returns the user records, their bytes and the sum of
    their arrival times (for the buffered-time statistics)."""
    events = []
    callbacks = []
    count = 0
    size = 0
    arrivals = 0.0
    with _WAIT_LOCK:
        for kr, shard, seq in landed:
            sub = 0
            for rec in kr.records:
                fut = rec.future
                size += rec.size
                arrivals += rec.arrival
                if fut is not None and not fut._done:
                    fut._where = (shard, seq, sub, fut.attempts + 1)
                    fut._done = True
                    if fut._event is not None:
                        events.append(fut._event)
                    if fut._callbacks:
                        callbacks.append(fut)
                sub += 1
            count += sub
    for event in events:
        event.set()
    _run_callbacks(callbacks)
    return count, size, arrivals
