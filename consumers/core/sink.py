"""The interface every sink implements, and how a sink reports a partial failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from consumers.core.checkpoint import Intent
from consumers.core.records import Batch, UserRecord

IntentHook = Callable[[list[str], str], None]
"""``announce(keys, position)``: record on the checkpoint that ``keys`` holding records up to
``position`` are about to be written. A sink calls it once, before its first write."""


class PartialWrite(Exception):
    """Records before ``first_failed`` took effect; it and everything after may not have.

    Example:
        >>> from consumers.core.records import UserRecord
        >>> r = UserRecord("p", "42", 0, "k", {}, 0.0)
        >>> PartialWrite(r, TimeoutError("slow")).first_failed.sequence_number
        '42'
    """

    def __init__(self, first_failed: UserRecord, cause: BaseException, applied: int = 0) -> None:
        super().__init__(f"write failed at {first_failed.sequence_number}: {cause!r}")
        self.first_failed = first_failed
        self.cause = cause
        self.applied = applied  # records that did take effect (some may lie after first_failed)


class Sink(Protocol):
    """Where one consumer's records take effect; every write must be idempotent.

    A sink either writes idempotent, position-keyed effects on its own (the state sink: updates
    conditional on the item's last applied position) or announces its writes through the intent
    hook so that the next attempt can tell a completed write from a torn one (the lake sink).

    A sink may name the event fields it reads in a ``fields`` attribute (a tuple of names); the
    decoder then builds only those (``Decoder(fields=...)``). Without it, events hold every field.
    """

    def resolve_intent(self, shard_id: str, intent: Intent) -> bool:
        """Complete (True: the announced write is whole) or discard (False) an earlier attempt's write."""
        ...

    def write(self, batch: Batch, announce: IntentHook) -> int:
        """Apply ``batch.records`` (position order) and return how many took effect.

        Raise ``PartialWrite`` when a prefix took effect, any other exception when nothing is known.
        """
        ...
