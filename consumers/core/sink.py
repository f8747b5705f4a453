"""The interface every sink implements, and how a sink reports a partial failure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from consumers.core.checkpoint import Intent
from consumers.core.records import UserRecord

IntentHook = Callable[[list[str], str], None]


class PartialWrite(Exception):
    """Records before ``first_failed`` took effect; it and everything after may not have."""

    def __init__(self, first_failed: UserRecord, cause: BaseException) -> None:
        super().__init__(f"write failed at {first_failed.sequence_number}: {cause}")
        self.first_failed = first_failed
        self.cause = cause


class Sink(Protocol):
    """Where one consumer's records take effect; every write must be idempotent."""

    def resolve_intent(self, shard_id: str, intent: Intent) -> bool:
        """Complete (True) or discard (False) a write announced by an earlier attempt."""
        ...

    def write(self, shard_id: str, records: Sequence[UserRecord], announce: IntentHook) -> int:
        """Apply ``records`` (position order) and return how many took effect.

        Raise ``PartialWrite`` when a prefix took effect, any other exception when nothing is known.
        """
        ...
